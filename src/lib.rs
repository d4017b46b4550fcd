//! vigil watches camera streams and answers questions about what it saw.
//!
//! The modules follow the data path, and each imports only from those
//! before it: `config` → `ring` → `capture` → `vision` → `lm` → `daemon`.

pub mod capture;
pub mod config;
pub mod daemon;
pub mod error;
pub mod lm;
pub mod logging;
pub mod ring;
pub mod vision;

pub use error::Error;
