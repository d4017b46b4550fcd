//! A small, safe face over ggml's CPU graph API: enough to build and run
//! the gated cross-attention blocks with ggml's own (SIMD, quantized-aware)
//! kernels. Shapes follow ggml: innermost dimension first.
//!
//! ggml aborts the process on a shape mismatch, so every op here checks
//! shapes first and turns a mismatch into an error.

use std::ffi::c_void;
use std::marker::PhantomData;
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use super::super::error::GraphError;
use super::Pool;
use super::gguf::Tensor;

/// Scratch memory for graphs, reused between computes.
#[derive(Default)]
pub struct Arena {
    buffer: Vec<u8>,
}

/// One graph under construction: a ggml context whose memory is the arena.
/// Nodes borrow the graph; weights borrow their file for `'w`.
pub struct Graph<'a, 'w> {
    ctx: NonNull<sys::ggml_context>,
    _arena: PhantomData<&'a mut Arena>,
    _weights: PhantomData<&'w ()>,
}

#[derive(Clone, Copy)]
pub struct Node<'g> {
    ptr: NonNull<sys::ggml_tensor>,
    _graph: PhantomData<&'g ()>,
}

pub type GraphResult<T> = Result<T, GraphError>;

impl Arena {
    /// A graph with room for `bytes` of tensors and work space.
    pub fn graph<'w>(&mut self, bytes: usize) -> GraphResult<Graph<'_, 'w>> {
        // SAFETY: pure size queries.
        let overhead =
            unsafe { sys::ggml_graph_overhead() + 96 * sys::ggml_tensor_overhead() } + (1 << 16);
        let size = bytes + overhead;
        if self.buffer.len() < size {
            self.buffer = vec![0u8; size];
        }
        // SAFETY: the buffer outlives the context (the Graph borrows the
        // arena mutably) and is not touched by Rust while the graph lives.
        let ctx = unsafe {
            sys::ggml_init(sys::ggml_init_params {
                mem_size: self.buffer.len(),
                mem_buffer: self.buffer.as_mut_ptr() as *mut c_void,
                no_alloc: false,
            })
        };
        let ctx = NonNull::new(ctx).ok_or(GraphError::Init)?;
        Ok(Graph {
            ctx,
            _arena: PhantomData,
            _weights: PhantomData,
        })
    }
}

impl Drop for Graph<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: freed once; the memory is the arena's, which ggml does not
        // free for a caller-provided buffer.
        unsafe { sys::ggml_free(self.ctx.as_ptr()) }
    }
}

impl<'g> Node<'g> {
    fn raw(self) -> *mut sys::ggml_tensor {
        self.ptr.as_ptr()
    }

    /// Sizes, innermost first (4 entries).
    pub fn ne(self) -> [i64; 4] {
        // SAFETY: the node lives as long as its graph, which 'g borrows.
        unsafe { self.ptr.as_ref().ne }
    }
}

impl<'a, 'w> Graph<'a, 'w> {
    fn wrap(&self, ptr: *mut sys::ggml_tensor, what: &'static str) -> GraphResult<Node<'_>> {
        NonNull::new(ptr)
            .map(|ptr| Node {
                ptr,
                _graph: PhantomData,
            })
            .ok_or(GraphError::Scratch(what))
    }

    /// A new f32 tensor holding `data`, shape `ne` (innermost first).
    pub fn input(&self, data: &[f32], ne: &[i64]) -> GraphResult<Node<'_>> {
        let count: i64 = ne.iter().product();
        if count as usize != data.len() {
            return Err(GraphError::InputSize {
                values: data.len(),
                ne: ne.to_vec(),
            });
        }
        // SAFETY: valid context; the new tensor owns `count` f32 values in
        // the arena, into which `data` is copied.
        unsafe {
            let t = match ne.len() {
                1 => sys::ggml_new_tensor_1d(self.ctx.as_ptr(), sys::GGML_TYPE_F32, ne[0]),
                2 => sys::ggml_new_tensor_2d(self.ctx.as_ptr(), sys::GGML_TYPE_F32, ne[0], ne[1]),
                3 => sys::ggml_new_tensor_3d(
                    self.ctx.as_ptr(),
                    sys::GGML_TYPE_F32,
                    ne[0],
                    ne[1],
                    ne[2],
                ),
                _ => {
                    return Err(GraphError::Rank {
                        op: "input",
                        rank: ne.len(),
                    });
                }
            };
            let node = self.wrap(t, "an input")?;
            std::ptr::copy_nonoverlapping(data.as_ptr(), (*t).data as *mut f32, data.len());
            Ok(node)
        }
    }

    /// A weight from an adapter file, used in place (no copy).
    pub fn weight(&self, tensor: Tensor<'w>) -> Node<'_> {
        Node {
            ptr: tensor.ptr,
            _graph: PhantomData,
        }
    }

    /// `a` [k, m] (weights) times `b` [k, n, …] → [m, n, …].
    pub fn mul_mat(&self, a: Node, b: Node) -> GraphResult<Node<'_>> {
        let (na, nb) = (a.ne(), b.ne());
        if na[0] != nb[0] || nb[2] % na[2] != 0 || nb[3] % na[3] != 0 {
            return Err(GraphError::MulMat { a: na, b: nb });
        }
        // SAFETY: shapes checked above (ggml_can_mul_mat); valid nodes.
        self.wrap(
            unsafe { sys::ggml_mul_mat(self.ctx.as_ptr(), a.raw(), b.raw()) },
            "mul_mat",
        )
    }

    /// LayerNorm over the innermost dimension with weight and bias.
    pub fn layer_norm(&self, x: Node, w: Node, b: Node, eps: f32) -> GraphResult<Node<'_>> {
        let n = x.ne()[0];
        if w.ne() != [n, 1, 1, 1] || b.ne() != [n, 1, 1, 1] {
            return Err(GraphError::LayerNorm {
                n,
                w: w.ne(),
                b: b.ne(),
            });
        }
        // SAFETY: valid nodes; w and b broadcast over rows (checked).
        unsafe {
            let normed = sys::ggml_norm(self.ctx.as_ptr(), x.raw(), eps);
            let scaled = sys::ggml_mul(self.ctx.as_ptr(), normed, w.raw());
            self.wrap(
                sys::ggml_add(self.ctx.as_ptr(), scaled, b.raw()),
                "layer norm",
            )
        }
    }

    /// `x + s · y` (same shapes).
    pub fn add_scaled(&self, x: Node, y: Node, s: f32) -> GraphResult<Node<'_>> {
        if x.ne() != y.ne() {
            return Err(GraphError::Add {
                x: x.ne(),
                y: y.ne(),
            });
        }
        // SAFETY: valid nodes of equal shape.
        unsafe {
            let scaled = sys::ggml_scale(self.ctx.as_ptr(), y.raw(), s);
            self.wrap(sys::ggml_add(self.ctx.as_ptr(), x.raw(), scaled), "add")
        }
    }

    pub fn gelu(&self, x: Node) -> GraphResult<Node<'_>> {
        // SAFETY: valid node; elementwise.
        self.wrap(
            unsafe { sys::ggml_gelu_erf(self.ctx.as_ptr(), x.raw()) },
            "gelu",
        )
    }

    /// Softmax over the innermost dimension of `scale · x`.
    pub fn softmax(&self, x: Node, scale: f32) -> GraphResult<Node<'_>> {
        // SAFETY: valid node; no mask.
        self.wrap(
            unsafe {
                sys::ggml_soft_max_ext(self.ctx.as_ptr(), x.raw(), std::ptr::null_mut(), scale, 0.0)
            },
            "softmax",
        )
    }

    /// A contiguous copy of `x` with shape `ne` (same number of values).
    pub fn reshape(&self, x: Node, ne: &[i64]) -> GraphResult<Node<'_>> {
        let count: i64 = ne.iter().product();
        if count != x.ne().iter().product::<i64>() {
            return Err(GraphError::Reshape {
                from: x.ne(),
                to: ne.to_vec(),
            });
        }
        // SAFETY: valid node, made contiguous before the reshape; counts
        // checked above.
        unsafe {
            let c = sys::ggml_cont(self.ctx.as_ptr(), x.raw());
            let r = match ne.len() {
                2 => sys::ggml_reshape_2d(self.ctx.as_ptr(), c, ne[0], ne[1]),
                3 => sys::ggml_reshape_3d(self.ctx.as_ptr(), c, ne[0], ne[1], ne[2]),
                _ => {
                    return Err(GraphError::Rank {
                        op: "reshape",
                        rank: ne.len(),
                    });
                }
            };
            self.wrap(r, "reshape")
        }
    }

    /// ggml_permute: dimension i of `x` moves to position `axes[i]`;
    /// the result is made contiguous.
    pub fn permute(&self, x: Node, axes: [i32; 3]) -> GraphResult<Node<'_>> {
        let mut seen = [false; 3];
        for &a in &axes {
            if !(0..3).contains(&a) || std::mem::replace(&mut seen[a as usize], true) {
                return Err(GraphError::Permute(axes));
            }
        }
        // SAFETY: valid node, a valid permutation of the first 3 axes.
        unsafe {
            let p = sys::ggml_permute(self.ctx.as_ptr(), x.raw(), axes[0], axes[1], axes[2], 3);
            self.wrap(sys::ggml_cont(self.ctx.as_ptr(), p), "permute")
        }
    }

    /// Computes `out` (and what it depends on) on `pool` and copies its
    /// values (f32) into `dest`.
    pub fn compute(&self, out: Node, pool: &Pool, dest: &mut [f32]) -> GraphResult<()> {
        // SAFETY: valid context and node; ggml builds the graph in the
        // context and computes it on the pool's threads (idle: see Pool),
        // with a work buffer of the size it planned;
        // the result is a contiguous f32 tensor in the arena, `count`
        // values long.
        unsafe {
            let t = out.ptr.as_ref();
            let count = sys::ggml_nelements(t) as usize;
            if t.type_ != sys::GGML_TYPE_F32 || count != dest.len() {
                return Err(GraphError::ResultSize {
                    values: count,
                    type_: t.type_ as i64,
                    places: dest.len(),
                });
            }
            let graph = sys::ggml_new_graph(self.ctx.as_ptr());
            if graph.is_null() {
                return Err(GraphError::NewGraph);
            }
            sys::ggml_build_forward_expand(graph, out.raw());
            let mut plan = sys::ggml_graph_plan(graph, pool.threads() as i32, pool.raw());
            let mut work = vec![0u8; plan.work_size];
            plan.work_data = work.as_mut_ptr();
            let status = sys::ggml_graph_compute(graph, &mut plan);
            if status != sys::GGML_STATUS_SUCCESS {
                return Err(GraphError::Compute(status as i64));
            }
            std::ptr::copy_nonoverlapping(t.data as *const f32, dest.as_mut_ptr(), count);
        }
        Ok(())
    }
}
