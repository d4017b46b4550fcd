//! Image files (PNG, JPEG, ...) decoded by GStreamer into frames: the same
//! decoders and RGB layout as camera frames.

use std::path::Path;
use std::time::{Instant, SystemTime};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::{PictureError, packed_rgb};
use crate::ring::Frame;

/// The decoder; the file's path is set as a property, so no character in
/// it can change the pipeline's shape.
const DECODER: &str = "filesrc name=src ! decodebin ! videoconvert ! video/x-raw,format=RGB ! appsink name=sink sync=false";

/// How long a decode may take before the file is taken to hold no picture.
const DECODE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Decodes the image at `path` into a packed RGB frame.
pub fn load_rgb(path: &Path) -> Result<Frame, PictureError> {
    super::init()?;
    if !path.is_file() {
        return Err(PictureError::MissingFile(path.to_path_buf()));
    }
    let pipeline = gst::parse::launch(DECODER)
        .map_err(|e| PictureError::Pipeline(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| PictureError::Pipeline("not a pipeline".into()))?;
    let result = pull_one(&pipeline, path);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn pull_one(pipeline: &gst::Pipeline, path: &Path) -> Result<Frame, PictureError> {
    let source = pipeline
        .by_name("src")
        .ok_or_else(|| PictureError::Pipeline("no filesrc".into()))?;
    source.set_property("location", path);
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| PictureError::Pipeline("no appsink".into()))?;
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let _ = pipeline.set_state(gst::State::Playing);
    // A decoder error does not end the appsink's wait: poll the bus
    // between short waits, so that a file that is not an image fails at
    // once instead of after the whole timeout.
    let deadline = std::time::Instant::now() + DECODE_TIMEOUT;
    loop {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(50)) {
            let (width, height, pixels) = packed_rgb(&sample)?;
            return Ok(Frame::new(
                0,
                None,
                SystemTime::now(),
                Instant::now(),
                width,
                height,
                pixels,
            ));
        }
        if let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
            let text = match message.view() {
                gst::MessageView::Error(e) => e.error().message().to_string(),
                _ => "unknown error".to_string(),
            };
            return Err(PictureError::Decode {
                path: path.to_path_buf(),
                message: text,
            });
        }
        if sink.is_eos() || std::time::Instant::now() >= deadline {
            return Err(PictureError::NoPicture(path.to_path_buf()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_an_image_says_so_and_a_missing_one_too() {
        let dir = std::env::temp_dir().join(format!("vigil-picture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A quote and a `!` in the name: set as a property, not parsed.
        let text = dir.join("not \"an\" image!.png");
        std::fs::write(&text, b"plain text, not a PNG").unwrap();
        let e = load_rgb(&text).unwrap_err();
        assert!(matches!(e, PictureError::Decode { .. }), "{e:?}");
        assert!(e.to_string().contains("not \"an\" image!.png"), "{e}");
        let missing = dir.join("missing.png");
        assert!(matches!(
            load_rgb(&missing),
            Err(PictureError::MissingFile(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
