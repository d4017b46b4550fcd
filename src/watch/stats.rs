//! The worker's counters and latency histograms (read by /v1/status and
//! /metrics).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::Histogram;

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
