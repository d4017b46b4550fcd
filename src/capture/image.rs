//! Still images (PNG, JPEG, ...) decoded by GStreamer into frames, for
//! few-shot examples and tests: the same decoders and RGB layout as camera
//! frames.

use std::path::Path;
use std::time::{Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::error::CaptureError;
use super::pipeline::quote;
use super::session::{init, packed_rgb};
use crate::ring::Frame;

/// Decodes the image at `path` into a packed RGB frame.
pub fn load_rgb(path: &Path) -> Result<Frame, CaptureError> {
    init()?;
    if !path.is_file() {
        return Err(CaptureError::MissingFile(path.to_path_buf()));
    }
    let description = format!(
        "filesrc location={} ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false",
        quote(&path.to_string_lossy())
    );
    let pipeline = gst::parse::launch(&description)
        .map_err(|e| CaptureError::from_parse(&e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| CaptureError::InvalidSource("not a pipeline".into()))?;
    let result = pull_one(&pipeline, path);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn pull_one(pipeline: &gst::Pipeline, path: &Path) -> Result<Frame, CaptureError> {
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| CaptureError::InvalidSource("no appsink".into()))?;
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let _ = pipeline.set_state(gst::State::Playing);
    match sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
        Some(sample) => {
            let (width, height, pixels) = packed_rgb(&sample)?;
            Ok(Frame::new(
                0,
                None,
                SystemTime::now(),
                Instant::now(),
                width,
                height,
                pixels,
            ))
        }
        None => {
            let error = bus
                .pop_filtered(&[gst::MessageType::Error])
                .and_then(|m| match m.view() {
                    gst::MessageView::Error(e) => Some(CaptureError::from_gst(e)),
                    _ => None,
                });
            Err(error.unwrap_or_else(|| {
                CaptureError::Stream(format!("{} gave no picture", path.display()))
            }))
        }
    }
}
