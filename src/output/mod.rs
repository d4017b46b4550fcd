//! output: events leave the box. Each `[[output]]` gets its own bounded
//! queue and delivery thread, fed from the worker's event broadcast, so a
//! slow or dead receiver never holds up inference; what cannot be queued
//! is dropped and counted (the event itself is always in the store).

mod signature;
mod stats;
mod webhook;

use std::sync::Arc;

pub use signature::sign;
pub use stats::OutputStats;

use crate::config::OutputSpec;
use crate::store::StoredEvent;
use crate::watch::Broadcast;

/// The running outputs.
pub struct Outputs {
    running: Vec<webhook::Webhook>,
}

impl Outputs {
    /// Starts one delivery thread per output, each subscribed to `events`.
    /// An output that cannot subscribe (too many SSE clients) or start is
    /// logged and left out: the daemon runs on without it.
    pub fn start(specs: &[OutputSpec], events: &Broadcast<Arc<StoredEvent>>) -> Outputs {
        let mut running = Vec::new();
        for spec in specs {
            let OutputSpec::Webhook(w) = spec;
            let Some(subscription) = events.subscribe() else {
                tracing::error!(output = %w.name, "cannot subscribe to events: too many subscribers");
                continue;
            };
            match webhook::Webhook::start(w.clone(), subscription) {
                Ok(h) => running.push(h),
                Err(e) => tracing::error!(output = %w.name, "cannot start: {e}"),
            }
        }
        Outputs { running }
    }

    /// No outputs (the daemon without models has no events to send).
    pub fn none() -> Outputs {
        Outputs {
            running: Vec::new(),
        }
    }

    pub fn stats(&self) -> Vec<Arc<OutputStats>> {
        self.running.iter().map(|w| Arc::clone(&w.stats)).collect()
    }

    /// Stops every delivery thread; events still queued are logged as
    /// undelivered (they stay in the store).
    pub fn stop(self) {
        for w in self.running {
            w.stop();
        }
    }
}
