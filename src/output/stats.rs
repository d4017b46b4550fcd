//! What each output did, for `/metrics` and the log.

use std::sync::atomic::{AtomicU64, Ordering};

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
}
