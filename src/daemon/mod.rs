//! daemon: `vigil run`. Opens the event store and the API socket, loads the
//! models, starts the cameras and the inference worker, speaks sd-notify,
//! reloads on SIGHUP, stops cleanly on SIGTERM/SIGINT.

pub mod bench;
mod cameras;
mod notify;
mod signals;
mod vision;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{after, select};

pub use cameras::{CameraSet, ReloadSummary};
use notify::Notifier;
use signals::{Signal, SignalListener};
use vision::Vision;

use crate::api::{ApiContext, ApiServer, listener};
use crate::capture::{CameraState, CameraStatus};
use crate::config::{self, Config};
use crate::error::Error;
use crate::output::Outputs;
use crate::store::Store;
use crate::watch::{Rings, Watch, WatchSetup};

/// How often the main loop wakes when nothing else is due.
const TICK: Duration = Duration::from_secs(1);

/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Command-line overrides of the config (for tests and unprivileged runs).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub socket: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
}

impl Overrides {
    fn apply(&self, config: &mut Config) {
        if let Some(s) = &self.socket {
            config.daemon.socket = s.clone();
        }
        if let Some(d) = &self.state_dir {
            config.daemon.state_dir = d.clone();
        }
    }
}

type SharedCameras = Arc<RwLock<CameraSet>>;

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config_path: &Path, overrides: &Overrides) -> Result<(), Error> {
    let mut config = config::load(config_path)?;
    overrides.apply(&mut config);
    crate::logging::init(&config.daemon.log_level);
    for w in &config.warnings {
        tracing::warn!(config = %config.path.display(), "{w}");
    }
    crate::capture::init()?;
    let signals = SignalListener::install().map_err(Error::Signals)?;

    // The store and the socket first: a wrong path fails in a second, not
    // after the models have loaded.
    let store = Arc::new(Store::open(&config.daemon.state_dir)?);
    prune(&store, &config);
    let unix = match listener::activated()? {
        Some(s) => {
            tracing::info!(socket = %s.path.display(), "using the socket systemd passed");
            s
        }
        None => listener::bind_unix(&config.daemon.socket, config.daemon.socket_group.as_deref())?,
    };
    let tcp = config.daemon.listen.map(listener::bind_tcp).transpose()?;

    let vision = match &config.model {
        Some(model) => Vision::load(model, config.daemon.change_threshold)?,
        None => None,
    };
    let rings: Rings = Arc::default();
    let watch = start_watch(&config, vision.as_ref(), &store, &rings)?.map(Arc::new);
    let outputs = match &watch {
        Some(w) => {
            let cameras: Vec<String> = config.cameras.iter().map(|c| c.name.clone()).collect();
            Outputs::start(&config.outputs, w, &store, &config.questions, &cameras)
        }
        None => {
            if !config.outputs.is_empty() {
                tracing::warn!(
                    "[[output]] sections need the inference worker ([model] with an adapter): no events to send"
                );
            }
            Outputs::none()
        }
    };

    let mut notifier = Notifier::from_env();
    let observer = vision
        .as_ref()
        .map(|v| Arc::clone(&v.worker) as Arc<dyn crate::capture::FrameObserver>);
    let cameras: SharedCameras = Arc::new(RwLock::new(CameraSet::new(observer)));
    let started = write(&cameras).apply(&config.cameras);
    update_rings(&cameras, &rings);

    let mut context = ApiContext::new(
        watch.clone(),
        Arc::clone(&rings),
        Arc::clone(&store),
        {
            let cameras = Arc::clone(&cameras);
            Box::new(move || read(&cameras).statuses())
        },
        vision.as_ref().map(|v| Arc::clone(&v.worker)),
        model_info(&config),
    );
    context.outputs = outputs.stats();
    let api = ApiServer::start(unix, tcp, Arc::new(context)).map_err(Error::Api)?;
    tracing::info!(
        config = %config.path.display(),
        cameras = ?started.added,
        questions = config.questions.len(),
        state_dir = %config.daemon.state_dir.display(),
        "vigil started"
    );
    notifier.ready(&summary_line(&read(&cameras).statuses()));

    let tick = notifier.ping_interval().map_or(TICK, |p| p.min(TICK));
    let mut next_summary = Instant::now() + config.daemon.summary_interval;
    let mut next_prune = Instant::now() + PRUNE_EVERY;
    loop {
        select! {
            recv(signals.receiver) -> sig => match sig {
                Ok(Signal::Stop) | Err(_) => break,
                Ok(Signal::Reload) => {
                    reload(config_path, overrides, &mut config, &cameras, &rings, watch.as_deref(), &outputs, &notifier);
                }
            },
            recv(after(tick)) -> _ => {}
        }
        let statuses = read(&cameras).statuses();
        // A camera thread or the inference worker silent for this long is
        // wedged: withholding the ping lets systemd restart the daemon.
        let wedged_after = config.daemon.wedged_after;
        let cameras_alive = statuses
            .iter()
            .all(|s| s.heartbeat_age_ms < wedged_after.as_millis() as u64);
        let worker_alive = watch
            .as_ref()
            .is_none_or(|w| w.shared.heartbeat_age() < wedged_after);
        if !cameras_alive {
            tracing::error!("a camera thread is wedged; withholding the watchdog ping");
        }
        if !worker_alive {
            tracing::error!("the inference worker is wedged; withholding the watchdog ping");
        }
        notifier.watchdog(cameras_alive && worker_alive);
        if Instant::now() >= next_summary {
            next_summary = Instant::now() + config.daemon.summary_interval;
            log_summary(&statuses);
            if let Some(v) = &vision {
                v.log_summary();
            }
            notifier.status(&summary_line(&statuses));
        }
        if Instant::now() >= next_prune {
            next_prune = Instant::now() + PRUNE_EVERY;
            prune(&store, &config);
        }
    }

    tracing::info!("stopping");
    notifier.stopping();
    api.stop();
    if let Some(w) = &watch {
        w.stop();
    }
    outputs.stop();
    write(&cameras).stop();
    tracing::info!("stopped");
    Ok(())
}

fn read(cameras: &SharedCameras) -> std::sync::RwLockReadGuard<'_, CameraSet> {
    cameras.read().unwrap_or_else(|p| p.into_inner())
}

fn write(cameras: &SharedCameras) -> std::sync::RwLockWriteGuard<'_, CameraSet> {
    cameras.write().unwrap_or_else(|p| p.into_inner())
}

fn update_rings(cameras: &SharedCameras, rings: &Rings) {
    let map = read(cameras).rings();
    *rings.write().unwrap_or_else(|p| p.into_inner()) = map;
}

fn prune(store: &Store, config: &Config) {
    match store.prune(config.daemon.event_max_age, config.daemon.event_max_size) {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "old events pruned"),
        Err(e) => tracing::error!("pruning events: {e}"),
    }
}

/// Starts the inference worker when the config has what it needs (the
/// config check guarantees it does whenever there are standing questions).
fn start_watch(
    config: &Config,
    vision: Option<&Vision>,
    store: &Arc<Store>,
    rings: &Rings,
) -> Result<Option<Watch>, Error> {
    let (Some(model), Some(vision)) = (&config.model, vision) else {
        return Ok(None);
    };
    let (Some(adapter), Some(resampler)) = (&model.adapter, &vision.resampler) else {
        tracing::warn!("no adapter or resampler in [model]: questions cannot be answered");
        return Ok(None);
    };
    let started = Instant::now();
    let watch = Watch::start(WatchSetup {
        lm: model.lm.clone(),
        adapter: adapter.clone(),
        threads: model.threads,
        change_threshold: config.daemon.change_threshold,
        vision: Arc::clone(&vision.worker),
        resampler: Arc::clone(resampler),
        rings: Arc::clone(rings),
        store: Arc::clone(store),
        questions: config.questions.clone(),
    })?;
    tracing::info!(
        load_ms = started.elapsed().as_millis() as u64,
        "language model and adapter loaded"
    );
    Ok(Some(watch))
}

fn model_info(config: &Config) -> serde_json::Value {
    let name = |p: &Option<PathBuf>| {
        p.as_ref()
            .and_then(|p| p.file_name())
            .map(|f| f.to_string_lossy().into_owned())
    };
    match &config.model {
        Some(m) => serde_json::json!({
            "lm": name(&Some(m.lm.clone())),
            "adapter": name(&m.adapter),
            "encoder": name(&m.encoder),
            "resampler": name(&m.resampler),
            "threads": m.threads,
        }),
        None => serde_json::Value::Null,
    }
}

#[allow(clippy::too_many_arguments)]
fn reload(
    path: &Path,
    overrides: &Overrides,
    config: &mut Config,
    cameras: &SharedCameras,
    rings: &Rings,
    watch: Option<&Watch>,
    outputs: &Outputs,
    notifier: &Notifier,
) {
    notifier.reloading();
    match config::load(path) {
        Ok(mut new) => {
            overrides.apply(&mut new);
            if new.model != config.model {
                tracing::warn!(
                    "[model] changed: models are loaded at start-up; restart vigil to use the new ones"
                );
            }
            if new.outputs != config.outputs {
                tracing::warn!(
                    "[[output]] changed: outputs are started at start-up; restart vigil to use the new ones"
                );
            }
            if new.daemon.socket != config.daemon.socket
                || new.daemon.state_dir != config.daemon.state_dir
                || new.daemon.listen != config.daemon.listen
            {
                tracing::warn!(
                    "the socket, listen address or state_dir changed: restart vigil to use them"
                );
            }
            for w in &new.warnings {
                tracing::warn!(config = %new.path.display(), "{w}");
            }
            let summary = write(cameras).apply(&new.cameras);
            update_rings(cameras, rings);
            if let Some(w) = watch {
                w.set_questions(new.questions.clone());
            }
            let camera_names: Vec<String> = new.cameras.iter().map(|c| c.name.clone()).collect();
            outputs.reconfigure(&new.questions, &camera_names);
            tracing::info!(
                added = ?summary.added,
                removed = ?summary.removed,
                restarted = ?summary.restarted,
                unchanged = summary.unchanged.len(),
                questions = new.questions.len(),
                "config reloaded"
            );
            *config = new;
        }
        Err(e) => {
            tracing::error!("reload failed, keeping the running config:\n{e}");
        }
    }
    notifier.ready(&summary_line(&read(cameras).statuses()));
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
