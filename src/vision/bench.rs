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
    /// Also print where the encoder's time goes, by operator.
    pub profile: bool,
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
        if options.profile {
            profile(&encoder, &image, options.runs, out)?;
        }
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

/// Time per operator kind over `runs` runs, as `# op: ms (share)` lines.
fn profile(
    encoder: &Encoder,
    image: &[u8],
    runs: usize,
    out: &mut dyn Write,
) -> Result<(), VisionError> {
    use std::collections::HashMap;
    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::plan::{SimpleState, eval};

    let runs = runs.max(1);
    let mut per_op: HashMap<String, (f64, usize)> = HashMap::new();
    let mut state =
        SimpleState::new(encoder.plan()).map_err(|e| VisionError::Run(e.to_string()))?;
    for _ in 0..runs {
        let input = encoder.input_tensor(image)?;
        state
            .run_plan_with_eval(tvec!(input.into_tvalue()), |ctx, op_state, node, inputs| {
                let started = Instant::now();
                let result = eval(ctx, op_state, node, inputs);
                let entry = per_op.entry(node.op().name().to_string()).or_default();
                entry.0 += started.elapsed().as_secs_f64() * 1000.0;
                entry.1 += 1;
                result
            })
            .map_err(|e| VisionError::Run(format!("{e:#}")))?;
    }
    let total: f64 = per_op.values().map(|v| v.0).sum();
    let mut rows: Vec<_> = per_op.into_iter().collect();
    rows.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    for (op, (ms, calls)) in rows.iter().take(12) {
        let _ = writeln!(
            out,
            "# {op}: {:.2} ms/run, {:.0}%, {} nodes",
            ms / runs as f64,
            100.0 * ms / total,
            calls / runs
        );
    }
    Ok(())
}
