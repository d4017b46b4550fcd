//! The daemon's vision stage: models loaded once at start-up (a bad model
//! stops start-up with a message naming the file), then every camera frame
//! encoded once by the worker.

use std::sync::Arc;
use std::time::Instant;

use crate::config::{FeaturePrecision, ModelSettings};
use crate::vision::{self, Encoder, Precision, Resampler, VisionError, VisionWorker};

pub struct Vision {
    pub worker: Arc<VisionWorker>,
    /// Loaded at start-up so that a broken or mismatched resampler is
    /// reported then; the inference worker runs it.
    pub resampler: Option<Arc<Resampler>>,
}

impl Vision {
    /// `None` when the config names no encoder.
    /// `change_threshold`: below it a frame reuses its camera's last features.
    pub fn load(
        model: &ModelSettings,
        change_threshold: f64,
    ) -> Result<Option<Vision>, VisionError> {
        let Some(encoder_path) = &model.encoder else {
            return Ok(None);
        };
        let started = Instant::now();
        vision::set_threads(model.threads);
        let encoder = Encoder::load(encoder_path)?;
        let resampler = match &model.resampler {
            Some(path) => {
                let r = Resampler::load(path)?;
                r.check_fits(&encoder)?;
                Some(Arc::new(r))
            }
            None => None,
        };
        tracing::info!(
            encoder = %encoder.meta().name,
            tokens_per_frame = encoder.meta().tokens_per_frame,
            feature_dim = encoder.meta().feature_dim,
            resampler = resampler.as_ref().map(|r| r.meta().name.as_str()).unwrap_or("none"),
            threads = model.threads,
            load_ms = started.elapsed().as_millis() as u64,
            "vision models loaded"
        );
        let precision = match model.feature_precision {
            FeaturePrecision::F16 => Precision::F16,
            FeaturePrecision::F32 => Precision::F32,
        };
        Ok(Some(Vision {
            worker: Arc::new(VisionWorker::start(encoder, precision, change_threshold)),
            resampler,
        }))
    }

    pub fn log_summary(&self) {
        let s = self.worker.stats();
        tracing::info!(
            encoded = s.encoded,
            skipped_busy = s.skipped_busy,
            reused = s.reused,
            failed = s.failed,
            mean_encode_ms = format!("{:.1}", s.encode_ms_total / s.encoded.max(1) as f64),
            "vision summary"
        );
    }
}
