//! Fault injection for tests of the daemon's self-supervision, compiled
//! into debug builds only (release builds carry no fault points).
//!
//! `VIGIL_FAULT=wedge-inference-after=2s` makes the inference worker stop
//! dead two seconds after it starts, as a job stuck inside llama.cpp
//! would: it neither beats nor returns. The watchdog test uses it to check
//! that a wedged worker stops the systemd watchdog pings.

use std::time::{Duration, Instant};

/// Blocks the calling thread forever once `after` has passed since
/// `started`, if `VIGIL_FAULT` names this point.
pub fn wedge_point(name: &str, started: Instant) {
    let Some(after) = configured(name) else {
        return;
    };
    if started.elapsed() >= after {
        tracing::warn!(point = name, "fault injection: wedging this thread");
        loop {
            std::thread::park();
        }
    }
}

fn configured(name: &str) -> Option<Duration> {
    let spec = std::env::var("VIGIL_FAULT").ok()?;
    let value = spec
        .strip_prefix("wedge-")?
        .strip_prefix(name)?
        .strip_prefix("-after=")?;
    crate::config::parse_duration(value).ok()
}
