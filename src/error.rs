//! The crate's top-level error: one variant per layer.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
    #[error(transparent)]
    Probe(#[from] crate::capture::ProbeError),
    #[error(transparent)]
    Vision(#[from] crate::vision::VisionError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}
