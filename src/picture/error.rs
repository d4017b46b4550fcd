//! Why a picture could not be read or written.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    #[error("GStreamer could not be initialised: {0}")]
    Init(String),
    #[error("file {} does not exist\nhelp: check the path; relative paths are resolved against the config file's folder", .0.display())]
    MissingFile(PathBuf),
    #[error(
        "GStreamer could not build an image decoder: {0}\nhelp: install gstreamer1.0-plugins-base"
    )]
    Pipeline(String),
    #[error(
        "{} cannot be decoded: {message}\nhelp: use a PNG or JPEG image (their decoders are in gstreamer1.0-plugins-good)",
        path.display()
    )]
    Decode { path: PathBuf, message: String },
    #[error("{} gave no picture", .0.display())]
    NoPicture(PathBuf),
    #[error("cannot encode JPEG: {0}")]
    Encode(String),
    #[error("unusable sample: {0}")]
    Sample(&'static str),
}
