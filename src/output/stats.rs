//! What each output did, for `/metrics` and the log.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::{Kind, Metric};

#[derive(Debug, Default)]
pub struct OutputStats {
    pub name: String,
    pub kind: &'static str,
    /// Events delivered (a 2xx answer).
    pub delivered: AtomicU64,
    /// Attempts that failed (no connection, timeout, non-2xx): each is
    /// retried.
    pub failures: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Events waiting now, the one being retried included.
    pub queued: AtomicU64,
}

impl OutputStats {
    pub fn new(name: &str, kind: &'static str) -> OutputStats {
        OutputStats {
            name: name.to_string(),
            kind,
            ..OutputStats::default()
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Whether `queued` is known: webhooks keep their own queue; the MQTT
    /// client's backlog is inside the client.
    pub fn knows_backlog(&self) -> bool {
        self.kind == "webhook"
    }
}

/// Each output's numbers, labelled by output, in `/metrics` and
/// `/v1/status`. the backlog is
/// [`BACKLOG_METRICS`], for the outputs that know theirs.
pub const OUTPUT_METRICS: &[Metric<OutputStats>] = &[
    Metric {
        name: "vigil_output_delivered_total",
        key: "delivered",
        help: "Events an output delivered.",
        kind: Kind::Counter,
        read: |s| OutputStats::get(&s.delivered),
    },
    Metric {
        name: "vigil_output_failures_total",
        key: "failures",
        help: "Delivery attempts that failed (each is retried).",
        kind: Kind::Counter,
        read: |s| OutputStats::get(&s.failures),
    },
    Metric {
        name: "vigil_output_dropped_total",
        key: "dropped",
        help: "Events dropped because an output's queue was full.",
        kind: Kind::Counter,
        read: |s| OutputStats::get(&s.dropped),
    },
];

/// The backlog of the outputs that know theirs.
pub const BACKLOG_METRICS: &[Metric<OutputStats>] = &[Metric {
    name: "vigil_output_queued",
    key: "queued",
    help: "Events waiting for an output.",
    kind: Kind::Gauge,
    read: |s| OutputStats::get(&s.queued),
}];
