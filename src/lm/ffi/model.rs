//! A GGUF model loaded by llama.cpp: its sizes, metadata and tokenizer.

use std::ffi::{CStr, CString, c_char};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;

use llama_cpp_sys_2 as sys;

use super::{Token, init_backend};
use crate::lm::error::LmError;

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

    /// The model for llama.cpp calls within ffi.
    pub(super) fn raw(&self) -> *mut sys::llama_model {
        self.ptr.as_ptr()
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
        if token.0 < 0 || token.0 as usize >= self.n_vocab() {
            return Vec::new();
        }
        // SAFETY: valid vocab and an in-range id; the text is NUL-terminated
        // and owned by the vocab.
        unsafe {
            let p = sys::llama_vocab_get_text(self.vocab(), token.0);
            if p.is_null() {
                return Vec::new();
            }
            CStr::from_ptr(p).to_bytes().to_vec()
        }
    }

    /// Whether `token` ends generation (EOS, EOT, ...).
    pub fn is_end_of_generation(&self, token: Token) -> bool {
        // SAFETY: valid vocab pointer; a pure lookup.
        unsafe { sys::llama_vocab_is_eog(self.vocab(), token.0) }
    }

    /// The token to start a sequence with, when the model wants one.
    pub fn bos(&self) -> Option<Token> {
        // SAFETY: valid vocab pointer; pure getters.
        unsafe {
            sys::llama_vocab_get_add_bos(self.vocab())
                .then(|| Token(sys::llama_vocab_bos(self.vocab())))
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
        let mut tokens: Vec<Token> = vec![Token(0); text.len() + 8];
        for _ in 0..2 {
            // SAFETY: `text` is valid for `len` bytes (no NUL needed: the
            // length is passed); `tokens` has room for `tokens.len()` ids,
            // and Token is a transparent llama_token.
            let n = unsafe {
                sys::llama_tokenize(
                    self.vocab(),
                    text.as_ptr() as *const c_char,
                    len,
                    tokens.as_mut_ptr().cast::<sys::llama_token>(),
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
            tokens.resize((-n) as usize, Token(0));
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
                    token.0,
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
