//! The daemon's side of the systemd notify protocol (pure Rust, no
//! libsystemd). Every call is a no-op when NOTIFY_SOCKET is unset.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

pub struct Notifier {
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            watchdog: sd_notify::watchdog_enabled(),
            last_ping: None,
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!(error = %e, "sd_notify failed");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    pub fn reloading(&self) {
        // systemd 253+ wants the monotonic time with RELOADING=1.
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// How often the main loop must come round to ping in time.
    pub fn ping_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Pings the watchdog if it is enabled, the daemon is healthy, and half
    /// the interval has passed. An unhealthy daemon stays silent, so systemd
    /// restarts it.
    pub fn watchdog(&mut self, healthy: bool) {
        let Some(interval) = self.ping_interval() else {
            return;
        };
        if !healthy {
            return;
        }
        if self.last_ping.is_none_or(|t| t.elapsed() >= interval) {
            self.send(&[NotifyState::Watchdog]);
            self.last_ping = Some(Instant::now());
        }
    }
}
