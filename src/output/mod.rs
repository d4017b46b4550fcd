//! output: events leave the box. Each `[[output]]` gets its own bounded
//! queue and threads, fed from the worker's event broadcast, so a slow or
//! dead receiver never holds up inference; what cannot be queued is dropped
//! and counted (the event itself is always in the store). Webhooks POST
//! each event; MQTT publishes states, events and snapshots with Home
//! Assistant discovery.

mod mqtt;
mod signature;
mod stats;
mod webhook;

use std::sync::Arc;

pub use signature::sign;
pub use stats::{BACKLOG_METRICS, OUTPUT_METRICS, OutputStats};

use crate::config::{OutputSpec, QuestionSpec};
use crate::store::Store;
use crate::watch::Watch;

enum Running {
    Webhook(webhook::Webhook),
    Mqtt(mqtt::Mqtt),
}

impl Running {
    fn stats(&self) -> &Arc<OutputStats> {
        match self {
            Running::Webhook(w) => &w.stats,
            Running::Mqtt(m) => &m.stats,
        }
    }
}

/// The running outputs.
pub struct Outputs {
    running: Vec<Running>,
}

impl Outputs {
    /// Starts one delivery thread per output, each subscribed to `events`.
    /// An output that cannot subscribe (too many SSE clients) or start is
    /// logged and left out: the daemon runs on without it.
    /// MQTT outputs announce `questions` and `cameras` (Home Assistant
    /// discovery) and answer questions through `watch`.
    pub fn start(
        specs: &[OutputSpec],
        watch: &Arc<Watch>,
        store: &Arc<Store>,
        questions: &[QuestionSpec],
        cameras: &[String],
    ) -> Outputs {
        let mut running = Vec::new();
        for spec in specs {
            let Some(subscription) = watch.shared.events.subscribe() else {
                tracing::error!(output = %spec.name(), "cannot subscribe to events: too many subscribers");
                continue;
            };
            let started = match spec {
                OutputSpec::Webhook(w) => webhook::Webhook::start(w.clone(), subscription)
                    .map(Running::Webhook)
                    .map_err(|e| e.to_string()),
                OutputSpec::Mqtt(m) => mqtt::Mqtt::start(
                    m.clone(),
                    subscription,
                    Arc::clone(watch),
                    Arc::clone(store),
                    questions.to_vec(),
                    cameras.to_vec(),
                )
                .map(Running::Mqtt),
            };
            match started {
                Ok(r) => running.push(r),
                Err(e) => tracing::error!(output = %spec.name(), "cannot start: {e}"),
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
        self.running.iter().map(|r| Arc::clone(r.stats())).collect()
    }

    /// After a reload: MQTT outputs announce the new questions and cameras
    /// (and withdraw the removed ones). Other output settings change only
    /// on restart.
    pub fn reconfigure(&self, questions: &[QuestionSpec], cameras: &[String]) {
        for r in &self.running {
            if let Running::Mqtt(m) = r {
                m.reconfigure(questions, cameras);
            }
        }
    }

    /// Stops every delivery thread; events still queued are logged as
    /// undelivered (they stay in the store).
    pub fn stop(self) {
        for r in self.running {
            match r {
                Running::Webhook(w) => w.stop(),
                Running::Mqtt(m) => m.stop(),
            }
        }
    }
}
