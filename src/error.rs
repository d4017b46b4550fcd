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
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Listen(#[from] crate::api::listener::ListenError),
    #[error(transparent)]
    Lm(#[from] crate::lm::LmError),
    #[error(transparent)]
    Watch(#[from] crate::watch::WatchError),
    #[error("cannot start the API server: {0}")]
    Api(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}
