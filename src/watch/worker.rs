//! The inference worker: one thread that owns the LM, its session and the
//! thread pool, and runs everything that needs them, one thing at a time
//! (on a 2-core box two LM runs at once only make both slow).
//!
//! Work comes from two places, in this priority:
//! 1. ad-hoc questions, through a bounded queue (full → refused at once,
//!    the API answers 503 with Retry-After);
//! 2. standing questions, by their schedule. There is no queue of ticks: a
//!    question whose next tick is due runs once; ticks that passed while the
//!    worker was busy are skipped and counted, never piled up.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select};

use super::ask::{self, Answer};
use super::broadcast::Broadcast;
use super::clip::{self, Clip, ClipCache};
use super::error::{AskError, ClipError, ExampleError, TickError, WatchError};
use super::rules::Transition;
use super::scope::outside_training;
use super::standing::{QuestionStatus, Standing};
use super::stats::WorkerStats;
use crate::config::{AnswerKind, Example, QuestionSpec, Window};
use crate::lm::{Adapter, ContextOptions, LmError, Model, Prompt, Session, TrainedOn, Visual};
use crate::ring::{Frame, Ring, Thumbnail};
use crate::store::{EventKind, NewEvent, Store, StoredEvent};
use crate::vision::{Precision, Resampler, VisionWorker};

/// Ad-hoc questions waiting for the worker before new ones are refused.
pub const ASK_QUEUE: usize = 8;
/// Positions in the LM context: few-shot examples take ~20 each.
const N_CTX: u32 = 2048;

/// The cameras' rings by name, kept current by the daemon across reloads.
pub type Rings = Arc<RwLock<HashMap<String, Arc<Ring>>>>;

/// What the worker needs to start.
pub struct WatchSetup {
    pub lm: PathBuf,
    pub adapter: PathBuf,
    pub threads: usize,
    pub change_threshold: f64,
    pub vision: Arc<VisionWorker>,
    pub resampler: Arc<Resampler>,
    pub rings: Rings,
    pub store: Arc<Store>,
    pub questions: Vec<QuestionSpec>,
}

/// An ad-hoc question.
#[derive(Debug, Clone)]
pub struct AskRequest {
    pub camera: String,
    pub ask: String,
    pub window: Window,
    pub answer: AnswerKind,
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AskResponse {
    pub camera: String,
    pub question: String,
    pub answer: String,
    pub scores: Vec<(String, f64)>,
    pub frames_used: u32,
    pub latency_ms: f64,
    /// Unix ms of the newest frame used.
    pub frame_time_ms: u64,
    /// The stored event (with the snapshot), when it could be stored.
    pub event_id: Option<i64>,
    /// What the asker should know about the answer: e.g. that the adapter
    /// was never trained on what the question names.
    pub warnings: Vec<String>,
}

struct AskJob {
    request: AskRequest,
    reply: Sender<Result<AskResponse, AskError>>,
}

enum Control {
    Questions(Vec<QuestionSpec>),
}

/// What the API and the daemon see of the worker.
pub struct WatchShared {
    pub stats: WorkerStats,
    pub questions: Mutex<Vec<QuestionStatus>>,
    pub events: Broadcast<Arc<StoredEvent>>,
    pub rings: Rings,
    started: Instant,
    /// Milliseconds since `started` when the worker last showed life.
    heartbeat_ms: AtomicU64,
}

impl WatchShared {
    fn beat(&self) {
        self.heartbeat_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the worker last showed life (it beats between jobs and
    /// while waiting, so a long value means one job is stuck).
    pub fn heartbeat_age(&self) -> Duration {
        let beat = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(beat)
    }
}

/// The handle: cheap to share between API threads.
pub struct Watch {
    asks: Sender<AskJob>,
    /// Dropped by `stop`: the worker ends when it sees the channel closed.
    control: Mutex<Option<Sender<Control>>>,
    pub shared: Arc<WatchShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Watch {
    /// Loads the LM and adapter on the worker thread and starts it; returns
    /// once they are loaded (or with why they could not be).
    pub fn start(setup: WatchSetup) -> Result<Watch, WatchError> {
        let (asks, ask_rx) = bounded(ASK_QUEUE);
        let (control, control_rx) = bounded(4);
        let shared = Arc::new(WatchShared {
            stats: WorkerStats::default(),
            questions: Mutex::new(Vec::new()),
            events: Broadcast::new(256, 32),
            rings: Arc::clone(&setup.rings),
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
        });
        let (ready_tx, ready_rx) = bounded(1);
        let worker_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || run(setup, worker_shared, ask_rx, control_rx, ready_tx))
            .map_err(WatchError::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Watch {
                asks,
                control: Mutex::new(Some(control)),
                shared,
                thread: Mutex::new(Some(thread)),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(WatchError::Ended)
            }
        }
    }

    /// Asks a question and waits for the answer (up to `timeout`).
    pub fn ask(&self, request: AskRequest, timeout: Duration) -> Result<AskResponse, AskError> {
        {
            let rings = self.shared.rings.read().unwrap_or_else(|p| p.into_inner());
            if !rings.contains_key(&request.camera) {
                let mut known: Vec<&str> = rings.keys().map(String::as_str).collect();
                known.sort();
                return Err(AskError::UnknownCamera {
                    camera: request.camera,
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                });
            }
        }
        let (reply, answer) = bounded(1);
        match self.asks.try_send(AskJob { request, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.shared
                    .stats
                    .asks_refused
                    .fetch_add(1, Ordering::Relaxed);
                let mean = self.shared.stats.mean_ask_ms().max(200.0);
                return Err(AskError::Busy {
                    waiting: ASK_QUEUE,
                    retry_after_s: ((ASK_QUEUE as f64 * mean) / 1000.0).ceil().max(1.0) as u64,
                });
            }
            Err(TrySendError::Disconnected(_)) => return Err(AskError::Stopped),
        }
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(AskError::Timeout(timeout)),
            Err(_) => Err(AskError::Stopped),
        }
    }

    pub fn queue_depth(&self) -> usize {
        self.asks.len()
    }

    /// Replaces the standing questions (a reload); questions whose spec is
    /// unchanged keep their state.
    pub fn set_questions(&self, questions: Vec<QuestionSpec>) {
        if let Some(c) = self
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = c.send(Control::Questions(questions));
        }
    }

    /// Stops the worker after its current job and waits for it.
    pub fn stop(&self) {
        self.control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    setup: WatchSetup,
    shared: Arc<WatchShared>,
    asks: Receiver<AskJob>,
    control: Receiver<Control>,
    ready: Sender<Result<(), WatchError>>,
) {
    let model = match Model::load(&setup.lm) {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(e.into()));
            return;
        }
    };
    let (session, trained) = match open_session(&model, &setup) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let adapter_name = format!(
        "adapter {}",
        setup.adapter.file_name().map_or_else(
            || setup.adapter.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
    );
    let mut worker = Worker {
        session,
        trained,
        adapter_name,
        clips: ClipCache::default(),
        questions: Vec::new(),
        setup,
        shared,
    };
    let questions = std::mem::take(&mut worker.setup.questions);
    worker.set_questions(questions);
    tracing::info!(
        lm = %worker.setup.lm.display(),
        adapter = %worker.setup.adapter.display(),
        questions = worker.questions.len(),
        "inference worker ready"
    );
    let _ = ready.send(Ok(()));
    worker.run(&asks, &control);
}

fn open_session<'m>(
    model: &'m Model,
    setup: &WatchSetup,
) -> Result<(Session<'m>, TrainedOn), WatchError> {
    let adapter = Adapter::load(&setup.adapter)?;
    let trained = adapter.config().trained_on.clone();
    let visual_dim = adapter.config().visual_dim;
    let d_visual = setup.resampler.meta().d_visual;
    if visual_dim != d_visual {
        return Err(WatchError::VisualWidth {
            path: setup.adapter.clone(),
            adapter: visual_dim,
            resampler: d_visual,
        });
    }
    Session::new(
        model,
        Some(Arc::new(adapter)),
        &ContextOptions {
            n_ctx: N_CTX,
            threads: setup.threads as i32,
            ..ContextOptions::default()
        },
    )
    .map(|session| (session, trained))
    .map_err(WatchError::from)
}

struct Worker<'m> {
    session: Session<'m>,
    /// What the adapter knows, for the warning on questions outside it.
    trained: TrainedOn,
    /// How warnings name the adapter ("adapter FILE").
    adapter_name: String,
    clips: ClipCache,
    questions: Vec<Standing>,
    setup: WatchSetup,
    shared: Arc<WatchShared>,
}

/// A question's run: what the LM said and over which frames.
struct Run {
    answer: Answer,
    clip: Clip,
    latency_ms: f64,
}

/// One answer a standing question's rules take: from a run of the LM, or
/// the last one kept because the frames have not changed (latency 0).
struct Heard<'a> {
    answer: &'a Answer,
    /// The newest frame behind the answer (its time and snapshot).
    newest: &'a Frame,
    frames_used: u32,
    latency_ms: f64,
}

/// A standing question's event as a log line; under systemd its fields
/// become journal fields (CAMERA=, QUESTION=, ANSWER=, EVENT_ID=).
/// Ad-hoc answers are not logged: they are the asker's, not the site's.
fn log_event(e: &NewEvent, id: Option<i64>) {
    let Some(question) = &e.question else {
        return;
    };
    let id = id.map_or_else(|| "unstored".to_string(), |id| id.to_string());
    tracing::info!(
        question = %question,
        camera = %e.camera,
        event = e.kind.as_str(),
        answer = %e.answer,
        previous = e.previous.as_deref().unwrap_or(""),
        event_id = %id,
        "standing question event"
    );
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Worker<'_> {
    fn run(&mut self, asks: &Receiver<AskJob>, control: &Receiver<Control>) {
        loop {
            self.shared.beat();
            #[cfg(debug_assertions)]
            crate::fault::wedge_point("inference", self.shared.started);
            match control.try_recv() {
                Ok(Control::Questions(q)) => self.set_questions(q),
                Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                Err(crossbeam_channel::TryRecvError::Empty) => {}
            }
            // Ad-hoc questions first, always.
            if let Ok(job) = asks.try_recv() {
                self.answer_ask(job);
                continue;
            }
            let now = Instant::now();
            if let Some(i) = self.due(now) {
                self.tick(i, now);
                continue;
            }
            let next = self
                .questions
                .iter()
                .map(|q| q.next_due)
                .min()
                .map_or(Duration::from_secs(1), |d| d.saturating_duration_since(now))
                .min(Duration::from_secs(1));
            select! {
                recv(asks) -> job => match job {
                    Ok(job) => self.answer_ask(job),
                    Err(_) => break,
                },
                recv(control) -> c => match c {
                    Ok(Control::Questions(q)) => self.set_questions(q),
                    Err(_) => break,
                },
                default(next) => {}
            }
        }
        tracing::info!("inference worker stopped");
    }

    /// The question whose tick is most overdue, if any is due.
    fn due(&self, now: Instant) -> Option<usize> {
        self.questions
            .iter()
            .enumerate()
            .filter(|(_, q)| q.next_due <= now)
            .min_by_key(|(_, q)| q.next_due)
            .map(|(i, _)| i)
    }

    fn publish_statuses(&self) {
        let statuses = self.questions.iter().map(|q| q.status.clone()).collect();
        *self
            .shared
            .questions
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = statuses;
    }

    fn set_questions(&mut self, specs: Vec<QuestionSpec>) {
        let now = Instant::now();
        let mut old: HashMap<String, Standing> = std::mem::take(&mut self.questions)
            .into_iter()
            .map(|q| (q.spec.name.clone(), q))
            .collect();
        for spec in specs {
            let kept = old.remove(&spec.name).filter(|q| q.spec == spec);
            let standing = match kept {
                Some(q) => q,
                None => {
                    let mut q = Standing::new(spec, now);
                    q.status.warning =
                        outside_training(&q.spec.ask, &self.trained, &self.adapter_name);
                    if let Some(w) = &q.status.warning {
                        tracing::warn!(question = %q.spec.name, "{w}");
                    }
                    if !q.spec.examples.is_empty() {
                        match self.few_shot_prefix(&q.spec) {
                            Ok(prefix) => q.prefix = Some(prefix),
                            Err(e) => {
                                tracing::error!(question = %q.spec.name, "few-shot examples: {e}");
                                q.prefix_error = Some(e.to_string());
                            }
                        }
                    }
                    q
                }
            };
            self.questions.push(standing);
        }
        self.publish_statuses();
    }

    /// Encodes the examples and feeds them; the state after them is saved
    /// once and restored before each of the question's runs.
    fn few_shot_prefix(&mut self, spec: &QuestionSpec) -> Result<crate::lm::Prefix, ExampleError> {
        self.session.clear();
        let prompt = self.examples_prompt(&spec.ask, &spec.examples)?;
        self.session.feed(&prompt)?;
        let prefix = self.session.save()?;
        tracing::info!(
            question = %spec.name,
            examples = spec.examples.len(),
            tokens = prefix.n_tokens(),
            kib = prefix.bytes() / 1024,
            "few-shot prefix encoded"
        );
        Ok(prefix)
    }

    fn examples_prompt(&mut self, ask: &str, examples: &[Example]) -> Result<Prompt, ExampleError> {
        let mut prompt = Prompt::new();
        for ex in examples {
            let frame =
                crate::picture::load_rgb(&ex.image).map_err(|source| ExampleError::Load {
                    path: ex.image.clone(),
                    source,
                })?;
            let features = self
                .setup
                .vision
                .encoder()
                .encode(&frame, Precision::F32)
                .map_err(|source| ExampleError::Encode {
                    path: ex.image.clone(),
                    source,
                })?;
            let tokens = self
                .setup
                .resampler
                .resample(&[&features])
                .map_err(ExampleError::Resample)?;
            let kv = self.session.media(Visual {
                data: &tokens.data,
                n_tokens: tokens.n,
                dim: tokens.dim,
            })?;
            prompt = prompt.example(&kv, ask::example_text(ask, &ex.answer));
        }
        Ok(prompt)
    }

    fn ring(&self, camera: &str) -> Option<Arc<Ring>> {
        let rings = self.shared.rings.read().unwrap_or_else(|p| p.into_inner());
        rings.get(camera).cloned()
    }

    /// Runs the LM on a clip: restore or clear, feed, read the answer.
    fn run_lm(
        &mut self,
        clip: Clip,
        ask_text: &str,
        kind: &AnswerKind,
        prefix: Option<&crate::lm::Prefix>,
        started: Instant,
    ) -> Result<Run, LmError> {
        let vision = Arc::clone(&self.setup.vision);
        let _exclusive = vision.exclusive();
        let lm_started = Instant::now();
        match prefix {
            Some(p) => self.session.restore(p)?,
            None => self.session.clear(),
        }
        let prompt = Prompt::new()
            .media(&clip.kv)
            .text(ask::query_text(ask_text));
        self.session.feed(&prompt)?;
        let answer = ask::answer(&mut self.session, kind)?;
        let stats = &self.shared.stats;
        stats
            .lm_ms
            .observe_ms(lm_started.elapsed().as_secs_f64() * 1000.0);
        if clip.resample_ms > 0.0 {
            stats.resample_ms.observe_ms(clip.resample_ms);
        }
        Ok(Run {
            answer,
            clip,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }

    fn answer_ask(&mut self, job: AskJob) {
        self.shared.beat();
        let started = Instant::now();
        let result = self.ask(&job.request, started);
        let stats = &self.shared.stats;
        match &result {
            Ok(r) => {
                stats.asks_answered.fetch_add(1, Ordering::Relaxed);
                stats.ask_ms.observe_ms(r.latency_ms);
            }
            Err(_) => {
                stats.asks_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        // The asker may have given up (timeout); nothing to do then.
        let _ = job.reply.send(result);
    }

    fn ask(&mut self, req: &AskRequest, started: Instant) -> Result<AskResponse, AskError> {
        let ring = self
            .ring(&req.camera)
            .ok_or_else(|| AskError::UnknownCamera {
                camera: req.camera.clone(),
                known: "see /v1/cameras".into(),
            })?;
        let frames = clip::frames(&ring, req.window, self.setup.resampler.meta().max_frames);
        if frames.is_empty() {
            return Err(AskError::NoFrames(req.camera.clone()));
        }
        let prefix = if req.examples.is_empty() {
            None
        } else {
            self.session.clear();
            let prompt = self
                .examples_prompt(&req.ask, &req.examples)
                .map_err(AskError::Examples)?;
            self.session.feed(&prompt)?;
            Some(self.session.save()?)
        };
        let clip = self.clips_get(&req.camera, &ring, frames)?;
        let run = self.run_lm(clip, &req.ask, &req.answer, prefix.as_ref(), started)?;
        let newest = run.clip.frames.last().expect("a clip has frames");
        let event = NewEvent {
            time_ms: newest.wall_ms(),
            kind: EventKind::Ask,
            camera: req.camera.clone(),
            question: None,
            ask: req.ask.clone(),
            answer: run.answer.text.clone(),
            previous: None,
            scores: run.answer.scores.clone(),
            latency_ms: run.latency_ms,
            frames_used: run.clip.frames.len() as u32,
        };
        let newest = run.clip.frames.last().expect("a clip has frames");
        let event_id = self.record(&[event], newest).first().map(|e| e.id);
        Ok(AskResponse {
            warnings: outside_training(&req.ask, &self.trained, &self.adapter_name)
                .into_iter()
                .collect(),
            camera: req.camera.clone(),
            question: req.ask.clone(),
            answer: run.answer.text,
            scores: run.answer.scores,
            frames_used: run.clip.frames.len() as u32,
            latency_ms: run.latency_ms,
            frame_time_ms: newest.wall_ms(),
            event_id,
        })
    }

    fn clips_get(
        &mut self,
        camera: &str,
        ring: &Arc<Ring>,
        frames: Vec<Arc<crate::ring::Frame>>,
    ) -> Result<Clip, ClipError> {
        let before = self.clips.hits;
        let clip = self.clips.get(
            camera,
            ring,
            frames,
            &self.setup.vision,
            &self.setup.resampler,
            &self.session,
        )?;
        if self.clips.hits > before {
            self.shared
                .stats
                .clips_shared
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(clip)
    }

    /// Stores events with a snapshot of the newest frame behind the answer,
    /// then tells live subscribers. Returns what was stored (nothing on a
    /// store error, which is logged and counted: the answer itself still
    /// stands).
    fn record(&self, events: &[NewEvent], newest: &Frame) -> Vec<StoredEvent> {
        let snapshot = match crate::picture::encode_jpeg(newest) {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::warn!("snapshot for an event: {e}");
                None
            }
        };
        match self.setup.store.record(events, snapshot.as_deref()) {
            Ok(stored) => {
                for e in &stored {
                    log_event(&e.event, Some(e.id));
                    self.shared.stats.events.fetch_add(1, Ordering::Relaxed);
                    self.shared.events.publish(&Arc::new(e.clone()));
                }
                stored
            }
            Err(e) => {
                self.shared
                    .stats
                    .store_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!("{e}");
                for event in events {
                    log_event(event, None);
                }
                Vec::new()
            }
        }
    }

    fn tick(&mut self, i: usize, now: Instant) {
        self.shared.beat();
        let missed = self.questions[i].advance(now);
        let stats = &self.shared.stats;
        if missed > 0 {
            stats.ticks_skipped.fetch_add(missed, Ordering::Relaxed);
            self.questions[i].status.skipped_late += missed;
            tracing::warn!(
                question = %self.questions[i].spec.name,
                missed,
                "the worker was too busy: ticks skipped"
            );
        }
        let result = self.tick_inner(i, now);
        let q = &mut self.questions[i];
        q.status.last_tick_ms = Some(now_ms());
        if let Err(e) = result {
            let e = e.to_string();
            q.status.errors += 1;
            if q.status.last_error.as_deref() != Some(e.as_str()) {
                tracing::warn!(question = %q.spec.name, camera = %q.spec.camera, "{e}");
            }
            q.status.last_error = Some(e);
            q.gate.reset();
        }
        self.publish_statuses();
    }

    fn tick_inner(&mut self, i: usize, now: Instant) -> Result<(), TickError> {
        let spec = self.questions[i].spec.clone();
        if let Some(e) = &self.questions[i].prefix_error {
            return Err(TickError::Examples(e.clone()));
        }
        let ring = self
            .ring(&spec.camera)
            .ok_or_else(|| TickError::CameraNotRunning(spec.camera.clone()))?;
        let frames = clip::frames(&ring, spec.window, self.setup.resampler.meta().max_frames);
        if frames.is_empty() {
            return Err(TickError::NoFrames(spec.camera.clone()));
        }
        let thumbnails: Vec<Thumbnail> = frames.iter().map(|f| Thumbnail::of(f)).collect();
        let stats = &self.shared.stats;
        if !self.questions[i]
            .gate
            .changed(&thumbnails, self.setup.change_threshold)
        {
            stats.runs_gated.fetch_add(1, Ordering::Relaxed);
            self.questions[i].status.gated += 1;
            tracing::debug!(question = %spec.name, "frames unchanged: last answer kept");
            // A gated tick is the last answer given again on the same
            // picture: it counts towards `consecutive` both ways, or an
            // object that arrives and then keeps still would be answered
            // once and never confirmed.
            if let Some(answer) = self.questions[i].status.last_answer.clone() {
                let newest = frames.last().expect("checked non-empty");
                let heard = Heard {
                    answer: &answer,
                    newest,
                    frames_used: frames.len() as u32,
                    latency_ms: 0.0,
                };
                self.observe(i, &spec, heard);
            }
            return Ok(());
        }
        let clip = self.clips_get(&spec.camera, &ring, frames)?;
        let prefix = self.questions[i].prefix.take();
        let run = self.run_lm(clip, &spec.ask, &spec.answer, prefix.as_ref(), now);
        self.questions[i].prefix = prefix;
        let run = run?;
        self.shared.stats.runs.fetch_add(1, Ordering::Relaxed);
        let q = &mut self.questions[i];
        q.gate.ran_on(thumbnails);
        q.status.runs += 1;
        q.status.last_error = None;
        tracing::debug!(
            question = %spec.name,
            answer = %run.answer.text,
            latency_ms = format!("{:.0}", run.latency_ms),
            "standing question answered"
        );
        let heard = Heard {
            answer: &run.answer,
            newest: run.clip.frames.last().expect("a clip has frames"),
            frames_used: run.clip.frames.len() as u32,
            latency_ms: run.latency_ms,
        };
        self.observe(i, &spec, heard);
        Ok(())
    }

    /// Feeds one answer (run or kept) to the question's rules; stores and
    /// publishes the events it causes.
    fn observe(&mut self, i: usize, spec: &QuestionSpec, heard: Heard<'_>) {
        let q = &mut self.questions[i];
        let time_ms = heard.newest.wall_ms();
        let transitions = q.rules.observe(&heard.answer.text, Instant::now());
        q.status.state = q.rules.state();
        q.status.suppressed_alerts = q.rules.suppressed();
        q.status.last_answer = Some(heard.answer.clone());
        q.status.last_answer_time_ms = Some(time_ms);
        let mut events = Vec::new();
        for t in transitions {
            let (kind, previous) = match t {
                Transition::AnswerChanged { from, .. } => (EventKind::AnswerChanged, from),
                Transition::Alert => {
                    q.status.alerts += 1;
                    self.shared.stats.alerts.fetch_add(1, Ordering::Relaxed);
                    (EventKind::Alert, None)
                }
                Transition::Normal => (EventKind::Normal, None),
            };
            events.push(NewEvent {
                time_ms,
                kind,
                camera: spec.camera.clone(),
                question: Some(spec.name.clone()),
                ask: spec.ask.clone(),
                answer: heard.answer.text.clone(),
                previous,
                scores: heard.answer.scores.clone(),
                latency_ms: heard.latency_ms,
                frames_used: heard.frames_used,
            });
        }
        if !events.is_empty() {
            self.record(&events, heard.newest);
        }
    }
}
