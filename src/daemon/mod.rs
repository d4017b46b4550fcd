//! daemon: `vigil run`. Starts the cameras, speaks sd-notify, reloads on
//! SIGHUP, stops cleanly on SIGTERM/SIGINT.

mod cameras;
mod notify;
mod signals;
mod vision;

use std::path::Path;
use std::time::{Duration, Instant};

use crossbeam_channel::{after, select};

pub use cameras::{CameraSet, ReloadSummary};
use notify::Notifier;
use signals::{Signal, SignalListener};
use vision::Vision;

use std::sync::Arc;

use crate::capture::{CameraState, CameraStatus};
use crate::config::{self, Config};
use crate::error::Error;

/// A camera thread that has not shown life for this long is wedged inside
/// GStreamer; the daemon then stops pinging the watchdog so systemd restarts it.
const WEDGED_AFTER: Duration = Duration::from_secs(60);

/// How often the main loop wakes when nothing else is due.
const TICK: Duration = Duration::from_secs(1);

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config_path: &Path) -> Result<(), Error> {
    let mut config = config::load(config_path)?;
    crate::logging::init(&config.daemon.log_level);
    for w in &config.warnings {
        tracing::warn!(config = %config.path.display(), "{w}");
    }
    crate::capture::init()?;
    let vision = match &config.model {
        Some(model) => Vision::load(model)?,
        None => None,
    };
    let signals = SignalListener::install().map_err(Error::Signals)?;
    let mut notifier = Notifier::from_env();
    let observer = vision
        .as_ref()
        .map(|v| Arc::clone(&v.worker) as Arc<dyn crate::capture::FrameObserver>);
    let mut cameras = CameraSet::new(observer);
    let started = cameras.apply(&config.cameras);
    tracing::info!(
        config = %config.path.display(),
        cameras = ?started.added,
        questions = config.questions.len(),
        "vigil started"
    );
    notifier.ready(&summary_line(&cameras.statuses()));

    let tick = notifier.ping_interval().map_or(TICK, |p| p.min(TICK));
    let mut next_summary = Instant::now() + config.daemon.summary_interval;
    loop {
        select! {
            recv(signals.receiver) -> sig => match sig {
                Ok(Signal::Stop) | Err(_) => break,
                Ok(Signal::Reload) => reload(config_path, &mut config, &mut cameras, &notifier),
            },
            recv(after(tick)) -> _ => {}
        }
        let statuses = cameras.statuses();
        let healthy = statuses
            .iter()
            .all(|s| s.heartbeat_age_ms < WEDGED_AFTER.as_millis() as u64);
        if !healthy {
            tracing::error!("a camera thread is wedged; withholding the watchdog ping");
        }
        notifier.watchdog(healthy);
        if Instant::now() >= next_summary {
            next_summary = Instant::now() + config.daemon.summary_interval;
            log_summary(&statuses);
            if let Some(v) = &vision {
                v.log_summary();
            }
            notifier.status(&summary_line(&statuses));
        }
    }

    tracing::info!("stopping");
    notifier.stopping();
    cameras.stop();
    tracing::info!("stopped");
    Ok(())
}

fn reload(path: &Path, config: &mut Config, cameras: &mut CameraSet, notifier: &Notifier) {
    notifier.reloading();
    match config::load(path) {
        Ok(new) => {
            if new.model != config.model {
                tracing::warn!(
                    "[model] changed: models are loaded at start-up; restart vigil to use the new ones"
                );
            }
            for w in &new.warnings {
                tracing::warn!(config = %new.path.display(), "{w}");
            }
            let summary = cameras.apply(&new.cameras);
            tracing::info!(
                added = ?summary.added,
                removed = ?summary.removed,
                restarted = ?summary.restarted,
                unchanged = summary.unchanged.len(),
                "config reloaded"
            );
            *config = new;
        }
        Err(e) => {
            tracing::error!("reload failed, keeping the running config:\n{e}");
        }
    }
    notifier.ready(&summary_line(&cameras.statuses()));
}

/// One line for `systemctl status`: how many cameras are in each state.
pub fn summary_line(statuses: &[CameraStatus]) -> String {
    let count = |state| statuses.iter().filter(|s| s.state == state).count();
    let frames: u64 = statuses.iter().map(|s| s.frames).sum();
    format!(
        "{} cameras: {} streaming, {} starting, {} reconnecting, {} failed; {} frames",
        statuses.len(),
        count(CameraState::Streaming),
        count(CameraState::Starting),
        count(CameraState::Reconnecting),
        count(CameraState::Failed),
        frames
    )
}

fn log_summary(statuses: &[CameraStatus]) {
    for s in statuses {
        tracing::info!(
            camera = %s.name,
            state = %s.state,
            frames = s.frames,
            reconnects = s.reconnects,
            ring_frames = s.ring.frames,
            ring_mib = format!("{:.1}", s.ring.bytes as f64 / (1 << 20) as f64),
            dropped = s.ring.dropped,
            last_frame_age = %s
                .last_frame_age_ms
                .map_or("never".to_string(), |ms| format!("{ms}ms")),
            "camera summary"
        );
    }
}
