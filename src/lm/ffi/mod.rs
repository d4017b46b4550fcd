//! Every `unsafe` line vigil writes against llama.cpp lives here, behind a
//! safe face: a loaded [`Model`] (shared, read-only) and a [`Context`]
//! (one sequence, one decoding thread) that can carry a [`ResidualHook`]
//! run from the scheduler's eval callback.

use std::ffi::{CStr, CString, c_char, c_void};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Once;

use llama_cpp_sys_2 as sys;

use super::error::{HookError, LmError};
use super::hook::{ResidualHook, layer_of};

pub mod gguf;
pub mod graph;

pub type Token = i32;

static BACKEND: Once = Once::new();

fn init_backend() {
    BACKEND.call_once(|| {
        // SAFETY: both calls take no pointers we own; llama.cpp requires the
        // backend to be initialised once per process before any model loads,
        // which `Once` guarantees. The log callback is a plain function.
        unsafe {
            sys::llama_log_set(Some(forward_log), std::ptr::null_mut());
            sys::llama_backend_init();
        }
    });
}

/// llama.cpp's log lines go to tracing (debug), not to stderr.
unsafe extern "C" fn forward_log(_level: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for this call.
    let line = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    tracing::debug!(target: "llama.cpp", "{}", line.trim_end());
}

/// A GGUF model loaded by llama.cpp (memory-mapped, CPU).
pub struct Model {
    ptr: NonNull<sys::llama_model>,
}

// SAFETY: after loading, llama.cpp only reads a llama_model; it is meant to
// be shared by several contexts and threads. It is freed once, in Drop.
unsafe impl Send for Model {}
// SAFETY: as for Send: shared references only read the model.
unsafe impl Sync for Model {}

impl Model {
    pub fn load(path: &Path) -> Result<Model, LmError> {
        if !path.is_file() {
            return Err(LmError::Missing(path.to_path_buf()));
        }
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| LmError::NulInPath(path.to_path_buf()))?;
        init_backend();
        // SAFETY: default params are plain data; the path outlives the call;
        // a null return (any load failure) is handled below.
        let ptr = unsafe {
            let mut params = sys::llama_model_default_params();
            params.n_gpu_layers = 0;
            sys::llama_model_load_from_file(c_path.as_ptr(), params)
        };
        NonNull::new(ptr)
            .map(|ptr| Model { ptr })
            .ok_or_else(|| LmError::Load(path.to_path_buf()))
    }

    fn vocab(&self) -> *const sys::llama_vocab {
        // SAFETY: the model pointer is valid for self's lifetime; the vocab
        // belongs to the model and lives as long as it.
        unsafe { sys::llama_model_get_vocab(self.ptr.as_ptr()) }
    }

    pub fn n_embd(&self) -> usize {
        // SAFETY: valid model pointer; a pure getter.
        unsafe { sys::llama_model_n_embd(self.ptr.as_ptr()) as usize }
    }

    pub fn n_layer(&self) -> usize {
        // SAFETY: valid model pointer; a pure getter.
        unsafe { sys::llama_model_n_layer(self.ptr.as_ptr()) as usize }
    }

    pub fn n_vocab(&self) -> usize {
        // SAFETY: valid vocab pointer; a pure getter.
        unsafe { sys::llama_vocab_n_tokens(self.vocab()) as usize }
    }

    /// A metadata string of the GGUF (e.g. `general.architecture`).
    pub fn meta(&self, key: &str) -> Option<String> {
        let c_key = CString::new(key).ok()?;
        let mut buf = vec![0u8; 256];
        for _ in 0..2 {
            // SAFETY: valid model and key; llama.cpp writes at most
            // `buf.len()` bytes (NUL included) and returns the full length,
            // or -1 when the key is absent.
            let n = unsafe {
                sys::llama_model_meta_val_str(
                    self.ptr.as_ptr(),
                    c_key.as_ptr(),
                    buf.as_mut_ptr() as *mut c_char,
                    buf.len(),
                )
            };
            if n < 0 {
                return None;
            }
            if (n as usize) < buf.len() {
                buf.truncate(n as usize);
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
            buf.resize(n as usize + 1, 0);
        }
        None
    }

    /// The stored text of a vocabulary entry, as bytes (as in the GGUF's
    /// token list).
    pub fn token_bytes(&self, token: Token) -> Vec<u8> {
        if token < 0 || token as usize >= self.n_vocab() {
            return Vec::new();
        }
        // SAFETY: valid vocab and an in-range id; the text is NUL-terminated
        // and owned by the vocab.
        unsafe {
            let p = sys::llama_vocab_get_text(self.vocab(), token);
            if p.is_null() {
                return Vec::new();
            }
            CStr::from_ptr(p).to_bytes().to_vec()
        }
    }

    /// Whether `token` ends generation (EOS, EOT, ...).
    pub fn is_end_of_generation(&self, token: Token) -> bool {
        // SAFETY: valid vocab pointer; a pure lookup.
        unsafe { sys::llama_vocab_is_eog(self.vocab(), token) }
    }

    /// The token to start a sequence with, when the model wants one.
    pub fn bos(&self) -> Option<Token> {
        // SAFETY: valid vocab pointer; pure getters.
        unsafe {
            sys::llama_vocab_get_add_bos(self.vocab()).then(|| sys::llama_vocab_bos(self.vocab()))
        }
    }

    /// Text → tokens with the model's own tokenizer. `special` adds BOS
    /// when the model wants it and parses special tokens in the text.
    pub fn tokenize(&self, text: &str, special: bool) -> Result<Vec<Token>, LmError> {
        self.tokenize_with(text, special, special)
    }

    /// Text → tokens; `add_special` adds BOS (when the model wants it),
    /// `parse_special` reads special-token text (`<|im_start|>`) as those
    /// tokens rather than as plain text.
    pub fn tokenize_with(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>, LmError> {
        let len =
            i32::try_from(text.len()).map_err(|_| LmError::Tokenize("text too long".into()))?;
        let mut tokens: Vec<Token> = vec![0; text.len() + 8];
        for _ in 0..2 {
            // SAFETY: `text` is valid for `len` bytes (no NUL needed: the
            // length is passed); `tokens` has room for `tokens.len()` ids.
            let n = unsafe {
                sys::llama_tokenize(
                    self.vocab(),
                    text.as_ptr() as *const c_char,
                    len,
                    tokens.as_mut_ptr(),
                    tokens.len() as i32,
                    add_special,
                    parse_special,
                )
            };
            if n >= 0 {
                tokens.truncate(n as usize);
                return Ok(tokens);
            }
            if n == i32::MIN {
                break;
            }
            tokens.resize((-n) as usize, 0);
        }
        Err(LmError::Tokenize(format!(
            "llama_tokenize failed for {} bytes",
            text.len()
        )))
    }

    /// The text of one token.
    pub fn piece(&self, token: Token) -> String {
        let mut buf = vec![0u8; 64];
        for _ in 0..2 {
            // SAFETY: `buf` has room for `buf.len()` bytes; llama.cpp writes
            // at most that many and returns the needed size when negative.
            let n = unsafe {
                sys::llama_token_to_piece(
                    self.vocab(),
                    token,
                    buf.as_mut_ptr() as *mut c_char,
                    buf.len() as i32,
                    0,
                    false,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return String::from_utf8_lossy(&buf).into_owned();
            }
            buf.resize((-n) as usize, 0);
        }
        String::new()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: contexts borrow the model, so none outlives it; freed once.
        unsafe { sys::llama_model_free(self.ptr.as_ptr()) }
    }
}

/// A ggml thread pool kept for the life of a session: llama.cpp's graph
/// and the cross-attention blocks both compute on it. Without one, ggml
/// spawns and joins its worker threads on every graph compute, and the
/// eval callback splits each decode into one compute per hooked layer.
///
/// Computes on one pool must never overlap. A pool is neither `Send` nor
/// `Sync` (it is shared through `Rc`), so everything that computes on it
/// runs on one thread, one compute at a time: llama.cpp inside
/// llama_decode, and the blocks' graphs from the eval callback (between
/// llama.cpp's computes) or outside any decode.
pub struct Pool {
    ptr: NonNull<sys::ggml_threadpool>,
    threads: usize,
}

impl Pool {
    pub fn new(threads: usize) -> Result<Pool, LmError> {
        init_backend();
        let threads = threads.max(1);
        // SAFETY: default params are plain data; a null return is handled.
        let ptr = unsafe {
            let mut params = sys::ggml_threadpool_params_default(threads as i32);
            sys::ggml_threadpool_new(&mut params)
        };
        let ptr = NonNull::new(ptr)
            .ok_or_else(|| LmError::Context(format!("no ggml thread pool of {threads} threads")))?;
        Ok(Pool { ptr, threads })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub(super) fn raw(&self) -> *mut sys::ggml_threadpool {
        self.ptr.as_ptr()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: freed once; contexts that use it hold an Rc and free
        // themselves first.
        unsafe { sys::ggml_threadpool_free(self.ptr.as_ptr()) }
    }
}

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

/// What the eval callback works with; boxed so its address is stable for
/// llama.cpp, and owned by the context that registered it.
struct HookState {
    hook: Box<dyn ResidualHook>,
    wanted: Vec<bool>,
    n_embd: usize,
    scratch: Vec<f32>,
    /// Times each layer's output was edited.
    edits: Vec<u64>,
    error: Option<HookError>,
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
    batch: sys::llama_batch,
    /// Allocated on first use.
    embd_batch: Option<sys::llama_batch>,
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
            sys::llama_init_from_model(model.ptr.as_ptr(), params)
        };
        let ptr = NonNull::new(ptr).ok_or_else(|| {
            LmError::Context(format!(
                "n_ctx {} n_batch {}",
                options.n_ctx, options.n_batch
            ))
        })?;
        // SAFETY: allocates a token batch of n_batch entries with one
        // sequence id each; freed once in Drop. The pool outlives the
        // context (it holds an Rc and frees itself first).
        let batch = unsafe {
            sys::llama_attach_threadpool(ptr.as_ptr(), pool.raw(), pool.raw());
            sys::llama_batch_init(options.n_batch as i32, 0, 1)
        };
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
            // SAFETY: allocates an embedding batch of n_batch rows of n_embd
            // floats with one sequence id each; freed once in Drop.
            self.embd_batch =
                Some(unsafe { sys::llama_batch_init(self.n_batch as i32, n_embd as i32, 1) });
        }
        let n_vocab = self.model.n_vocab();
        let mut out = Vec::with_capacity(rows.len());
        let mut wanted = rows.iter().peekable();
        let mut first = 0;
        while first < n {
            let len = self.n_batch.min(n - first);
            let is_last_chunk = first + len == n;
            let b = match input {
                Input::Tokens(_) => &mut self.batch,
                Input::Embeddings(..) => self.embd_batch.as_mut().expect("allocated above"),
            };
            // SAFETY: the batch was allocated by llama_batch_init with room
            // for n_batch positions (tokens, or n_embd floats each) and one
            // sequence id each; len <= n_batch. llama_decode reads the batch
            // and does not keep it.
            let code = unsafe {
                match input {
                    Input::Tokens(tokens) => {
                        std::ptr::copy_nonoverlapping(tokens[first..].as_ptr(), b.token, len)
                    }
                    Input::Embeddings(values, n_embd) => std::ptr::copy_nonoverlapping(
                        values[first * n_embd..].as_ptr(),
                        b.embd,
                        len * n_embd,
                    ),
                }
                for i in 0..len {
                    *b.pos.add(i) = (self.n_past + i) as i32;
                    *b.n_seq_id.add(i) = 1;
                    *(*b.seq_id.add(i)) = 0;
                    let want = rows.contains(&(first + i)) || (is_last_chunk && i + 1 == len);
                    *b.logits.add(i) = want as i8;
                }
                b.n_tokens = len as i32;
                sys::llama_decode(self.ptr.as_ptr(), *b)
            };
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
        unsafe {
            sys::llama_free(self.ptr.as_ptr());
            sys::llama_batch_free(self.batch);
            if let Some(batch) = self.embd_batch.take() {
                sys::llama_batch_free(batch);
            }
        }
        // Only now may the callback's state go.
        self.hook.take();
    }
}

/// The scheduler's eval callback. With `ask`, it says whether it wants a
/// tensor (only the `l_out-N` of hooked layers); without, it gets that
/// tensor computed, edits it in place and lets the graph continue.
unsafe extern "C" fn eval_callback(
    t: *mut sys::ggml_tensor,
    ask: bool,
    user_data: *mut c_void,
) -> bool {
    if t.is_null() || user_data.is_null() {
        return !ask;
    }
    // SAFETY: user_data is the HookState registered by Context::new, alive
    // until after llama_free; only this decoding thread touches it while
    // llama_decode runs.
    let state = unsafe { &mut *(user_data as *mut HookState) };
    // SAFETY: `t` is non-null (checked above), a valid tensor of the graph
    // being computed, and nothing else touches it during the callback.
    let tensor = unsafe { &mut *t };
    let outcome = catch_unwind(AssertUnwindSafe(|| edit_tensor(state, tensor, ask)));
    match outcome {
        Ok(Ok(answer)) => answer,
        Ok(Err(error)) => {
            state.error = Some(error);
            false
        }
        Err(_) => {
            state.error = Some(HookError::Panicked);
            false
        }
    }
}

fn edit_tensor(
    state: &mut HookState,
    t: &mut sys::ggml_tensor,
    ask: bool,
) -> Result<bool, HookError> {
    // SAFETY: ggml keeps tensor names NUL-terminated within the array.
    let name = unsafe { CStr::from_ptr(t.name.as_ptr()) }.to_string_lossy();
    let Some(layer) = layer_of(&name).filter(|&l| l < state.wanted.len() && state.wanted[l]) else {
        // Not ours: do not ask for it; if handed it anyway, carry on.
        return Ok(!ask);
    };
    if ask {
        return Ok(true);
    }
    let n_embd = state.n_embd;
    if t.type_ != sys::GGML_TYPE_F32
        || t.ne[0] as usize != n_embd
        || t.nb[0] != 4
        || t.nb[1] != 4 * n_embd
    {
        return Err(HookError::Layout {
            name: name.into_owned(),
            n_embd,
            type_: t.type_ as i64,
            ne: t.ne,
            nb: t.nb,
        });
    }
    // SAFETY: `t` is a valid, computed tensor; nbytes is its exact size.
    let bytes = unsafe { sys::ggml_nbytes(t) };
    let values = bytes / 4;
    state.scratch.resize(values, 0.0);
    // SAFETY: scratch holds exactly `bytes` bytes; the tensor is computed
    // (ask == false) and its backend buffer may be read and written here,
    // between graph splits, before any node that reads it runs.
    unsafe {
        sys::ggml_backend_tensor_get(t, state.scratch.as_mut_ptr() as *mut c_void, 0, bytes);
    }
    state.hook.edit(layer, &mut state.scratch, n_embd)?;
    // SAFETY: as above.
    unsafe {
        sys::ggml_backend_tensor_set(t, state.scratch.as_ptr() as *const c_void, 0, bytes);
    }
    state.edits[layer] += 1;
    Ok(true)
}
