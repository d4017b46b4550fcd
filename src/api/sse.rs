//! `GET /v1/events/stream`: Server-Sent Events. Events missed since the
//! client's `Last-Event-ID` (or `?after=`) come first, from the store; then
//! live ones. A comment line every 15 s keeps proxies and clients sure the
//! stream is alive.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::store::{EventFilter, StoredEvent};
use crate::watch::Subscription;

const KEEPALIVE: Duration = Duration::from_secs(15);
/// How often the stream checks whether the daemon is stopping.
const POLL: Duration = Duration::from_millis(500);

/// One event in SSE framing.
pub fn frame(event: &StoredEvent) -> String {
    let data = serde_json::to_string(event).unwrap_or_default();
    format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        event.id,
        event.event.kind.as_str()
    )
}

pub fn stream<W: Write>(
    out: &mut W,
    subscription: Subscription<Arc<StoredEvent>>,
    backlog: Vec<StoredEvent>,
    filter: &EventFilter,
    stop: &AtomicBool,
) {
    let wanted = |e: &StoredEvent| {
        filter.camera.as_ref().is_none_or(|c| *c == e.event.camera)
            && filter
                .question
                .as_ref()
                .is_none_or(|q| Some(q) == e.event.question.as_ref())
    };
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\r\n: vigil events\n\n";
    if out
        .write_all(head.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return;
    }
    // Live events that the backlog already covered are not sent twice.
    let mut last_sent = 0;
    for e in &backlog {
        if out.write_all(frame(e).as_bytes()).is_err() {
            return;
        }
        last_sent = e.id;
    }
    if out.flush().is_err() {
        return;
    }
    let mut quiet_since = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let written = match subscription.rx.recv_timeout(POLL) {
            Ok(event) if event.id <= last_sent || !wanted(&event) => continue,
            Ok(event) => {
                last_sent = event.id;
                out.write_all(frame(&event).as_bytes())
            }
            Err(RecvTimeoutError::Timeout) if quiet_since.elapsed() >= KEEPALIVE => {
                out.write_all(b": keepalive\n\n")
            }
            Err(RecvTimeoutError::Timeout) => continue,
            // Dropped for falling behind: end; the client reconnects with
            // Last-Event-ID and catches up from the store.
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if written.and_then(|_| out.flush()).is_err() {
            return;
        }
        quiet_since = Instant::now();
    }
}
