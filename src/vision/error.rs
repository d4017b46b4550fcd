//! Why a vision model could not be loaded or run.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("model file {} does not exist\nhelp: run `make models`, or fix the path in [model]", .0.display())]
    MissingModel(PathBuf),
    #[error("metadata {} is missing\nhelp: the model kit writes a .json next to each .onnx (tools/vigil_kit)", .0.display())]
    MissingMetadata(PathBuf),
    #[error("metadata {}: {message}", path.display())]
    BadMetadata { path: PathBuf, message: String },
    #[error("cannot load ONNX model {}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("model {} does not fit its metadata: {message}", path.display())]
    Shape { path: PathBuf, message: String },
    #[error("encoder {} and resampler {} do not fit together: {message}", encoder.display(), resampler.display())]
    Mismatch {
        encoder: PathBuf,
        resampler: PathBuf,
        message: String,
    },
    #[error("inference failed: {0}")]
    Run(String),
    #[error("{0}")]
    Input(String),
}

impl VisionError {
    pub(crate) fn load(path: &std::path::Path, e: impl std::fmt::Display) -> VisionError {
        // tract errors carry their cause chain in the alternate form.
        VisionError::Load {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        }
    }
}
