//! The frozen image encoder: any ONNX model that maps a square RGB image to
//! a spatial feature map `[1, C, H, W]` or a token sequence `[1, N, C]`,
//! run by tract with a plan optimised once for its fixed input size.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use super::error::VisionError;
use super::metadata::{self, EncoderMeta};
use super::preprocess;
use crate::ring::{FeatureData, Features, Frame};

/// How cached features are stored in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Half the memory; the resampler widens them back to f32.
    F16,
    F32,
}

pub struct Encoder {
    path: PathBuf,
    meta: EncoderMeta,
    plan: Arc<TypedRunnableModel>,
}

impl Encoder {
    /// Loads `path` and its metadata (`path` with `.json`) and builds the plan.
    pub fn load(path: &Path) -> Result<Encoder, VisionError> {
        if !path.is_file() {
            return Err(VisionError::MissingModel(path.to_path_buf()));
        }
        let meta: EncoderMeta = metadata::load(path)?;
        let shape_error = |message: String| VisionError::Shape {
            path: path.to_path_buf(),
            message,
        };
        if meta.input.layout != "NCHW" {
            return Err(shape_error(format!(
                "input layout {} is not supported (NCHW is)",
                meta.input.layout
            )));
        }
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| VisionError::load(path, e))?;
        let declared = model
            .input_fact(0)
            .map_err(|e| VisionError::load(path, e))?
            .shape
            .rank()
            .concretize();
        if let Some(rank) = declared.filter(|&r| r != 4) {
            return Err(shape_error(format!(
                "input has rank {rank}; an image encoder takes [1, 3, height, width]"
            )));
        }
        let [h, w] = meta.input.size;
        let plan = model
            .with_input_fact(0, f32::fact([1, 3, h, w]).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| VisionError::load(path, e))?;
        let encoder = Encoder {
            path: path.to_path_buf(),
            meta,
            plan,
        };
        encoder.check_output()?;
        Ok(encoder)
    }

    /// The output shape must agree with the metadata's tokens and width.
    fn check_output(&self) -> Result<(), VisionError> {
        let fact = self
            .plan
            .model()
            .output_fact(0)
            .map_err(|e| VisionError::load(&self.path, e))?;
        let dims: Vec<usize> = fact
            .shape
            .as_concrete()
            .map(|d| d.to_vec())
            .unwrap_or_default();
        let (tokens, channels) = match (self.meta.output.layout.as_str(), dims.as_slice()) {
            ("NCHW", [1, c, h, w]) => (h * w, *c),
            ("NTC", [1, t, c]) => (*t, *c),
            (layout, _) => {
                return Err(VisionError::Shape {
                    path: self.path.clone(),
                    message: format!("output shape {dims:?} does not match layout {layout}"),
                });
            }
        };
        if tokens != self.meta.tokens_per_frame || channels != self.meta.feature_dim {
            return Err(VisionError::Shape {
                path: self.path.clone(),
                message: format!(
                    "output is {tokens} tokens × {channels} but the metadata says {} × {}",
                    self.meta.tokens_per_frame, self.meta.feature_dim
                ),
            });
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn meta(&self) -> &EncoderMeta {
        &self.meta
    }

    /// The square input side.
    pub fn input_size(&self) -> usize {
        self.meta.input.size[0]
    }

    /// The frame as the model sees it: packed RGB, `size × size`.
    pub fn input_image(&self, frame: &Frame) -> Vec<u8> {
        preprocess::to_input_image(
            &frame.pixels,
            frame.width as usize,
            frame.height as usize,
            self.input_size(),
            &self.meta.preprocess,
        )
    }

    /// Runs the model on a prepared input image; returns token-major
    /// features, `tokens_per_frame × feature_dim`.
    pub fn encode_image(&self, image: &[u8]) -> Result<Vec<f32>, VisionError> {
        let [h, w] = self.meta.input.size;
        if image.len() != h * w * 3 {
            return Err(VisionError::Input(format!(
                "input image has {} bytes, expected {h}×{w}×3",
                image.len()
            )));
        }
        let tensor = self.input_tensor(image)?;
        let outputs = self
            .plan
            .run(tvec!(tensor.into_tvalue()))
            .map_err(|e| VisionError::Run(format!("{e:#}")))?;
        let view = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| VisionError::Run(e.to_string()))?;
        let (tokens, dim) = (self.meta.tokens_per_frame, self.meta.feature_dim);
        let mut out = vec![0f32; tokens * dim];
        if self.meta.output.layout == "NCHW" {
            // [1, C, H, W] → [H·W, C]: the resampler reads one token per cell.
            for (i, v) in view.iter().enumerate() {
                let (c, t) = (i / tokens, i % tokens);
                out[t * dim + c] = *v;
            }
        } else {
            out.iter_mut().zip(view.iter()).for_each(|(o, v)| *o = *v);
        }
        Ok(out)
    }

    /// The normalised NCHW input tensor for a prepared input image.
    pub(super) fn input_tensor(&self, image: &[u8]) -> Result<Tensor, VisionError> {
        let [h, w] = self.meta.input.size;
        let input = preprocess::normalize(image, h, &self.meta.preprocess);
        Tensor::from_shape(&[1, 3, h, w], &input).map_err(|e| VisionError::Run(e.to_string()))
    }

    pub(super) fn plan(&self) -> &Arc<TypedRunnableModel> {
        &self.plan
    }

    /// Encodes a frame into features for the ring.
    pub fn encode(&self, frame: &Frame, precision: Precision) -> Result<Features, VisionError> {
        let values = self.encode_image(&self.input_image(frame))?;
        let data = match precision {
            Precision::F32 => FeatureData::F32(values),
            Precision::F16 => FeatureData::F16(
                values
                    .iter()
                    .map(|&v| half::f16::from_f32(v).to_bits())
                    .collect(),
            ),
        };
        Ok(Features {
            shape: vec![self.meta.tokens_per_frame, self.meta.feature_dim],
            data,
        })
    }
}
