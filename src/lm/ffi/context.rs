//! One llama.cpp context: a sequence decoded on the calling thread, its
//! KV cache saved and restored, and the hook its decodes run.

use std::ffi::c_void;
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use super::batch::{Batch, Chunk};
use super::callback::{HookState, eval_callback};
use super::{Model, Pool, Token};
use crate::lm::error::LmError;
use crate::lm::hook::ResidualHook;

#[derive(Debug, Clone)]
pub struct ContextOptions {
    pub n_ctx: u32,
    /// Also the micro-batch size: the hook sees whole batches.
    pub n_batch: u32,
    pub threads: i32,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            n_ctx: 1024,
            n_batch: 512,
            threads: 2,
        }
    }
}

/// What a decode feeds: tokens, or rows of `n_embd` embedding values.
#[derive(Clone, Copy)]
enum Input<'a> {
    Tokens(&'a [Token]),
    Embeddings(&'a [f32], usize),
}

impl Input<'_> {
    fn len(&self) -> usize {
        match self {
            Input::Tokens(t) => t.len(),
            Input::Embeddings(v, n_embd) => v.len() / n_embd,
        }
    }
}

/// A sequence's KV cache, saved by [`Context::save_state`].
pub struct SavedState {
    data: Vec<u8>,
    n_past: usize,
}

impl SavedState {
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }
}

/// One llama.cpp context: a single sequence decoded on the calling thread.
pub struct Context<'m> {
    ptr: NonNull<sys::llama_context>,
    model: &'m Model,
    /// Attached to the llama.cpp context: kept alive until it is freed.
    _pool: std::rc::Rc<Pool>,
    batch: Batch,
    /// Allocated on first use.
    embd_batch: Option<Batch>,
    n_batch: usize,
    n_past: usize,
    // Declared after `ptr` but freed explicitly in Drop, after llama_free:
    // the callback may not see a dangling state.
    hook: Option<Box<HookState>>,
}

impl<'m> Context<'m> {
    pub fn new(
        model: &'m Model,
        options: &ContextOptions,
        hook: Option<Box<dyn ResidualHook>>,
    ) -> Result<Context<'m>, LmError> {
        let pool = std::rc::Rc::new(Pool::new(options.threads.max(1) as usize)?);
        Context::with_pool(model, options, hook, pool)
    }

    /// A context computing on `pool` (shared with the blocks' graphs).
    pub fn with_pool(
        model: &'m Model,
        options: &ContextOptions,
        hook: Option<Box<dyn ResidualHook>>,
        pool: std::rc::Rc<Pool>,
    ) -> Result<Context<'m>, LmError> {
        let n_layer = model.n_layer();
        let mut state = match hook {
            Some(hook) => {
                let mut wanted = vec![false; n_layer];
                for layer in hook.layers() {
                    if layer >= n_layer {
                        return Err(LmError::HookLayer { layer, n_layer });
                    }
                    wanted[layer] = true;
                }
                Some(Box::new(HookState {
                    hook,
                    wanted,
                    n_embd: model.n_embd(),
                    scratch: Vec::new(),
                    edits: vec![0; n_layer],
                    error: None,
                }))
            }
            None => None,
        };
        // SAFETY: default params are plain data. When a hook is set, the
        // callback gets a pointer to the boxed state, which this context owns
        // and frees only after llama_free (see Drop); llama.cpp calls it only
        // from inside llama_decode on this thread.
        let ptr = unsafe {
            let mut params = sys::llama_context_default_params();
            params.n_ctx = options.n_ctx;
            params.n_batch = options.n_batch;
            params.n_ubatch = options.n_batch;
            params.n_threads = options.threads;
            params.n_threads_batch = options.threads;
            params.no_perf = true;
            if let Some(state) = state.as_mut() {
                params.cb_eval = Some(eval_callback);
                params.cb_eval_user_data = state.as_mut() as *mut HookState as *mut c_void;
            }
            sys::llama_init_from_model(model.raw(), params)
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            LmError::Context(format!(
                "n_ctx {} n_batch {}",
                options.n_ctx, options.n_batch
            ))
        })?;
        // SAFETY: valid context and pool; the pool outlives the context
        // (the context holds an Rc to it and frees itself first).
        unsafe { sys::llama_attach_threadpool(ptr.as_ptr(), pool.raw(), pool.raw()) };
        let batch = Batch::tokens(options.n_batch as usize);
        Ok(Context {
            ptr,
            model,
            _pool: pool,
            batch,
            embd_batch: None,
            n_batch: options.n_batch as usize,
            n_past: 0,
            hook: state,
        })
    }

    pub fn model(&self) -> &Model {
        self.model
    }

    /// Positions decoded so far (the length of the sequence in the KV cache).
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    pub fn n_ctx(&self) -> usize {
        // SAFETY: valid context; a pure getter.
        unsafe { sys::llama_n_ctx(self.ptr.as_ptr()) as usize }
    }

    /// Appends `tokens` to the sequence and computes logits for the last.
    pub fn decode(&mut self, tokens: &[Token]) -> Result<(), LmError> {
        self.decode_rows(tokens, &[]).map(|_| ())
    }

    /// Appends `tokens` to the sequence; returns the logits of the tokens at
    /// the indices `rows` (into `tokens`, ascending), and keeps the last
    /// token's logits for [`Context::last_logits`]. Only these rows go
    /// through the LM head.
    pub fn decode_rows(
        &mut self,
        tokens: &[Token],
        rows: &[usize],
    ) -> Result<Vec<Vec<f32>>, LmError> {
        self.decode_input(Input::Tokens(tokens), rows)
    }

    /// Like [`Context::decode_rows`], with input embeddings (`n_embd` values
    /// per position) instead of tokens. They enter where the token
    /// embeddings would, after any scaling the model applies to those
    /// (Gemma multiplies token embeddings by √n_embd; do that yourself).
    pub fn decode_embeddings(
        &mut self,
        embeddings: &[f32],
        rows: &[usize],
    ) -> Result<Vec<Vec<f32>>, LmError> {
        let n_embd = self.model.n_embd();
        if !embeddings.len().is_multiple_of(n_embd) {
            return Err(LmError::RaggedEmbeddings {
                values: embeddings.len(),
                n_embd,
            });
        }
        self.decode_input(Input::Embeddings(embeddings, n_embd), rows)
    }

    fn decode_input(&mut self, input: Input<'_>, rows: &[usize]) -> Result<Vec<Vec<f32>>, LmError> {
        let n = input.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        if self.n_past + n > self.n_ctx() {
            return Err(LmError::ContextFull {
                need: self.n_past + n,
                n_ctx: self.n_ctx(),
            });
        }
        if rows.iter().any(|&r| r >= n) || !rows.is_sorted() {
            return Err(LmError::LogitRows {
                rows: rows.to_vec(),
                n,
            });
        }
        if let Input::Embeddings(_, n_embd) = input
            && self.embd_batch.is_none()
        {
            self.embd_batch = Some(Batch::embeddings(self.n_batch, n_embd));
        }
        let n_vocab = self.model.n_vocab();
        let mut out = Vec::with_capacity(rows.len());
        let mut wanted = rows.iter().peekable();
        let mut first = 0;
        while first < n {
            let len = self.n_batch.min(n - first);
            let is_last_chunk = first + len == n;
            let (batch, chunk) = match input {
                Input::Tokens(tokens) => {
                    (&mut self.batch, Chunk::Tokens(&tokens[first..first + len]))
                }
                Input::Embeddings(values, n_embd) => (
                    self.embd_batch.as_mut().expect("allocated above"),
                    Chunk::Embeddings(&values[first * n_embd..(first + len) * n_embd]),
                ),
            };
            let raw = batch.fill(chunk, self.n_past, |i| {
                rows.contains(&(first + i)) || (is_last_chunk && i + 1 == len)
            });
            // SAFETY: valid context; the batch holds `len` filled positions
            // and llama_decode does not keep it.
            let code = unsafe { sys::llama_decode(self.ptr.as_ptr(), raw) };
            if let Some(error) = self.hook.as_mut().and_then(|s| s.error.take()) {
                self.forget_from(self.n_past);
                return Err(LmError::Hook(error));
            }
            if code != 0 {
                self.forget_from(self.n_past);
                return Err(LmError::Decode(code));
            }
            while let Some(&&row) = wanted.peek() {
                if row >= first + len {
                    break;
                }
                wanted.next();
                // SAFETY: row - first indexes a position of this batch whose
                // logits flag was set; llama.cpp holds n_vocab floats for it
                // until the next decode.
                let logits = unsafe {
                    let p = sys::llama_get_logits_ith(self.ptr.as_ptr(), (row - first) as i32);
                    if p.is_null() {
                        return Err(LmError::NoLogits(row));
                    }
                    std::slice::from_raw_parts(p, n_vocab).to_vec()
                };
                out.push(logits);
            }
            self.n_past += len;
            first += len;
        }
        Ok(out)
    }

    /// Logits of the last decoded token, one per vocabulary entry.
    pub fn last_logits(&self) -> &[f32] {
        let n = self.model.n_vocab();
        // SAFETY: after a successful decode llama.cpp holds n_vocab logits
        // for the last token until the next decode, which needs &mut self.
        unsafe {
            let p = sys::llama_get_logits_ith(self.ptr.as_ptr(), -1);
            if p.is_null() {
                return &[];
            }
            std::slice::from_raw_parts(p, n)
        }
    }

    /// Forgets the sequence (the KV cache).
    pub fn clear(&mut self) {
        // SAFETY: valid context; the memory handle belongs to it.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ptr.as_ptr()), true) }
        self.n_past = 0;
    }

    /// Forgets every position from `n` on: the sequence is cut back to its
    /// first `n` tokens (a cheap way back to a cached prefix).
    pub fn truncate(&mut self, n: usize) {
        if n < self.n_past {
            self.forget_from(n);
            self.n_past = n;
        }
    }

    fn forget_from(&mut self, n: usize) {
        // SAFETY: valid context; removing positions [n, end) of sequence 0
        // always succeeds for a whole-range removal.
        unsafe {
            sys::llama_memory_seq_rm(sys::llama_get_memory(self.ptr.as_ptr()), 0, n as i32, -1);
        }
    }

    /// The sequence's KV state, to restore later in this or another context
    /// of the same model (llama.cpp's own sequence state format).
    pub fn save_state(&self) -> Result<SavedState, LmError> {
        // SAFETY: valid context; `data` has room for the size llama.cpp
        // reported, and it writes at most that many bytes.
        let data = unsafe {
            let size = sys::llama_state_seq_get_size(self.ptr.as_ptr(), 0);
            let mut data = vec![0u8; size];
            let written =
                sys::llama_state_seq_get_data(self.ptr.as_ptr(), data.as_mut_ptr(), size, 0);
            if written == 0 && self.n_past > 0 {
                return Err(LmError::StateNotSaved);
            }
            data.truncate(written);
            data
        };
        Ok(SavedState {
            data,
            n_past: self.n_past,
        })
    }

    /// Replaces the sequence with a saved state.
    pub fn restore_state(&mut self, state: &SavedState) -> Result<(), LmError> {
        self.clear();
        if state.n_past == 0 {
            return Ok(());
        }
        // SAFETY: valid context; llama.cpp reads at most `len` bytes and
        // validates them (returns 0 on a mismatch).
        let read = unsafe {
            sys::llama_state_seq_set_data(
                self.ptr.as_ptr(),
                state.data.as_ptr(),
                state.data.len(),
                0,
            )
        };
        if read == 0 {
            self.clear();
            return Err(LmError::StateRejected);
        }
        self.n_past = state.n_past;
        Ok(())
    }

    /// llama.cpp's own control vector: adds `direction` to the output of
    /// `layer` (1-based layers only, as llama.cpp numbers them for this).
    /// The hook-integrity test compares the residual hook against it.
    pub fn set_control_vector(&mut self, layer: usize, direction: &[f32]) -> Result<(), LmError> {
        let (n_embd, n_layer) = (self.model.n_embd(), self.model.n_layer());
        if layer == 0 || layer >= n_layer || direction.len() != n_embd {
            return Err(LmError::ControlVector {
                layer,
                values: direction.len(),
                n_layer,
                n_embd,
            });
        }
        // The buffer starts at layer 1.
        let mut data = vec![0f32; n_embd * n_layer];
        data[(layer - 1) * n_embd..layer * n_embd].copy_from_slice(direction);
        // SAFETY: `data` holds `len` floats and llama.cpp copies them.
        let code = unsafe {
            sys::llama_set_adapter_cvec(
                self.ptr.as_ptr(),
                data.as_ptr(),
                data.len(),
                n_embd as i32,
                layer as i32,
                layer as i32,
            )
        };
        if code != 0 {
            return Err(LmError::ControlVectorRejected(code));
        }
        Ok(())
    }

    /// How many times the hook edited each layer's output.
    pub fn hook_edits(&self) -> Vec<u64> {
        self.hook
            .as_ref()
            .map(|s| s.edits.clone())
            .unwrap_or_default()
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: freed once; no decode can be running (it needs &mut self).
        unsafe { sys::llama_free(self.ptr.as_ptr()) };
        // Only now may the callback's state go (the batches free themselves).
        self.hook.take();
    }
}
