//! Flamingo's tanh-gated cross-attention blocks, computed with ggml's CPU
//! kernels on the adapter's weights as stored (f16 or quantized):
//!
//! ```text
//! y += tanh(attn_gate) · Wo · Attn(q = Wq · LN1(y), k = Wk · m, v = Wv · m)
//! y += tanh(ffn_gate)  · Wdown · GELU(Wup · LN2(y))
//! ```
//!
//! `m` are the visual tokens of one media chunk; its K and V are computed
//! once per block ([`MediaKv`]) and reused by every question on that chunk.
//! tools/vigil_kit/xattn.py is the reference for this math.

use std::rc::Rc;
use std::sync::Arc;

use super::adapter::Adapter;
use super::error::{HookError, LmError};
use super::ffi::Pool;
use super::ffi::graph::{Arena, Graph, GraphResult};

/// Visual tokens of one media chunk: `n_tokens` rows of `dim` values.
#[derive(Debug, Clone, Copy)]
pub struct Visual<'a> {
    pub data: &'a [f32],
    pub n_tokens: usize,
    pub dim: usize,
}

/// Keys and values of one media chunk for every block.
pub struct MediaKv {
    /// Per block: K as [head_dim, n_visual, heads], V as [n_visual, head_dim, heads].
    blocks: Vec<(Vec<f32>, Vec<f32>)>,
    n_visual: usize,
}

impl MediaKv {
    pub fn n_visual(&self) -> usize {
        self.n_visual
    }
}

/// The blocks of one adapter plus scratch memory; one per decoding thread.
pub struct Blocks {
    adapter: Arc<Adapter>,
    pool: Rc<Pool>,
    arena: Arena,
}

const F32: usize = std::mem::size_of::<f32>();
/// Room ggml needs beyond the tensors we count: alignment, graph plan.
const SLACK: usize = 1 << 20;

impl Blocks {
    /// Blocks computing on `pool` (the LM context's).
    pub fn new(adapter: Arc<Adapter>, pool: Rc<Pool>) -> Blocks {
        Blocks {
            adapter,
            pool,
            arena: Arena::default(),
        }
    }

    pub fn adapter(&self) -> &Arc<Adapter> {
        &self.adapter
    }

    /// K and V of `visual` for every block.
    pub fn media_kv(&mut self, visual: Visual<'_>) -> Result<MediaKv, LmError> {
        let c = self.adapter.config().clone();
        if visual.dim != c.visual_dim
            || visual.n_tokens == 0
            || visual.data.len() != visual.n_tokens * visual.dim
        {
            return Err(LmError::VisualShape {
                n_tokens: visual.n_tokens,
                dim: visual.dim,
                values: visual.data.len(),
                adapter_dim: c.visual_dim,
            });
        }
        if visual.data.iter().any(|v| !v.is_finite()) {
            return Err(LmError::VisualNotFinite);
        }
        let (nv, inner, hd, heads) = (visual.n_tokens, c.inner(), c.head_dim, c.heads);
        let bytes = F32 * (nv * c.visual_dim * 2 + nv * inner * 8) + 2 * nv * c.visual_dim + SLACK;
        let mut blocks = Vec::with_capacity(c.layers.len());
        for &layer in &c.layers {
            let adapter = &self.adapter;
            let graph = self.arena.graph(bytes).map_err(HookError::from)?;
            let kv = (|| -> GraphResult<(Vec<f32>, Vec<f32>)> {
                let m = graph.input(visual.data, &[c.visual_dim as i64, nv as i64])?;
                let project = |name: &str| -> GraphResult<_> {
                    let w = graph.weight(adapter.tensor(layer, name)?);
                    let x = graph.mul_mat(w, m)?;
                    graph.reshape(x, &[hd as i64, heads as i64, nv as i64])
                };
                // [hd, H, nv] → K [hd, nv, H]
                let k = graph.permute(project("attn_k.weight")?, [0, 2, 1])?;
                let mut k_out = vec![0f32; nv * inner];
                graph.compute(k, &self.pool, &mut k_out)?;
                // [hd, H, nv] → V [nv, hd, H]
                let v = graph.permute(project("attn_v.weight")?, [1, 2, 0])?;
                let mut v_out = vec![0f32; nv * inner];
                graph.compute(v, &self.pool, &mut v_out)?;
                Ok((k_out, v_out))
            })()
            .map_err(HookError::from)?;
            blocks.push(kv);
        }
        Ok(MediaKv {
            blocks,
            n_visual: nv,
        })
    }

    /// Runs block `block` on `rows` (whole rows of the residual stream, all
    /// attending to `kv`), in place.
    pub fn apply(&mut self, block: usize, rows: &mut [f32], kv: &MediaKv) -> Result<(), HookError> {
        let c = self.adapter.config();
        let (e, inner, ff, hd, heads) = (c.n_embd, c.inner(), c.ff_length, c.head_dim, c.heads);
        let layer = *c.layers.get(block).ok_or(HookError::NoBlock(block))?;
        let (k, v) = kv.blocks.get(block).ok_or(HookError::NoMediaBlock(block))?;
        if !rows.len().is_multiple_of(e) {
            return Err(HookError::RaggedRows {
                values: rows.len(),
                n_embd: e,
            });
        }
        let n = rows.len() / e;
        let nv = kv.n_visual;
        let floats = n * (12 * e + 7 * inner + 2 * ff + 2 * nv * heads) + 2 * nv * inner;
        let work = n * (e + inner + ff) * F32;
        let bytes = (floats * F32 + work) * 3 / 2 + SLACK;
        let gates = self.adapter.gates(block);
        let adapter = Arc::clone(&self.adapter);
        let graph = self.arena.graph(bytes)?;
        let w = |name: &str| adapter.tensor(layer, name).map(|t| graph.weight(t));
        let x = graph.input(rows, &[e as i64, n as i64])?;
        let k = graph.input(k, &[hd as i64, nv as i64, heads as i64])?;
        let v = graph.input(v, &[nv as i64, hd as i64, heads as i64])?;
        let out = block_graph(&graph, &w, x, k, v, c.eps, [hd, heads, n], gates)?;
        Ok(graph.compute(out, &self.pool, rows)?)
    }
}

/// The block as a ggml graph; `dims` = [head_dim, heads, rows].
#[allow(clippy::too_many_arguments)]
fn block_graph<'g, 'w>(
    g: &'g Graph<'_, 'w>,
    w: &dyn Fn(&str) -> GraphResult<super::ffi::graph::Node<'g>>,
    x: super::ffi::graph::Node<'g>,
    k: super::ffi::graph::Node<'g>,
    v: super::ffi::graph::Node<'g>,
    eps: f32,
    [hd, heads, n]: [usize; 3],
    gates: super::adapter::Gates,
) -> GraphResult<super::ffi::graph::Node<'g>> {
    let (hd_i, h_i, n_i) = (hd as i64, heads as i64, n as i64);
    // Attention: queries from the text rows, keys/values from the media.
    let h = g.layer_norm(x, w("attn_norm.weight")?, w("attn_norm.bias")?, eps)?;
    let q = g.mul_mat(w("attn_q.weight")?, h)?; // [inner, n]
    let q = g.reshape(q, &[hd_i, h_i, n_i])?;
    let q = g.permute(q, [0, 2, 1])?; // [hd, n, H]
    let scores = g.mul_mat(k, q)?; // [nv, n, H]
    let att = g.softmax(scores, 1.0 / (hd as f32).sqrt())?;
    let o = g.mul_mat(v, att)?; // [hd, n, H]
    let o = g.permute(o, [0, 2, 1])?; // [hd, H, n]
    let o = g.reshape(o, &[hd_i * h_i, n_i])?;
    let o = g.mul_mat(w("attn_output.weight")?, o)?; // [n_embd, n]
    let x = g.add_scaled(x, o, gates.attn.tanh())?;
    // Feed-forward.
    let h = g.layer_norm(x, w("ffn_norm.weight")?, w("ffn_norm.bias")?, eps)?;
    let u = g.gelu(g.mul_mat(w("ffn_up.weight")?, h)?)?;
    let d = g.mul_mat(w("ffn_down.weight")?, u)?;
    g.add_scaled(x, d, gates.ffn.tanh())
}
