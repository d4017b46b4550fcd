//! Why the watch could not start, build a clip, encode few-shot examples,
//! run a standing question's tick, or answer an ask: one enum per
//! operation, each message saying what failed and, where it helps, how to
//! fix it.

use std::path::PathBuf;
use std::time::Duration;

use crate::lm::LmError;
use crate::picture::PictureError;
use crate::vision::VisionError;

/// Why the inference worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Lm(#[from] LmError),
    #[error(
        "adapter {} reads visual tokens of width {adapter}, but the resampler writes {resampler}\nhelp: use the adapter trained with this resampler",
        path.display()
    )]
    VisualWidth {
        path: PathBuf,
        adapter: usize,
        resampler: usize,
    },
    #[error("cannot start the inference thread: {0}")]
    Thread(std::io::Error),
    #[error("the inference thread ended while loading the models")]
    Ended,
}

/// Why a window of frames could not become a clip (features, visual
/// tokens, cross-attention K/V).
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("encoding frame {seq}: {source}")]
    Encode { seq: u64, source: VisionError },
    #[error("the window's frames left the ring before they were encoded")]
    LeftRing,
    #[error(transparent)]
    Resample(VisionError),
    #[error(transparent)]
    Media(LmError),
}

/// Why a question's few-shot examples could not be encoded and fed.
#[derive(Debug, thiserror::Error)]
pub enum ExampleError {
    #[error("{}: {source}", path.display())]
    Load { path: PathBuf, source: PictureError },
    #[error("{}: {source}", path.display())]
    Encode { path: PathBuf, source: VisionError },
    #[error(transparent)]
    Resample(VisionError),
    #[error(transparent)]
    Lm(#[from] LmError),
}

/// Why a standing question's tick gave no answer (shown as its
/// `last_error`; the next tick tries again).
#[derive(Debug, thiserror::Error)]
pub enum TickError {
    #[error("camera \"{0}\" is not running")]
    CameraNotRunning(String),
    #[error("camera \"{0}\" has no frames yet")]
    NoFrames(String),
    /// The examples failed when the question was loaded: it does not run
    /// without them.
    #[error("few-shot examples: {0}")]
    Examples(String),
    #[error(transparent)]
    Clip(#[from] ClipError),
    #[error(transparent)]
    Lm(#[from] LmError),
}

/// Why an ad-hoc question got no answer.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("{waiting} questions are already waiting; try again shortly")]
    Busy { waiting: usize, retry_after_s: u64 },
    #[error("no camera named \"{camera}\" (cameras: {known})")]
    UnknownCamera { camera: String, known: String },
    #[error("camera \"{0}\" has no frames yet; try again when it is streaming")]
    NoFrames(String),
    /// The asker's examples: a 400, theirs to fix.
    #[error(transparent)]
    Examples(ExampleError),
    #[error("answering failed: {0}")]
    Clip(#[from] ClipError),
    #[error("answering failed: {0}")]
    Lm(#[from] LmError),
    #[error("the inference worker is not running")]
    Stopped,
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}
