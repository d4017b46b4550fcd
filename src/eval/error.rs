//! Why a dataset could not be read, or an evaluation stopped.

use std::path::PathBuf;

use crate::lm::LmError;
use crate::picture::PictureError;
use crate::vision::VisionError;

/// Why `dataset.json` (or an image it names) is unusable.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(
        "{}: {source}\nhelp: generate one with `make eval` (the model kit's `demo-data`)",
        path.display()
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a vigil eval dataset: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: dataset version {version} (this vigil reads version 1)", path.display())]
    Version { path: PathBuf, version: u32 },
    #[error("{}: no items", .0.display())]
    Empty(PathBuf),
    #[error("{}: item {item} has no frames", path.display())]
    NoFrames { path: PathBuf, item: String },
    #[error("{}: item {item}: image {} is missing", path.display(), image.display())]
    MissingImage {
        path: PathBuf,
        item: String,
        image: PathBuf,
    },
}

/// Why one item could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ItemError {
    #[error("{}: {source}", path.display())]
    Image { path: PathBuf, source: PictureError },
    #[error("{}: {source}", path.display())]
    Encode { path: PathBuf, source: VisionError },
    #[error(transparent)]
    Resample(VisionError),
    #[error(transparent)]
    Lm(#[from] LmError),
}

/// Why an evaluation stopped.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Vision(#[from] VisionError),
    #[error(transparent)]
    Lm(#[from] LmError),
    #[error("item {item}: {source}")]
    Item {
        item: String,
        source: Box<ItemError>,
    },
}
