//! One camera: a thread that keeps a pipeline running and feeds the ring.
//!
//! The thread owns its session; others see the camera through `Camera`
//! (status, ring) and can only ask it to stop. Errors, EOS and stalls end
//! the session and restart it after an exponential backoff; errors that
//! retrying cannot fix leave the camera `failed` until the config changes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use serde::Serialize;

use super::backoff::{Backoff, HEALTHY_AFTER};
use super::error::CaptureError;
use super::session::{Event, Session};
use crate::config::CameraSpec;
use crate::metrics::{Kind, Metric};
use crate::ring::{Frame, Ring, RingLimits, RingStats};

/// How long the thread waits for a frame before it checks for a stop.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CameraState {
    Starting,
    Streaming,
    Reconnecting,
    /// A problem retrying cannot fix (missing file, missing plugin).
    Failed,
    Stopped,
}

impl std::fmt::Display for CameraState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CameraState::Starting => "starting",
            CameraState::Streaming => "streaming",
            CameraState::Reconnecting => "reconnecting",
            CameraState::Failed => "failed",
            CameraState::Stopped => "stopped",
        })
    }
}

/// Told of every frame a camera adds to its ring (the vision layer encodes
/// it). Called on the camera's thread: it must return at once.
pub trait FrameObserver: Send + Sync {
    fn on_frame(&self, camera: &str, ring: &Arc<Ring>, frame: &Arc<Frame>);
}

/// A point-in-time view of a camera, for logs, status and metrics.
#[derive(Debug, Clone, Serialize)]
pub struct CameraStatus {
    pub name: String,
    pub source: String,
    pub state: CameraState,
    pub last_error: Option<String>,
    /// Frames received since the camera started.
    pub frames: u64,
    pub reconnects: u64,
    /// Times a file was replayed from the start.
    pub loops: u64,
    pub last_frame_age_ms: Option<u64>,
    pub ring: RingStatusView,
    /// Time since the camera thread last showed it was alive.
    pub heartbeat_age_ms: u64,
}

/// Every per-camera number `/metrics` shows (labelled by camera); `/v1/status`
/// shows the whole [`CameraStatus`].
pub const CAMERA_METRICS: &[Metric<CameraStatus>] = &[
    Metric {
        name: "vigil_camera_frames_total",
        key: "frames",
        help: "Frames sampled from the camera.",
        kind: Kind::Counter,
        read: |c| c.frames,
    },
    Metric {
        name: "vigil_camera_reconnects_total",
        key: "reconnects",
        help: "Times the camera's pipeline was restarted.",
        kind: Kind::Counter,
        read: |c| c.reconnects,
    },
    Metric {
        name: "vigil_ring_dropped_frames_total",
        key: "dropped",
        help: "Frames dropped from the ring to stay within its memory budget.",
        kind: Kind::Counter,
        read: |c| c.ring.dropped,
    },
    Metric {
        name: "vigil_ring_frames",
        key: "ring_frames",
        help: "Frames held in the camera's ring.",
        kind: Kind::Gauge,
        read: |c| c.ring.frames as u64,
    },
    Metric {
        name: "vigil_camera_streaming",
        key: "streaming",
        help: "1 when the camera is streaming.",
        kind: Kind::Gauge,
        read: |c| u64::from(c.state == CameraState::Streaming),
    },
];

#[derive(Debug, Clone, Serialize)]
pub struct RingStatusView {
    pub frames: usize,
    pub bytes: u64,
    pub expired: u64,
    pub dropped: u64,
}

impl From<RingStats> for RingStatusView {
    fn from(s: RingStats) -> Self {
        RingStatusView {
            frames: s.frames,
            bytes: s.bytes,
            expired: s.expired,
            dropped: s.dropped,
        }
    }
}

struct Shared {
    spec: CameraSpec,
    ring: Arc<Ring>,
    state: Mutex<(CameraState, Option<String>)>,
    frames: AtomicU64,
    reconnects: AtomicU64,
    loops: AtomicU64,
    observer: Option<Arc<dyn FrameObserver>>,
    started: Instant,
    /// Milliseconds since `started` of the last frame (u64::MAX: none yet).
    last_frame_ms: AtomicU64,
    heartbeat_ms: AtomicU64,
}

impl Shared {
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn beat(&self) {
        self.heartbeat_ms
            .store(self.elapsed_ms(), Ordering::Relaxed);
    }

    fn set_state(&self, state: CameraState, error: Option<&CaptureError>) {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let changed = guard.0 != state;
        let error_text = error.map(|e| e.to_string().replace('\n', "; "));
        guard.0 = state;
        if error_text.is_some() {
            guard.1 = error_text.clone();
        }
        drop(guard);
        if !changed {
            return;
        }
        let camera = &self.spec.name;
        match (state, error_text) {
            (CameraState::Failed, Some(e)) => {
                tracing::error!(camera = %camera, state = %state, error = %e, "camera failed; fix the config and reload")
            }
            (_, Some(e)) => {
                tracing::warn!(camera = %camera, state = %state, error = %e, "camera state changed")
            }
            (_, None) => tracing::info!(camera = %camera, state = %state, "camera state changed"),
        }
    }
}

/// A running camera. Dropping it stops the thread and its pipeline.
pub struct Camera {
    shared: Arc<Shared>,
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Camera {
    /// Starts capturing on a thread of its own; `observer` hears of each frame.
    pub fn start(spec: CameraSpec, observer: Option<Arc<dyn FrameObserver>>) -> Camera {
        let ring = Arc::new(Ring::new(RingLimits {
            max_age: spec.buffer,
            max_bytes: spec.memory,
        }));
        let shared = Arc::new(Shared {
            spec,
            ring,
            state: Mutex::new((CameraState::Starting, None)),
            frames: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            loops: AtomicU64::new(0),
            observer,
            started: Instant::now(),
            last_frame_ms: AtomicU64::new(u64::MAX),
            heartbeat_ms: AtomicU64::new(0),
        });
        let (stop, stop_rx) = bounded(1);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("cam-{}", shared.spec.name))
            .spawn(move || supervise(&thread_shared, &stop_rx))
            .expect("spawning a camera thread");
        Camera {
            shared,
            stop,
            thread: Some(thread),
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.spec.name
    }

    pub fn spec(&self) -> &CameraSpec {
        &self.shared.spec
    }

    pub fn ring(&self) -> &Arc<Ring> {
        &self.shared.ring
    }

    pub fn state(&self) -> CameraState {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    pub fn status(&self) -> CameraStatus {
        let s = &self.shared;
        let (state, last_error) = s.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let now = s.elapsed_ms();
        let last = s.last_frame_ms.load(Ordering::Relaxed);
        CameraStatus {
            name: s.spec.name.clone(),
            source: s.spec.source.to_string(),
            state,
            last_error,
            frames: s.frames.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            loops: s.loops.load(Ordering::Relaxed),
            last_frame_age_ms: (last != u64::MAX).then(|| now.saturating_sub(last)),
            ring: s.ring.stats().into(),
            heartbeat_age_ms: now.saturating_sub(s.heartbeat_ms.load(Ordering::Relaxed)),
        }
    }

    /// Asks the thread to stop without waiting (so many cameras can stop
    /// at once); `join` or drop waits.
    pub fn request_stop(&self) {
        let _ = self.stop.try_send(());
    }

    /// Stops the camera and waits for its pipeline to reach NULL (what
    /// dropping it does; the name says so at the call site).
    pub fn join(self) {
        drop(self);
    }

    /// Like `join`, but gives up at `deadline`, leaving the thread behind
    /// (a GStreamer call that never returns must not stop the daemon from
    /// exiting). True when the camera stopped in time.
    pub fn join_until(mut self, deadline: Instant) -> bool {
        self.request_stop();
        let Some(thread) = self.thread.take() else {
            return true;
        };
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
            true
        } else {
            false
        }
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.request_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a session ended.
enum Ended {
    StopRequested,
    Restart(CaptureError),
}

fn supervise(shared: &Shared, stop: &Receiver<()>) {
    let spec = &shared.spec;
    let mut backoff = Backoff::new(spec.reconnect_initial, spec.reconnect_max);
    let mut first_attempt = true;
    loop {
        shared.beat();
        if !first_attempt {
            shared.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first_attempt = false;
        let mut first_frame = None;
        let error = match Session::open(spec) {
            Ok(mut session) => match stream(shared, &mut session, stop, &mut first_frame) {
                Ended::StopRequested => break,
                Ended::Restart(e) => e,
            },
            Err(e) => e,
        };
        if error.is_permanent() {
            shared.set_state(CameraState::Failed, Some(&error));
            // Stay failed (visible in status) until asked to stop.
            while stop.recv_timeout(Duration::from_secs(1)).is_err() {
                shared.beat();
            }
            break;
        }
        // A session that delivered frames for a minute was healthy: the
        // next outage starts again from the shortest delay.
        if first_frame.is_some_and(|t: Instant| t.elapsed() >= HEALTHY_AFTER) {
            backoff.reset();
        }
        shared.set_state(CameraState::Reconnecting, Some(&error));
        let delay = backoff.next_delay();
        tracing::info!(camera = %spec.name, delay_ms = delay.as_millis() as u64, "reconnecting after backoff");
        if wait_or_stop(shared, stop, delay) {
            break;
        }
    }
    shared.set_state(CameraState::Stopped, None);
}

/// Sleeps `delay` in short steps; true when a stop was requested.
fn wait_or_stop(shared: &Shared, stop: &Receiver<()>, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    loop {
        shared.beat();
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        if stop.recv_timeout(left.min(Duration::from_secs(1))).is_ok() {
            return true;
        }
    }
}

/// Moves frames from the session into the ring until the session ends;
/// `first_frame` records when frames started to flow.
fn stream(
    shared: &Shared,
    session: &mut Session,
    stop: &Receiver<()>,
    first_frame: &mut Option<Instant>,
) -> Ended {
    let spec = &shared.spec;
    let mut last_progress = Instant::now();
    loop {
        shared.beat();
        if stop.try_recv().is_ok() {
            return Ended::StopRequested;
        }
        match session.next(POLL) {
            Ok(Event::Frame(c)) => {
                last_progress = Instant::now();
                first_frame.get_or_insert(last_progress);
                let seq = shared.frames.fetch_add(1, Ordering::Relaxed);
                let frame = shared.ring.push(Frame::new(
                    seq, c.pts, c.wall, c.captured, c.width, c.height, c.pixels,
                ));
                tracing::debug!(
                    camera = %spec.name,
                    seq,
                    pts_ms = frame.pts.map(|p| p.as_millis() as u64),
                    size = %format_args!("{}x{}", frame.width, frame.height),
                    ring_frames = shared.ring.stats().frames,
                    "frame sampled"
                );
                if let Some(observer) = &shared.observer {
                    observer.on_frame(&spec.name, &shared.ring, &frame);
                }
                shared
                    .last_frame_ms
                    .store(shared.elapsed_ms(), Ordering::Relaxed);
                shared.set_state(CameraState::Streaming, None);
            }
            Ok(Event::Eos) if spec.looping => {
                shared.loops.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(camera = %spec.name, "end of file; looping");
                if let Err(e) = session.rewind() {
                    return Ended::Restart(e);
                }
                last_progress = Instant::now();
            }
            Ok(Event::Eos) => {
                return Ended::Restart(CaptureError::Stream("end of stream".into()));
            }
            Ok(Event::Idle) => {
                let quiet = last_progress.elapsed();
                if quiet >= spec.stall_timeout {
                    return Ended::Restart(CaptureError::Stalled(quiet));
                }
            }
            Err(e) => return Ended::Restart(e),
        }
    }
}
