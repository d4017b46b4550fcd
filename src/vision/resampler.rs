//! The Perceiver Resampler: cached features of T frames → a fixed number of
//! visual tokens. One tract plan per frame count T, built on first use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;

use super::encoder::Encoder;
use super::error::VisionError;
use super::metadata::{self, ResamplerMeta};
use crate::ring::{FeatureData, Features};

/// `n × dim` visual tokens, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct VisualTokens {
    pub n: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

pub struct Resampler {
    path: PathBuf,
    meta: ResamplerMeta,
    model: InferenceModel,
    plans: Mutex<HashMap<usize, Arc<TypedRunnableModel>>>,
}

impl Resampler {
    pub fn load(path: &Path) -> Result<Resampler, VisionError> {
        if !path.is_file() {
            return Err(VisionError::MissingModel(path.to_path_buf()));
        }
        let meta: ResamplerMeta = metadata::load(path)?;
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| VisionError::load(path, e))?;
        let resampler = Resampler {
            path: path.to_path_buf(),
            meta,
            model,
            plans: Mutex::new(HashMap::new()),
        };
        // Build the single-frame plan now: a broken model fails at start-up.
        resampler.plan(1)?;
        Ok(resampler)
    }

    pub fn meta(&self) -> &ResamplerMeta {
        &self.meta
    }

    /// Checks that this resampler reads what `encoder` writes.
    pub fn check_fits(&self, encoder: &Encoder) -> Result<(), VisionError> {
        let e = encoder.meta();
        if e.feature_dim != self.meta.feature_dim
            || e.tokens_per_frame != self.meta.tokens_per_frame
        {
            return Err(VisionError::Mismatch {
                encoder: encoder.path().to_path_buf(),
                resampler: self.path.clone(),
                message: format!(
                    "the encoder gives {} tokens × {} per frame, the resampler expects {} × {}\nhelp: export the resampler for this encoder (python -m vigil_kit resampler --encoder-meta ...)",
                    e.tokens_per_frame,
                    e.feature_dim,
                    self.meta.tokens_per_frame,
                    self.meta.feature_dim
                ),
            });
        }
        Ok(())
    }

    fn plan(&self, frames: usize) -> Result<Arc<TypedRunnableModel>, VisionError> {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plan) = plans.get(&frames) {
            return Ok(Arc::clone(plan));
        }
        let m = &self.meta;
        // A concrete T: tract's symbolic dims pick slower kernels.
        let plan = self
            .model
            .clone()
            .with_input_fact(
                0,
                f32::fact([frames, m.tokens_per_frame, m.feature_dim]).into(),
            )
            .and_then(|model| model.into_optimized())
            .and_then(|model| model.into_runnable())
            .map_err(|e| VisionError::load(&self.path, e))?;
        let out: Vec<usize> = plan
            .model()
            .output_fact(0)
            .ok()
            .and_then(|f| f.shape.as_concrete().map(|d| d.to_vec()))
            .unwrap_or_default();
        if out != [m.n_latents, m.d_visual] {
            return Err(VisionError::Shape {
                path: self.path.clone(),
                message: format!(
                    "output shape {out:?}, but the metadata says [{}, {}]",
                    m.n_latents, m.d_visual
                ),
            });
        }
        plans.insert(frames, Arc::clone(&plan));
        Ok(plan)
    }

    /// Resamples `frames` (oldest first) into visual tokens.
    pub fn resample(&self, frames: &[&Features]) -> Result<VisualTokens, VisionError> {
        let m = &self.meta;
        let per_frame = m.tokens_per_frame * m.feature_dim;
        let mut input = Vec::with_capacity(frames.len() * per_frame);
        for f in frames {
            if f.shape != [m.tokens_per_frame, m.feature_dim] {
                return Err(VisionError::Input(format!(
                    "features of shape {:?}, the resampler expects [{}, {}]",
                    f.shape, m.tokens_per_frame, m.feature_dim
                )));
            }
            match &f.data {
                FeatureData::F32(v) => input.extend_from_slice(v),
                FeatureData::F16(v) => {
                    input.extend(v.iter().map(|&b| half::f16::from_bits(b).to_f32()))
                }
            }
        }
        self.resample_raw(frames.len(), &input)
    }

    /// Resamples `frames` frames of token-major f32 features.
    pub fn resample_raw(
        &self,
        frames: usize,
        features: &[f32],
    ) -> Result<VisualTokens, VisionError> {
        let m = &self.meta;
        if frames == 0 || frames > m.max_frames {
            return Err(VisionError::Input(format!(
                "{frames} frames: the resampler takes 1 to {} (its frame embeddings)",
                m.max_frames
            )));
        }
        let plan = self.plan(frames)?;
        let tensor = Tensor::from_shape(&[frames, m.tokens_per_frame, m.feature_dim], features)
            .map_err(|e| VisionError::Input(e.to_string()))?;
        let out = plan
            .run(tvec!(tensor.into_tvalue()))
            .map_err(|e| VisionError::Run(format!("{e:#}")))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| VisionError::Run(e.to_string()))?;
        Ok(VisualTokens {
            n: m.n_latents,
            dim: m.d_visual,
            data: view.iter().copied().collect(),
        })
    }
}
