//! `GET /metrics`: the Prometheus exposition of every stage's table of
//! metrics (cameras, encoder, worker, outputs, API), plus the latency
//! histograms and the few gauges that are read, not counted.

use super::context::{API_METRICS, ApiContext};
use crate::capture::CAMERA_METRICS;
use crate::metrics::{Exposition, label};
use crate::output::{BACKLOG_METRICS, OUTPUT_METRICS};
use crate::vision::ENCODE_METRICS;
use crate::watch::{WORKER_METRICS, WorkerStats};

pub fn render(ctx: &ApiContext) -> String {
    let mut e = Exposition::default();
    let cameras = (ctx.cameras)();
    let per_camera: Vec<_> = cameras
        .iter()
        .map(|c| (label("camera", &c.name), c))
        .collect();
    e.table(CAMERA_METRICS, &per_camera);

    let v = ctx.vision.as_ref().map(|v| v.stats()).unwrap_or_default();
    e.table(ENCODE_METRICS, &[(String::new(), &v)]);
    e.summary(
        "vigil_encode_seconds",
        "Time spent in the image encoder.",
        v.encode_ms_total / 1000.0,
        v.encoded,
    );

    let idle = WorkerStats::default();
    let s = ctx.watch.as_ref().map_or(&idle, |w| &w.shared.stats);
    e.table(WORKER_METRICS, &[(String::new(), s)]);
    e.single(
        "vigil_ask_queue_depth",
        "Ad-hoc questions waiting for the worker.",
        "gauge",
        ctx.watch.as_ref().map_or(0, |w| w.queue_depth()) as f64,
    );
    e.histogram(
        "vigil_ask_seconds",
        "Ad-hoc question latency, end to end in the worker.",
        &s.ask_ms.snapshot(),
    );
    e.histogram(
        "vigil_resample_seconds",
        "Features, resampler and cross-attention K/V of a clip.",
        &s.resample_ms.snapshot(),
    );
    e.histogram(
        "vigil_lm_seconds",
        "LM time of one answer.",
        &s.lm_ms.snapshot(),
    );

    let per_output: Vec<_> = ctx
        .outputs
        .iter()
        .map(|o| (label("output", &o.name), o.as_ref()))
        .collect();
    e.table(OUTPUT_METRICS, &per_output);
    let with_backlog: Vec<_> = per_output
        .iter()
        .filter(|(_, o)| o.knows_backlog())
        .cloned()
        .collect();
    e.table(BACKLOG_METRICS, &with_backlog);

    e.table(API_METRICS, &[(String::new(), &ctx.counters)]);
    e.single(
        "vigil_event_stream_subscribers",
        "Open event streams.",
        "gauge",
        ctx.watch
            .as_ref()
            .map_or(0, |w| w.shared.events.subscribers()) as f64,
    );
    e.finish()
}
