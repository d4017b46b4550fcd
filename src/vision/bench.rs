//! `vigil bench vision`: per-stage latency, median of N runs after warm-up,
//! printed as `name: value` lines (the same names the onnxruntime reference
//! in benches/ prints, so a script can divide one by the other).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use super::{Encoder, Resampler, VisionError};

pub struct BenchOptions {
    pub encoder: Option<PathBuf>,
    /// Name printed for the encoder figure (`NAME_ms`).
    pub encoder_label: String,
    pub resampler: Option<PathBuf>,
    pub frames: Vec<usize>,
    pub runs: usize,
}

fn median_ms(
    runs: usize,
    mut f: impl FnMut() -> Result<(), VisionError>,
) -> Result<f64, VisionError> {
    for _ in 0..2 {
        f()?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

pub fn run(options: &BenchOptions, out: &mut dyn Write) -> Result<(), VisionError> {
    if let Some(path) = &options.encoder {
        let encoder = Encoder::load(path)?;
        let size = encoder.input_size();
        // Content does not change the work; a fixed pattern keeps runs equal.
        let image: Vec<u8> = (0..size * size * 3).map(|i| (i * 37 % 251) as u8).collect();
        let ms = median_ms(options.runs, || encoder.encode_image(&image).map(|_| ()))?;
        let _ = writeln!(out, "{}_ms: {ms:.2}", options.encoder_label);
    }
    if let Some(path) = &options.resampler {
        let resampler = Resampler::load(path)?;
        let m = resampler.meta().clone();
        for &t in &options.frames {
            let features: Vec<f32> = (0..t * m.tokens_per_frame * m.feature_dim)
                .map(|i| ((i * 37 % 251) as f32 / 125.0) - 1.0)
                .collect();
            let ms = median_ms(options.runs, || {
                resampler.resample_raw(t, &features).map(|_| ())
            })?;
            let _ = writeln!(out, "resampler_t{t}_ms: {ms:.2}");
        }
    }
    Ok(())
}
