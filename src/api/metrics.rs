//! `GET /metrics`: the Prometheus exposition of every counter the stages
//! keep (cameras, rings, encoder, worker, API).

use std::sync::atomic::Ordering;

use super::routes::ApiContext;
use crate::metrics::{Exposition, label};
use crate::watch::WorkerStats;

pub fn render(ctx: &ApiContext) -> String {
    let mut e = Exposition::default();
    let cameras = (ctx.cameras)();
    let per_camera = |f: &dyn Fn(&crate::capture::CameraStatus) -> f64| {
        cameras
            .iter()
            .map(|c| (label("camera", &c.name), f(c)))
            .collect::<Vec<_>>()
    };
    e.family(
        "vigil_camera_frames_total",
        "Frames sampled from the camera.",
        "counter",
        &per_camera(&|c| c.frames as f64),
    );
    e.family(
        "vigil_camera_reconnects_total",
        "Times the camera's pipeline was restarted.",
        "counter",
        &per_camera(&|c| c.reconnects as f64),
    );
    e.family(
        "vigil_ring_dropped_frames_total",
        "Frames dropped from the ring to stay within its memory budget.",
        "counter",
        &per_camera(&|c| c.ring.dropped as f64),
    );
    e.family(
        "vigil_ring_frames",
        "Frames held in the camera's ring.",
        "gauge",
        &per_camera(&|c| c.ring.frames as f64),
    );
    e.family(
        "vigil_camera_streaming",
        "1 when the camera is streaming.",
        "gauge",
        &per_camera(&|c| f64::from(u8::from(c.state == crate::capture::CameraState::Streaming))),
    );
    let v = ctx.vision.as_ref().map(|v| v.stats()).unwrap_or_default();
    e.single(
        "vigil_frames_encoded_total",
        "Frames run through the image encoder.",
        "counter",
        v.encoded as f64,
    );
    e.single(
        "vigil_frames_encode_skipped_total",
        "Frames not encoded on arrival because the encoder was busy.",
        "counter",
        v.skipped_busy as f64,
    );
    e.single(
        "vigil_frames_encode_reused_total",
        "Frames showing the same scene as the last one encoded, sharing its features.",
        "counter",
        v.reused as f64,
    );
    e.summary(
        "vigil_encode_seconds",
        "Time spent in the image encoder.",
        v.encode_ms_total / 1000.0,
        v.encoded,
    );
    let default_stats = WorkerStats::default();
    let s = ctx
        .watch
        .as_ref()
        .map_or(&default_stats, |w| &w.shared.stats);
    let get = WorkerStats::get;
    for (name, help, value) in [
        (
            "vigil_asks_answered_total",
            "Ad-hoc questions answered.",
            get(&s.asks_answered),
        ),
        (
            "vigil_asks_failed_total",
            "Ad-hoc questions that failed.",
            get(&s.asks_failed),
        ),
        (
            "vigil_asks_refused_total",
            "Ad-hoc questions refused because the queue was full.",
            get(&s.asks_refused),
        ),
        (
            "vigil_standing_runs_total",
            "Standing-question LM runs.",
            get(&s.runs),
        ),
        (
            "vigil_standing_gated_total",
            "Standing-question ticks answered from the last answer (frames unchanged).",
            get(&s.runs_gated),
        ),
        (
            "vigil_standing_ticks_skipped_total",
            "Standing-question ticks skipped because the worker was busy.",
            get(&s.ticks_skipped),
        ),
        (
            "vigil_clips_shared_total",
            "Runs that reused another question's clip.",
            get(&s.clips_shared),
        ),
        ("vigil_alerts_total", "Alerts raised.", get(&s.alerts)),
        ("vigil_events_total", "Events stored.", get(&s.events)),
        (
            "vigil_store_errors_total",
            "Events that could not be stored.",
            get(&s.store_errors),
        ),
    ] {
        e.single(name, help, "counter", value as f64);
    }
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
    output_families(&mut e, &ctx.outputs);
    let c = &ctx.counters;
    e.single(
        "vigil_api_requests_total",
        "API requests read.",
        "counter",
        c.requests.load(Ordering::Relaxed) as f64,
    );
    e.single(
        "vigil_api_bad_requests_total",
        "API requests answered with an error status.",
        "counter",
        c.bad_requests.load(Ordering::Relaxed) as f64,
    );
    e.single(
        "vigil_api_refused_connections_total",
        "Connections refused because too many were open.",
        "counter",
        c.refused_connections.load(Ordering::Relaxed) as f64,
    );
    e.single(
        "vigil_api_connections",
        "Open API connections.",
        "gauge",
        c.active.load(Ordering::Relaxed) as f64,
    );
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

/// Per `[[output]]`: deliveries, failed attempts, overflow and backlog.
fn output_families(e: &mut Exposition, outputs: &[std::sync::Arc<crate::output::OutputStats>]) {
    use crate::output::OutputStats;
    type Pick = fn(&OutputStats) -> &std::sync::atomic::AtomicU64;
    let families: [(&str, &str, &str, Pick); 4] = [
        (
            "vigil_output_delivered_total",
            "Events an output delivered.",
            "counter",
            |s| &s.delivered,
        ),
        (
            "vigil_output_failures_total",
            "Delivery attempts that failed (each is retried).",
            "counter",
            |s| &s.failures,
        ),
        (
            "vigil_output_dropped_total",
            "Events dropped because an output's queue was full.",
            "counter",
            |s| &s.dropped,
        ),
        (
            "vigil_output_queued",
            "Events waiting for an output.",
            "gauge",
            |s| &s.queued,
        ),
    ];
    for (name, help, kind, pick) in families {
        // Only webhooks know their backlog; the MQTT client's is internal.
        let samples: Vec<_> = outputs
            .iter()
            .filter(|s| name != "vigil_output_queued" || s.kind == "webhook")
            .map(|s| (label("output", &s.name), OutputStats::get(pick(s)) as f64))
            .collect();
        e.family(name, help, kind, &samples);
    }
}
