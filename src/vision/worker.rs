//! Encodes each new frame once, off the capture threads.
//!
//! Capture hands every frame over with a non-blocking send into a small
//! bounded queue; when the queue is full the frame is skipped and counted,
//! so a slow encoder never holds capture up. A skipped frame can still be
//! encoded later, on demand, by `ensure`. Encodes are serialised by one
//! lock: each frame is encoded at most once however many readers ask.
//!
//! A frame that shows the same scene as the last frame encoded for its
//! camera (its [`Thumbnail`] differs in less than the change threshold)
//! shares that frame's features instead of being encoded: a static camera
//! costs a thumbnail per frame, not an encoder run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use serde::Serialize;

use super::encoder::{Encoder, Precision};
use super::error::VisionError;
use crate::capture::FrameObserver;
use crate::metrics::{Kind, Metric};
use crate::ring::{Features, Frame, Ring, Thumbnail};

/// Frames waiting for the encoder before new ones are skipped.
const QUEUE: usize = 4;

struct Job {
    ring: Arc<Ring>,
    frame: Arc<Frame>,
}

/// The encoder's counters as `/metrics` shows them; `/v1/status` shows the
/// whole [`EncodeStats`] (the time spent is a summary beside these).
pub const ENCODE_METRICS: &[Metric<EncodeStats>] = &[
    Metric {
        name: "vigil_frames_encoded_total",
        key: "encoded",
        help: "Frames run through the image encoder.",
        kind: Kind::Counter,
        read: |s| s.encoded,
    },
    Metric {
        name: "vigil_frames_encode_skipped_total",
        key: "skipped_busy",
        help: "Frames not encoded on arrival because the encoder was busy.",
        kind: Kind::Counter,
        read: |s| s.skipped_busy,
    },
    Metric {
        name: "vigil_frames_encode_reused_total",
        key: "reused",
        help: "Frames showing the same scene as the last one encoded, sharing its features.",
        kind: Kind::Counter,
        read: |s| s.reused,
    },
    Metric {
        name: "vigil_frames_encode_failed_total",
        key: "failed",
        help: "Frames the encoder failed on.",
        kind: Kind::Counter,
        read: |s| s.failed,
    },
];

#[derive(Debug, Default, Clone, Serialize)]
pub struct EncodeStats {
    /// Frames encoded (each at most once).
    pub encoded: u64,
    /// Frames not queued because the encoder was busy.
    pub skipped_busy: u64,
    /// Frames that showed the same scene as the last one encoded and
    /// share its features.
    pub reused: u64,
    pub failed: u64,
    /// Total time spent encoding, for the mean.
    pub encode_ms_total: f64,
}

/// A camera's last encoded frame: its ring (to notice when it is gone),
/// thumbnail and features.
type LastEncoded = (Weak<Ring>, Thumbnail, Arc<Features>);

struct Shared {
    encoder: Encoder,
    precision: Precision,
    /// Held while encoding, so two readers never encode the same frame.
    encoding: Mutex<()>,
    /// Below this changed fraction a frame reuses the last features of its
    /// camera (0: never).
    reuse_threshold: f64,
    /// Per ring: the last encoded frame's thumbnail and features. Rings
    /// that are gone are pruned.
    last: Mutex<HashMap<usize, LastEncoded>>,
    reused: AtomicU64,
    encoded: AtomicU64,
    skipped_busy: AtomicU64,
    failed: AtomicU64,
    encode_us: AtomicU64,
}

impl Shared {
    fn ensure(
        &self,
        ring: &Arc<Ring>,
        frame: &Arc<Frame>,
    ) -> Result<Option<Arc<Features>>, VisionError> {
        if let Some(f) = frame.features() {
            return Ok(Some(Arc::clone(f)));
        }
        let _guard = self.encoding.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = frame.features() {
            return Ok(Some(Arc::clone(f)));
        }
        let thumbnail = (self.reuse_threshold > 0.0).then(|| Thumbnail::of(frame));
        let key = Arc::as_ptr(ring) as usize;
        if let Some(thumb) = &thumbnail {
            let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, t, features)) = last.get(&key)
                && t.changed_fraction(thumb) < self.reuse_threshold
            {
                self.reused.fetch_add(1, Ordering::Relaxed);
                ring.attach_shared(frame, Arc::clone(features));
                return Ok(frame.features().cloned());
            }
        }
        let started = Instant::now();
        let features = match self.encoder.encode(frame, self.precision) {
            Ok(f) => f,
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let micros = started.elapsed().as_micros() as u64;
        self.encode_us.fetch_add(micros, Ordering::Relaxed);
        self.encoded.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(
            seq = frame.seq,
            encode_ms = micros as f64 / 1000.0,
            "frame encoded"
        );
        let features = Arc::new(features);
        if let Some(thumb) = thumbnail {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            last.retain(|_, (r, _, _)| r.strong_count() > 0);
            last.insert(key, (Arc::downgrade(ring), thumb, Arc::clone(&features)));
        }
        // A frame that already left the ring keeps no features: nothing reads it.
        ring.attach_shared(frame, features);
        Ok(frame.features().cloned())
    }
}

pub struct VisionWorker {
    shared: Arc<Shared>,
    queue: Sender<Job>,
    thread: Option<JoinHandle<()>>,
}

impl VisionWorker {
    /// `reuse_threshold`: frames whose thumbnail changed in less than this
    /// fraction of pixels since their camera's last encoded frame share its
    /// features (0 encodes every frame).
    pub fn start(encoder: Encoder, precision: Precision, reuse_threshold: f64) -> VisionWorker {
        let shared = Arc::new(Shared {
            encoder,
            precision,
            encoding: Mutex::new(()),
            reuse_threshold,
            last: Mutex::new(HashMap::new()),
            reused: AtomicU64::new(0),
            encoded: AtomicU64::new(0),
            skipped_busy: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            encode_us: AtomicU64::new(0),
        });
        let (queue, jobs) = bounded(QUEUE);
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("vision".into())
            .spawn(move || run(&worker, &jobs))
            .expect("spawning the vision thread");
        VisionWorker {
            shared,
            queue,
            thread: Some(thread),
        }
    }

    /// The frame's features, encoding them now if the worker has not yet.
    pub fn ensure(
        &self,
        ring: &Arc<Ring>,
        frame: &Arc<Frame>,
    ) -> Result<Option<Arc<Features>>, VisionError> {
        self.shared.ensure(ring, frame)
    }

    /// Holds off encoding while the caller computes: on a small box two
    /// multi-threaded computations at once (tract's and ggml's thread
    /// pools) spin against each other and both run slower than one after
    /// the other. Do not call `ensure` while holding it.
    pub fn exclusive(&self) -> std::sync::MutexGuard<'_, ()> {
        self.shared
            .encoding
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn encoder(&self) -> &Encoder {
        &self.shared.encoder
    }

    pub fn stats(&self) -> EncodeStats {
        let s = &self.shared;
        EncodeStats {
            encoded: s.encoded.load(Ordering::Relaxed),
            skipped_busy: s.skipped_busy.load(Ordering::Relaxed),
            reused: s.reused.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            encode_ms_total: s.encode_us.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

impl FrameObserver for VisionWorker {
    fn on_frame(&self, camera: &str, ring: &Arc<Ring>, frame: &Arc<Frame>) {
        let job = Job {
            ring: Arc::clone(ring),
            frame: Arc::clone(frame),
        };
        if let Err(TrySendError::Full(_)) = self.queue.try_send(job) {
            let n = self.shared.skipped_busy.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::debug!(
                camera,
                seq = frame.seq,
                skipped_busy = n,
                "encoder busy; frame skipped"
            );
        }
    }
}

impl Drop for VisionWorker {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it finishes its frame.
        let (closed, _) = bounded(0);
        self.queue = closed;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared, jobs: &Receiver<Job>) {
    for job in jobs {
        if let Err(e) = shared.ensure(&job.ring, &job.frame) {
            tracing::warn!(error = %e, seq = job.frame.seq, "encoding a frame failed");
        }
    }
}
