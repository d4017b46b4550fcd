//! Evaluation of the vision + LM stack on a labelled dataset (the demo
//! model's held-out set), run through the same code the daemon uses:
//! GStreamer decodes the images, tract encodes and resamples, llama.cpp with
//! the adapter answers with the standing questions' prompt format.
//!
//! Sits above `watch` (it reuses the prompt format and answer reading) and
//! below nothing: only `main` calls it.

mod dataset;
mod error;
mod report;
mod run;
mod states;
mod tokenize;

pub use dataset::{Dataset, Item};
pub use error::{DatasetError, EvalError, ItemError};
pub use report::Report;
pub use run::{EvalOptions, evaluate};
pub use states::lm_states;
pub use tokenize::tokenize;
