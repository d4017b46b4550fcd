//! Every `unsafe` line vigil writes against llama.cpp lives here, behind a
//! safe face: a loaded [`Model`] (shared, read-only), a [`Pool`] of ggml
//! threads, and a [`Context`] (one sequence, one decoding thread) that can
//! carry a [`ResidualHook`](super::hook::ResidualHook) run from the
//! scheduler's eval callback ([`callback`]).

use std::ffi::{CStr, c_char, c_void};
use std::sync::Once;

use llama_cpp_sys_2 as sys;
use serde::{Deserialize, Serialize};

mod batch;
mod callback;
mod context;
pub mod gguf;
pub mod graph;
mod model;
mod pool;

pub use context::{Context, ContextOptions, SavedState};
pub use model::Model;
pub use pool::Pool;

/// A token id of the model's vocabulary: llama.cpp's `llama_token`,
/// `repr(transparent)` so that a slice of them is llama.cpp's array of ids.
/// Serialised as the bare id.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub sys::llama_token);

impl Token {
    /// The id as an index into a row of logits. Ids from the tokenizer
    /// are never negative.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

static BACKEND: Once = Once::new();

/// Initialises llama.cpp's backend once per process (before any model or
/// thread pool) and sends its log lines to tracing.
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
