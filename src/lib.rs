//! vigil watches camera streams and answers questions about what it saw.
//!
//! The modules follow the data path, and each imports only from those
//! before it: `config` → `ring` → `picture` → `capture` → `vision` → `lm` →
//! `store` → `watch` → `output`, `eval`, `api` → `daemon` (`metrics` and
//! `logging` are leaves any of them use; `store` sits below `watch`, which
//! writes events into it).

pub mod api;
pub mod capture;
pub mod config;
pub mod daemon;
pub mod error;
pub mod eval;
#[cfg(debug_assertions)]
pub mod fault;
pub mod lm;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod picture;
pub mod ring;
pub mod store;
pub mod vision;
pub mod watch;

pub use error::Error;
