//! The JSON the model kit writes next to each ONNX file: what the model
//! expects and what it returns, so nothing about a model is hard-coded.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::VisionError;

#[derive(Debug, Clone, Deserialize)]
pub struct EncoderMeta {
    pub name: String,
    pub input: EncoderInput,
    pub preprocess: Preprocess,
    pub output: EncoderOutput,
    pub tokens_per_frame: usize,
    pub feature_dim: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EncoderInput {
    /// `[height, width]`; the encoder runs on this fixed size.
    pub size: [usize; 2],
    pub layout: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EncoderOutput {
    /// `NCHW` (a spatial map) or `NTC` (a token sequence).
    pub layout: String,
}

/// How a frame becomes the encoder's input tensor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Preprocess {
    pub fit: Fit,
    #[serde(default = "grey")]
    pub fill: [u8; 3],
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

fn grey() -> [u8; 3] {
    [127, 127, 127]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Scale the shorter side to fit and cut out the centre.
    Crop,
    /// Scale the longer side to fit and pad with `fill`.
    Letterbox,
    /// Scale each side to fit, ignoring the aspect ratio.
    Stretch,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResamplerMeta {
    pub name: String,
    pub feature_dim: usize,
    pub tokens_per_frame: usize,
    pub n_latents: usize,
    pub d_visual: usize,
    pub max_frames: usize,
}

/// `model.onnx` → `model.json`.
pub fn path_for(model: &Path) -> PathBuf {
    model.with_extension("json")
}

pub fn load<T: for<'de> Deserialize<'de>>(model: &Path) -> Result<T, VisionError> {
    let path = path_for(model);
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => VisionError::MissingMetadata(path.clone()),
        _ => VisionError::BadMetadata {
            path: path.clone(),
            message: e.to_string(),
        },
    })?;
    serde_json::from_str(&text).map_err(|e| VisionError::BadMetadata {
        path,
        message: e.to_string(),
    })
}
