//! The worker's counters and latency histograms, and [`WORKER_METRICS`],
//! the one table that `/metrics` and `/v1/status` both read them through.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::{Histogram, Kind, Metric};

#[derive(Default)]
pub struct WorkerStats {
    pub asks_answered: AtomicU64,
    pub asks_failed: AtomicU64,
    /// Refused because the queue was full.
    pub asks_refused: AtomicU64,
    /// Standing-question LM runs.
    pub runs: AtomicU64,
    /// Ticks answered from the last answer because the frames had not changed.
    pub runs_gated: AtomicU64,
    /// Ticks skipped because the worker was busy past them.
    pub ticks_skipped: AtomicU64,
    /// Runs that reused another question's clip and its K/V.
    pub clips_shared: AtomicU64,
    pub alerts: AtomicU64,
    pub events: AtomicU64,
    pub store_errors: AtomicU64,
    pub ask_ms: Histogram,
    pub resample_ms: Histogram,
    pub lm_ms: Histogram,
}

impl WorkerStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Mean ad-hoc answer time so far (0 before the first).
    pub fn mean_ask_ms(&self) -> f64 {
        let h = self.ask_ms.snapshot();
        if h.count() == 0 {
            0.0
        } else {
            h.sum_ms / h.count() as f64
        }
    }
}

/// A counter of [`WorkerStats`] read for a [`Metric`] (one function so the
/// table's entries stay one line each).
macro_rules! counter {
    ($name:literal, $field:ident, $help:literal) => {
        Metric {
            name: $name,
            key: stringify!($field),
            help: $help,
            kind: Kind::Counter,
            read: |s: &WorkerStats| WorkerStats::get(&s.$field),
        }
    };
}

/// Every counter of the worker: its Prometheus name, its `/v1/status` key
/// (the field's name) and what it counts.
pub const WORKER_METRICS: &[Metric<WorkerStats>] = &[
    counter!(
        "vigil_asks_answered_total",
        asks_answered,
        "Ad-hoc questions answered."
    ),
    counter!(
        "vigil_asks_failed_total",
        asks_failed,
        "Ad-hoc questions that failed."
    ),
    counter!(
        "vigil_asks_refused_total",
        asks_refused,
        "Ad-hoc questions refused because the queue was full."
    ),
    counter!(
        "vigil_standing_runs_total",
        runs,
        "Standing-question LM runs."
    ),
    counter!(
        "vigil_standing_gated_total",
        runs_gated,
        "Standing-question ticks answered from the last answer (frames unchanged)."
    ),
    counter!(
        "vigil_standing_ticks_skipped_total",
        ticks_skipped,
        "Standing-question ticks skipped because the worker was busy."
    ),
    counter!(
        "vigil_clips_shared_total",
        clips_shared,
        "Runs that reused another question's clip."
    ),
    counter!("vigil_alerts_total", alerts, "Alerts raised."),
    counter!("vigil_events_total", events, "Events stored."),
    counter!(
        "vigil_store_errors_total",
        store_errors,
        "Events that could not be stored."
    ),
];
