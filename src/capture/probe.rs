//! `vigil probe`: open a source the way the daemon would and report frames.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::error::CaptureError;
use super::session::{Event, Session};
use crate::config::CameraSpec;
use crate::picture::{PictureError, encode_jpeg};
use crate::ring::Frame;

pub struct ProbeOptions {
    pub frames: u32,
    /// Give up when no frame arrived for this long.
    pub timeout: Duration,
    pub snapshot: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Capture(#[from] CaptureError),
    #[error("the stream ended before the first frame")]
    NoFrames,
    #[error("snapshot: {0}")]
    Snapshot(#[from] PictureError),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Prints one JSON line per frame to `out`; returns how many it got.
pub fn probe(
    spec: &CameraSpec,
    options: &ProbeOptions,
    out: &mut dyn Write,
) -> Result<u32, ProbeError> {
    let mut session = Session::open(spec)?;
    let mut got = 0u32;
    let mut last: Option<Frame> = None;
    let mut last_progress = Instant::now();
    while got < options.frames {
        match session.next(Duration::from_millis(200))? {
            Event::Frame(c) => {
                last_progress = Instant::now();
                let frame = Frame::new(
                    u64::from(got),
                    c.pts,
                    c.wall,
                    c.captured,
                    c.width,
                    c.height,
                    c.pixels,
                );
                let line = serde_json::json!({
                    "index": got,
                    "pts_ms": frame.pts.map(|p| p.as_millis() as u64),
                    "wall_ms": frame.wall_ms(),
                    "width": frame.width,
                    "height": frame.height,
                });
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
                got += 1;
                last = Some(frame);
            }
            Event::Eos => break,
            Event::Idle => {
                let quiet = last_progress.elapsed();
                if quiet >= options.timeout {
                    return Err(CaptureError::Stalled(quiet).into());
                }
            }
        }
    }
    drop(session);
    let Some(last) = last else {
        return Err(ProbeError::NoFrames);
    };
    if got < options.frames {
        tracing::warn!("the stream ended after {got} of {} frames", options.frames);
    }
    if let Some(path) = &options.snapshot {
        let bytes = encode_jpeg(&last)?;
        std::fs::write(path, bytes).map_err(|source| ProbeError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(got)
}
