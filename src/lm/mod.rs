//! lm: the frozen GGUF language model on llama.cpp, conditioned by
//! Flamingo's tanh-gated cross-attention blocks.
//!
//! Public face: [`Model`] and [`Context`] (plain llama.cpp), [`Adapter`]
//! (the blocks' file), [`Session`] (a conditioned sequence: interleaved
//! prompts, prefix save/restore, choice scoring, generation) and
//! [`ResidualHook`], through which the blocks edit the residual stream
//! inside llama.cpp's graph. All unsafe code is in `ffi/`.

mod adapter;
mod answer;
pub mod bench;
mod error;
#[allow(unsafe_code)] // The bindings: every block says why it is sound.
mod ffi;
mod hook;
mod prompt;
mod session;
mod xattn;

pub use adapter::{Adapter, AdapterConfig, LmIdentity, TrainedOn, tokenizer_fingerprint};
pub use answer::{Choice, GenerateOptions, Generated, StopReason, log_softmax};
pub use error::{GraphError, HookError, LmError};
pub use ffi::{Context, ContextOptions, Model, Pool, SavedState, Token};
pub use hook::{ResidualHook, layer_of};
pub use prompt::{Chunk, Prompt};
pub use session::{Prefix, Session};
pub use xattn::{MediaKv, Visual};
