//! One webhook: an intake thread moves matching events from the broadcast
//! into a bounded queue (dropping the oldest when full), and a delivery
//! thread POSTs them in order, retrying each with backoff until it is
//! accepted (2xx) or pushed out of the queue.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select};
use serde_json::json;

use super::signature::sign;
use super::stats::OutputStats;
use crate::capture::Backoff;
use crate::config::{WebhookSpec, redact_url};
use crate::store::StoredEvent;
use crate::watch::Subscription;

/// The first retry waits this long; later ones double up to `retry_max`.
const RETRY_INITIAL: Duration = Duration::from_secs(1);

pub struct Webhook {
    pub stats: Arc<OutputStats>,
    /// Dropped by `stop`: both threads end when they see it closed.
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Webhook {
    pub fn start(
        spec: WebhookSpec,
        events: Subscription<Arc<StoredEvent>>,
    ) -> std::io::Result<Webhook> {
        let stats = Arc::new(OutputStats::new(&spec.name, "webhook"));
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let (queue_tx, queue_rx) = bounded(spec.queue);
        let spec = Arc::new(spec);
        let intake = {
            let (spec, stats, stop, queue_rx) = (
                Arc::clone(&spec),
                Arc::clone(&stats),
                stop_rx.clone(),
                queue_rx.clone(),
            );
            std::thread::Builder::new()
                .name(format!("out-{}", spec.name))
                .spawn(move || intake(&spec, &stats, &events, &queue_tx, &queue_rx, &stop))?
        };
        let delivery = {
            let (spec, stats) = (Arc::clone(&spec), Arc::clone(&stats));
            std::thread::Builder::new()
                .name(format!("send-{}", spec.name))
                .spawn(move || deliver(&spec, &stats, &queue_rx, &stop_rx))?
        };
        tracing::info!(output = %spec.name, url = %redact_url(&spec.url), events = ?spec.events, "webhook output started");
        Ok(Webhook {
            stats,
            stop: Some(stop_tx),
            threads: vec![intake, delivery],
        })
    }

    pub fn stop(mut self) {
        self.stop.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let left = OutputStats::get(&self.stats.queued);
        if left > 0 {
            tracing::warn!(output = %self.stats.name, undelivered = left, "webhook stopped with events undelivered (they are in the event store)");
        }
    }
}

fn intake(
    spec: &WebhookSpec,
    stats: &OutputStats,
    events: &Subscription<Arc<StoredEvent>>,
    queue: &Sender<Arc<StoredEvent>>,
    queue_rx: &Receiver<Arc<StoredEvent>>,
    stop: &Receiver<()>,
) {
    loop {
        let event = select! {
            recv(events.rx) -> e => match e {
                Ok(e) => e,
                Err(_) => return,
            },
            recv(stop) -> _ => return,
        };
        if !spec.events.iter().any(|k| k == event.event.kind.as_str()) {
            continue;
        }
        let mut item = event;
        loop {
            match queue.try_send(item) {
                Ok(()) => {
                    stats.queued.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(TrySendError::Full(back)) => {
                    // Full: the oldest waiting event makes room.
                    if let Ok(oldest) = queue_rx.try_recv() {
                        stats.queued.fetch_sub(1, Ordering::Relaxed);
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(output = %spec.name, event_id = oldest.id, queue = spec.queue, "webhook queue full: dropped the oldest event");
                    }
                    item = back;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

fn deliver(
    spec: &WebhookSpec,
    stats: &OutputStats,
    queue: &Receiver<Arc<StoredEvent>>,
    stop: &Receiver<()>,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(spec.timeout))
        .http_status_as_error(false)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut backoff = Backoff::new(RETRY_INITIAL, spec.retry_max);
    loop {
        let event = select! {
            recv(queue) -> e => match e {
                Ok(e) => e,
                Err(_) => return,
            },
            recv(stop) -> _ => return,
        };
        let body = payload(spec, &event);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            match post(&agent, spec, &event, &body) {
                Ok(()) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    if attempts > 1 {
                        tracing::info!(output = %spec.name, event_id = event.id, attempts, "webhook delivered after retrying");
                    } else {
                        tracing::debug!(output = %spec.name, event_id = event.id, "webhook delivered");
                    }
                    backoff.reset();
                    break;
                }
                Err(e) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff.next_delay();
                    tracing::warn!(output = %spec.name, event_id = event.id, attempts, retry_in_ms = delay.as_millis() as u64, "webhook delivery failed: {e}");
                    // Waiting for the retry; a stop ends it.
                    if !matches!(
                        stop.recv_timeout(delay),
                        Err(crossbeam_channel::RecvTimeoutError::Timeout)
                    ) {
                        return;
                    }
                }
            }
        }
        stats.queued.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The JSON body: the event as the API shows it, and where its snapshot is.
fn payload(spec: &WebhookSpec, event: &StoredEvent) -> Vec<u8> {
    let path = format!("/v1/events/{}/snapshot.jpg", event.id);
    let snapshot_url = spec
        .snapshot_base
        .as_ref()
        .filter(|_| event.has_snapshot)
        .map(|base| format!("{base}{path}"));
    let body = json!({
        "output": spec.name,
        "event": event,
        "snapshot": event.has_snapshot.then_some(path),
        "snapshot_url": snapshot_url,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn post(
    agent: &ureq::Agent,
    spec: &WebhookSpec,
    event: &StoredEvent,
    body: &[u8],
) -> Result<(), String> {
    let mut request = agent
        .post(&spec.url)
        .header("Content-Type", "application/json")
        .header("X-Vigil-Event", event.event.kind.as_str())
        .header("X-Vigil-Event-Id", event.id.to_string());
    if let Some(secret) = &spec.secret {
        request = request.header("X-Vigil-Signature-256", sign(secret.as_bytes(), body));
    }
    for (k, v) in &spec.headers {
        request = request.header(k, v);
    }
    match request.send(body) {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!("HTTP {}", response.status())),
        Err(e) => Err(e.to_string()),
    }
}
