//! A GGUF file read by ggml's own reader, tensors loaded into memory: the
//! adapter file. Every getter checks the stored type first, because ggml's
//! typed getters abort the process on a mismatch.

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

/// A metadata value, as far as vigil reads them.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    IntArray(Vec<i64>),
    /// Anything else (nested arrays, arrays of strings or floats).
    Other(&'static str),
}

impl GgufValue {
    pub fn kind(&self) -> &'static str {
        match self {
            GgufValue::Int(_) => "integer",
            GgufValue::Float(_) => "float",
            GgufValue::Bool(_) => "bool",
            GgufValue::Str(_) => "string",
            GgufValue::IntArray(_) => "integer array",
            GgufValue::Other(kind) => kind,
        }
    }
}

pub struct GgufFile {
    gguf: NonNull<sys::gguf_context>,
    tensors: NonNull<sys::ggml_context>,
    /// f32 copies of the quantized tensors, under the same names, once
    /// [`GgufFile::widen_quantized`] made them; looked up before `tensors`.
    widened: Option<NonNull<sys::ggml_context>>,
}

// SAFETY: after loading, both contexts are only read (tensor data is used as
// matmul weights); they are freed once, in Drop.
unsafe impl Send for GgufFile {}
// SAFETY: as for Send: shared references only read the contexts.
unsafe impl Sync for GgufFile {}

impl GgufFile {
    /// Opens and fully reads `path`. None when ggml rejects it (not GGUF,
    /// truncated, bad tensor info); ggml logs why at debug level.
    pub fn open(path: &Path) -> Option<GgufFile> {
        let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
        super::init_backend();
        let mut tensors: *mut sys::ggml_context = std::ptr::null_mut();
        // SAFETY: the path outlives the call; `tensors` receives a context
        // that owns the tensor data, or stays null on failure.
        let gguf = unsafe {
            sys::gguf_init_from_file(
                c_path.as_ptr(),
                sys::gguf_init_params {
                    no_alloc: false,
                    ctx: &mut tensors,
                },
            )
        };
        let gguf = NonNull::new(gguf)?;
        match NonNull::new(tensors) {
            Some(tensors) => Some(GgufFile {
                gguf,
                tensors,
                widened: None,
            }),
            None => {
                // SAFETY: freed once, never used again.
                unsafe { sys::gguf_free(gguf.as_ptr()) };
                None
            }
        }
    }

    pub fn value(&self, key: &str) -> Option<GgufValue> {
        let c_key = CString::new(key).ok()?;
        let g = self.gguf.as_ptr();
        // SAFETY: valid context and NUL-terminated key; every typed getter
        // below is called only after checking the stored type matches.
        unsafe {
            let id = sys::gguf_find_key(g, c_key.as_ptr());
            if id < 0 {
                return None;
            }
            let value = match sys::gguf_get_kv_type(g, id) {
                sys::GGUF_TYPE_UINT8 => GgufValue::Int(sys::gguf_get_val_u8(g, id) as i64),
                sys::GGUF_TYPE_INT8 => GgufValue::Int(sys::gguf_get_val_i8(g, id) as i64),
                sys::GGUF_TYPE_UINT16 => GgufValue::Int(sys::gguf_get_val_u16(g, id) as i64),
                sys::GGUF_TYPE_INT16 => GgufValue::Int(sys::gguf_get_val_i16(g, id) as i64),
                sys::GGUF_TYPE_UINT32 => GgufValue::Int(sys::gguf_get_val_u32(g, id) as i64),
                sys::GGUF_TYPE_INT32 => GgufValue::Int(sys::gguf_get_val_i32(g, id) as i64),
                sys::GGUF_TYPE_UINT64 => GgufValue::Int(sys::gguf_get_val_u64(g, id) as i64),
                sys::GGUF_TYPE_INT64 => GgufValue::Int(sys::gguf_get_val_i64(g, id)),
                sys::GGUF_TYPE_FLOAT32 => GgufValue::Float(sys::gguf_get_val_f32(g, id) as f64),
                sys::GGUF_TYPE_FLOAT64 => GgufValue::Float(sys::gguf_get_val_f64(g, id)),
                sys::GGUF_TYPE_BOOL => GgufValue::Bool(sys::gguf_get_val_bool(g, id)),
                sys::GGUF_TYPE_STRING => GgufValue::Str(
                    CStr::from_ptr(sys::gguf_get_val_str(g, id))
                        .to_string_lossy()
                        .into_owned(),
                ),
                sys::GGUF_TYPE_ARRAY => int_array(g, id)
                    .map(GgufValue::IntArray)
                    .unwrap_or(GgufValue::Other("non-integer array")),
                _ => GgufValue::Other("unknown type"),
            };
            Some(value)
        }
    }

    pub fn tensor(&self, name: &str) -> Option<Tensor<'_>> {
        let c_name = CString::new(name).ok()?;
        let find = |ctx: NonNull<sys::ggml_context>| {
            // SAFETY: valid context, NUL-terminated name; null when absent.
            NonNull::new(unsafe { sys::ggml_get_tensor(ctx.as_ptr(), c_name.as_ptr()) })
        };
        let ptr = self.widened.and_then(find).or_else(|| find(self.tensors))?;
        Some(Tensor {
            ptr,
            _file: PhantomData,
        })
    }

    /// Makes an f32 copy of every quantized tensor, which [`GgufFile::tensor`]
    /// returns from then on; the stored ones stay as they are. Why: ggml
    /// multiplies a quantized weight by activations quantized to 8 bits
    /// too, which moved the adapter's answers away from its f32 reference
    /// (models/demo/HISTORY.md); f32 weights take f32 activations. Costs
    /// memory: 4 bytes a weight instead of ~1. Returns how many tensors were
    /// widened and the bytes their copies take.
    pub fn widen_quantized(&mut self) -> Result<(usize, usize), String> {
        let quantized: Vec<NonNull<sys::ggml_tensor>> = self
            .tensor_names()
            .iter()
            .filter_map(|name| self.tensor(name))
            .filter(|t| {
                // SAFETY: valid tensor; pure queries.
                unsafe { sys::ggml_is_quantized(t.ptr.as_ref().type_) }
            })
            .map(|t| t.ptr)
            .collect();
        if quantized.is_empty() || self.widened.is_some() {
            return Ok((0, 0));
        }
        // SAFETY: valid tensors; pure queries.
        let floats: usize = quantized
            .iter()
            .map(|t| unsafe { sys::ggml_nelements(t.as_ptr()) } as usize)
            .sum();
        let bytes = floats * std::mem::size_of::<f32>();
        // SAFETY: pure query. ggml rounds each tensor's data up to
        // GGML_MEM_ALIGN (16 bytes): a block-quantized tensor's element
        // count is a multiple of its block (32), so f32 copies need no
        // padding today; the 16 per tensor keeps it right for any type.
        let overhead = (unsafe { sys::ggml_tensor_overhead() } + 16) * quantized.len();
        // SAFETY: ggml allocates and owns the context's memory (freed in Drop).
        let ctx = NonNull::new(unsafe {
            sys::ggml_init(sys::ggml_init_params {
                mem_size: bytes + overhead + 1024,
                mem_buffer: std::ptr::null_mut(),
                no_alloc: false,
            })
        })
        .ok_or_else(|| {
            format!("could not allocate {bytes} bytes for f32 copies of the quantized tensors")
        })?;
        self.widened = Some(ctx);
        for &src in &quantized {
            // SAFETY: `src` is a valid tensor whose data is loaded and
            // contiguous (checked below before reading it); the new tensor
            // has the same element count, allocated in `ctx` (sized above);
            // to_float reads nelements values of the source's type and
            // writes as many f32.
            unsafe {
                let s = src.as_ref();
                let traits = sys::ggml_get_type_traits(s.type_);
                let to_float = traits.as_ref().and_then(|t| t.to_float);
                let name = CStr::from_ptr(sys::ggml_get_name(s))
                    .to_string_lossy()
                    .into_owned();
                let Some(to_float) = to_float.filter(|_| sys::ggml_is_contiguous(s)) else {
                    return Err(format!(
                        "tensor {name} ({}) cannot be converted to f32",
                        Tensor {
                            ptr: src,
                            _file: PhantomData
                        }
                        .type_name()
                    ));
                };
                let dst = sys::ggml_new_tensor_4d(
                    ctx.as_ptr(),
                    sys::GGML_TYPE_F32,
                    s.ne[0],
                    s.ne[1],
                    s.ne[2],
                    s.ne[3],
                );
                if dst.is_null() {
                    return Err(format!("no room for the f32 copy of {name}"));
                }
                sys::ggml_set_name(dst, sys::ggml_get_name(s));
                to_float(s.data, (*dst).data as *mut f32, sys::ggml_nelements(s));
            }
        }
        Ok((quantized.len(), bytes))
    }

    /// Names of all tensors in the file.
    pub fn tensor_names(&self) -> Vec<String> {
        let g = self.gguf.as_ptr();
        // SAFETY: ids 0..n are valid; names are NUL-terminated and owned by
        // the context.
        unsafe {
            (0..sys::gguf_get_n_tensors(g))
                .map(|i| {
                    CStr::from_ptr(sys::gguf_get_tensor_name(g, i))
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        }
    }
}

/// SAFETY (caller): `id` is a valid key of type array in `g`.
unsafe fn int_array(g: *const sys::gguf_context, id: i64) -> Option<Vec<i64>> {
    // SAFETY: per the caller's contract; the data pointer holds `n` values
    // of the element type checked here.
    unsafe {
        let n = sys::gguf_get_arr_n(g, id);
        let data = sys::gguf_get_arr_data(g, id);
        macro_rules! read {
            ($t:ty) => {
                std::slice::from_raw_parts(data as *const $t, n)
                    .iter()
                    .map(|&v| v as i64)
                    .collect()
            };
        }
        Some(match sys::gguf_get_arr_type(g, id) {
            sys::GGUF_TYPE_UINT8 => read!(u8),
            sys::GGUF_TYPE_INT8 => read!(i8),
            sys::GGUF_TYPE_UINT16 => read!(u16),
            sys::GGUF_TYPE_INT16 => read!(i16),
            sys::GGUF_TYPE_UINT32 => read!(u32),
            sys::GGUF_TYPE_INT32 => read!(i32),
            sys::GGUF_TYPE_UINT64 => read!(u64),
            sys::GGUF_TYPE_INT64 => read!(i64),
            _ => return None,
        })
    }
}

impl Drop for GgufFile {
    fn drop(&mut self) {
        // SAFETY: each freed once; tensors borrowed from the file cannot
        // outlive it (Tensor<'_>).
        unsafe {
            if let Some(widened) = self.widened {
                sys::ggml_free(widened.as_ptr());
            }
            sys::ggml_free(self.tensors.as_ptr());
            sys::gguf_free(self.gguf.as_ptr());
        }
    }
}

/// A tensor of a [`GgufFile`], usable as a weight in a [`super::graph::Graph`].
#[derive(Clone, Copy)]
pub struct Tensor<'f> {
    pub(super) ptr: NonNull<sys::ggml_tensor>,
    _file: PhantomData<&'f GgufFile>,
}

// SAFETY: read-only after loading (see GgufFile).
unsafe impl Send for Tensor<'_> {}
// SAFETY: read-only after loading (see GgufFile).
unsafe impl Sync for Tensor<'_> {}

impl Tensor<'_> {
    /// Sizes, innermost first (ggml's ne): a matrix [in, out].
    pub fn shape(&self) -> Vec<i64> {
        // SAFETY: valid tensor for the file's lifetime.
        let t = unsafe { self.ptr.as_ref() };
        let dims = (1..=4).rev().find(|&d| t.ne[d - 1] != 1).unwrap_or(1);
        t.ne[..dims].to_vec()
    }

    pub fn type_name(&self) -> String {
        // SAFETY: valid tensor; ggml_type_name returns a static string.
        unsafe {
            CStr::from_ptr(sys::ggml_type_name(self.ptr.as_ref().type_))
                .to_string_lossy()
                .into_owned()
        }
    }

    /// Whether ggml can multiply activations by this tensor on the CPU
    /// (f32, f16, bf16 and the quantized types, as stored contiguous).
    pub fn is_matmul_weight(&self) -> bool {
        // SAFETY: valid tensor; pure queries.
        unsafe {
            let t = self.ptr.as_ref();
            sys::ggml_is_contiguous(t) && t.type_ != sys::GGML_TYPE_I32
        }
    }

    /// The values of an f32 tensor; None for other types.
    pub fn f32_values(&self) -> Option<Vec<f32>> {
        // SAFETY: valid, contiguous tensor loaded in memory (no_alloc false),
        // holding nbytes of f32 values when its type is f32.
        unsafe {
            let t = self.ptr.as_ref();
            if t.type_ != sys::GGML_TYPE_F32 || !sys::ggml_is_contiguous(t) {
                return None;
            }
            let n = sys::ggml_nelements(t) as usize;
            Some(std::slice::from_raw_parts(t.data as *const f32, n).to_vec())
        }
    }
}
