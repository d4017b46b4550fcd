//! One run of one camera's GStreamer pipeline, from PLAYING to NULL.
//!
//! A session never outlives an error: the camera supervisor makes a new one.
//! Dropping a session always sets the pipeline to NULL first (GStreamer
//! aborts the process when a pipeline is freed in another state).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::error::CaptureError;
use super::pipeline;
use super::rate::RateGate;
use crate::config::{CameraSpec, Source};
use crate::picture::packed_rgb;

/// Pixels and timestamps of one sample, before it becomes a ring `Frame`.
#[derive(Debug)]
pub struct Captured {
    pub pts: Option<Duration>,
    pub wall: SystemTime,
    pub captured: Instant,
    pub width: u32,
    pub height: u32,
    /// Packed RGB rows.
    pub pixels: Vec<u8>,
}

#[derive(Debug)]
pub enum Event {
    Frame(Captured),
    /// The stream ended (a file reached its end).
    Eos,
    /// Nothing arrived within the wait.
    Idle,
}

pub struct Session {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    bus: gst::Bus,
    /// Added to buffer PTS so that stream time keeps rising across loops.
    pts_offset: Duration,
    last_pts: Option<Duration>,
    interval: Duration,
    /// Shared with the streaming thread's pad probe.
    gate: Arc<Mutex<RateGate>>,
}

/// Initialises GStreamer once per process.
pub fn init() -> Result<(), CaptureError> {
    gst::init().map_err(|e| CaptureError::Init(e.to_string()))
}

impl Session {
    /// Builds the camera's pipeline and starts it.
    pub fn open(spec: &CameraSpec) -> Result<Session, CaptureError> {
        init()?;
        if let Source::File(path) = &spec.source {
            check_file(path)?;
        }
        let description = pipeline::describe(spec);
        tracing::debug!(camera = %spec.name, pipeline = %description, "building pipeline");
        let element = gst::parse::launch(&description).map_err(|e| CaptureError::from_parse(&e))?;
        let pipeline = element.downcast::<gst::Pipeline>().map_err(|_| {
            CaptureError::InvalidSource("description did not make a pipeline".into())
        })?;
        let bus = pipeline.bus().expect("a pipeline always has a bus");
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok());
        let session_sink = match sink {
            Some(s) => s,
            None => {
                let _ = pipeline.set_state(gst::State::Null);
                return Err(CaptureError::InvalidSource(
                    "pipeline has no appsink named sink".into(),
                ));
            }
        };
        let session = Session {
            pipeline,
            sink: session_sink,
            bus,
            pts_offset: Duration::ZERO,
            last_pts: None,
            interval: spec.fps.interval(),
            gate: Arc::new(Mutex::new(RateGate::new(spec.fps.interval()))),
        };
        session.install_gate()?;
        if session.pipeline.set_state(gst::State::Playing).is_err() {
            // The reason is on the bus; fall back to a generic one.
            return Err(session
                .pending_error()
                .unwrap_or_else(|| CaptureError::Stream("the pipeline refused to start".into())));
        }
        Ok(session)
    }

    /// Waits up to `wait` for the next frame or for the stream to end.
    pub fn next(&mut self, wait: Duration) -> Result<Event, CaptureError> {
        if let Some(event) = self.drain_bus()? {
            return Ok(event);
        }
        let timeout = gst::ClockTime::from_nseconds(wait.as_nanos() as u64);
        match self.sink.try_pull_sample(timeout) {
            Some(sample) => Ok(Event::Frame(self.convert(&sample)?)),
            None if self.sink.is_eos() => {
                // An error posted together with EOS wins over the EOS.
                match self.drain_bus()? {
                    Some(event) => Ok(event),
                    None => Ok(Event::Eos),
                }
            }
            None => Ok(self.drain_bus()?.unwrap_or(Event::Idle)),
        }
    }

    /// Starts the stream again from the beginning (file loops). Stream time
    /// keeps counting up from where the previous pass ended.
    pub fn rewind(&mut self) -> Result<(), CaptureError> {
        self.pts_offset = self.last_pts.map_or(self.pts_offset, |p| p + self.interval);
        lock(&self.gate).reset();
        self.pipeline
            .seek_simple(
                gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                gst::ClockTime::ZERO,
            )
            .map_err(|e| CaptureError::Stream(format!("cannot seek to the start to loop: {e}")))
    }

    /// Drops the frames that are not kept before they are converted.
    fn install_gate(&self) -> Result<(), CaptureError> {
        let pad = self
            .pipeline
            .by_name("convert")
            .and_then(|e| e.static_pad("sink"))
            .ok_or_else(|| {
                CaptureError::InvalidSource("pipeline has no element named convert".into())
            })?;
        let gate = Arc::clone(&self.gate);
        let started = Instant::now();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
            let stream_time = info
                .buffer()
                .and_then(|b| b.pts())
                .map(|p| Duration::from_nanos(p.nseconds()))
                .unwrap_or_else(|| started.elapsed());
            if lock(&gate).accept(stream_time) {
                gst::PadProbeReturn::Ok
            } else {
                // `Handled` lets gstreamer-rs release the buffer; with
                // `Drop`, 0.25 hands GStreamer a NULL to unref (CRITICAL).
                gst::PadProbeReturn::Handled
            }
        });
        Ok(())
    }

    fn drain_bus(&self) -> Result<Option<Event>, CaptureError> {
        while let Some(msg) = self.bus.pop() {
            match msg.view() {
                gst::MessageView::Error(err) => return Err(CaptureError::from_gst(err)),
                gst::MessageView::Eos(_) => return Ok(Some(Event::Eos)),
                gst::MessageView::Warning(w) => {
                    tracing::debug!(warning = %w.error(), debug = ?w.debug(), "GStreamer warning");
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// The first error waiting on the bus, if any (after a failed start).
    fn pending_error(&self) -> Option<CaptureError> {
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let msg = self.bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(100),
                &[gst::MessageType::Error],
            )?;
            if let gst::MessageView::Error(err) = msg.view() {
                return Some(CaptureError::from_gst(err));
            }
        }
        None
    }

    fn convert(&mut self, sample: &gst::Sample) -> Result<Captured, CaptureError> {
        let wall = SystemTime::now();
        let captured = Instant::now();
        let (width, height, pixels) =
            packed_rgb(sample).map_err(|e| CaptureError::Stream(e.to_string()))?;
        let pts = sample
            .buffer()
            .and_then(|b| b.pts())
            .map(|p| Duration::from_nanos(p.nseconds()) + self.pts_offset);
        if pts.is_some() {
            self.last_pts = pts;
        }
        Ok(Captured {
            pts,
            wall,
            captured,
            width,
            height,
            pixels,
        })
    }
}

/// Copies an RGB sample's pixels out as packed rows (GStreamer pads RGB
/// rows to 4 bytes).
impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn lock(gate: &Mutex<RateGate>) -> MutexGuard<'_, RateGate> {
    // The gate holds no invariant a panic could break halfway.
    gate.lock().unwrap_or_else(|p| p.into_inner())
}

fn check_file(path: &Path) -> Result<(), CaptureError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(CaptureError::InvalidSource(format!(
            "{} is not a regular file",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(CaptureError::MissingFile(path.to_path_buf()))
        }
        Err(e) => Err(CaptureError::InvalidSource(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}
