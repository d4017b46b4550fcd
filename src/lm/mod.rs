//! lm: the frozen GGUF language model on llama.cpp.
//!
//! Public face: [`Model`] (load, tokenizer, sizes), [`Context`] (decode a
//! sequence, read logits) and [`ResidualHook`], through which the gated
//! cross-attention blocks edit the residual stream inside llama.cpp's graph.
//! All unsafe code is in `ffi.rs`.

mod error;
mod ffi;
mod hook;

pub use error::LmError;
pub use ffi::{Context, ContextOptions, Model, Token};
pub use hook::{ResidualHook, layer_of};
