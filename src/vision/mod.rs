//! vision: the frozen image encoder and the Perceiver Resampler on tract.
//!
//! Public face: [`Encoder`] (frame → features, cached in the ring by
//! [`VisionWorker`]), [`Resampler`] (features of T frames → visual tokens),
//! and [`set_threads`]. Model shapes and preprocessing come from the model
//! kit's metadata next to each ONNX file.

pub mod bench;
mod encoder;
mod error;
mod metadata;
pub mod preprocess;
mod resampler;
mod worker;

pub use encoder::{Encoder, Precision};
pub use error::VisionError;
pub use metadata::{EncoderMeta, Fit, Preprocess, ResamplerMeta};
pub use resampler::{Resampler, VisualTokens};
pub use worker::{ENCODE_METRICS, EncodeStats, VisionWorker};

/// Sets how many threads tract's matrix kernels use (process-wide).
pub fn set_threads(threads: usize) {
    use tract_linalg::multithread::{Executor, set_default_executor};
    if threads > 1 {
        set_default_executor(Executor::multithread(threads));
    } else {
        set_default_executor(Executor::SingleThread);
    }
}
