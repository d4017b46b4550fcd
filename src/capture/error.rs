//! Why a camera could not deliver frames, in words a person can act on.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::GstObjectExt;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CaptureError {
    #[error(
        "GStreamer element \"{element}\" is not installed\nhelp: install the Debian package {package}"
    )]
    MissingElement { element: String, package: String },
    #[error("the source is not valid: {0}")]
    InvalidSource(String),
    #[error("file {} does not exist\nhelp: check the path; relative paths are resolved against the config file's folder", .0.display())]
    MissingFile(std::path::PathBuf),
    #[error("not found: {0}")]
    NotFound(String),
    #[error(
        "cannot reach the source: {0}\nhelp: check the host, port and network (the daemon keeps retrying)"
    )]
    Unreachable(String),
    #[error(
        "the camera refused the credentials: {0}\nhelp: check the user and password in the URL"
    )]
    NotAuthorized(String),
    #[error(
        "unsupported codec or format: {0}\nhelp: install gstreamer1.0-libav (H.264, H.265, MPEG-4, DivX) and gstreamer1.0-plugins-bad"
    )]
    UnsupportedCodec(String),
    #[error("no frame for {0:?}: the source stalled")]
    Stalled(Duration),
    #[error("stream error: {0}")]
    Stream(String),
    #[error("GStreamer could not be initialised: {0}")]
    Init(String),
}

impl CaptureError {
    /// Errors that retrying cannot fix; the camera stops in `failed` until
    /// the config is reloaded.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            CaptureError::MissingElement { .. }
                | CaptureError::InvalidSource(_)
                | CaptureError::MissingFile(_)
                | CaptureError::UnsupportedCodec(_)
                | CaptureError::Init(_)
        )
    }

    /// Classifies a GStreamer error message by its domain and code.
    pub fn from_gst(err: &gst::message::Error) -> CaptureError {
        let error = err.error();
        let mut text = error.message().to_string();
        if let Some(debug) = err.debug() {
            // The first line of the debug string names the failing call.
            let debug = debug.lines().last().unwrap_or_default().trim().to_string();
            if !debug.is_empty() {
                text = format!("{text} ({debug})");
            }
        }
        if let Some(src) = err.src() {
            text = format!("{}: {text}", src.name());
        }
        if let Some(kind) = error.kind::<gst::ResourceError>() {
            return match kind {
                gst::ResourceError::NotFound => CaptureError::NotFound(text),
                gst::ResourceError::NotAuthorized => CaptureError::NotAuthorized(text),
                gst::ResourceError::OpenRead
                | gst::ResourceError::OpenReadWrite
                | gst::ResourceError::OpenWrite
                | gst::ResourceError::Read
                | gst::ResourceError::Busy
                | gst::ResourceError::Settings => CaptureError::Unreachable(text),
                _ => CaptureError::Stream(text),
            };
        }
        if let Some(kind) = error.kind::<gst::StreamError>() {
            return match kind {
                gst::StreamError::CodecNotFound
                | gst::StreamError::TypeNotFound
                | gst::StreamError::WrongType
                | gst::StreamError::Format => CaptureError::UnsupportedCodec(text),
                _ => CaptureError::Stream(text),
            };
        }
        if let Some(gst::CoreError::MissingPlugin) = error.kind::<gst::CoreError>() {
            return CaptureError::UnsupportedCodec(text);
        }
        CaptureError::Stream(text)
    }

    /// Classifies an error from building a pipeline description.
    pub fn from_parse(error: &glib::Error) -> CaptureError {
        let message = error.message().to_string();
        match error.kind::<gst::ParseError>() {
            Some(gst::ParseError::NoSuchElement) => {
                let element = message
                    .split('"')
                    .nth(1)
                    .unwrap_or(message.as_str())
                    .to_string();
                let package = package_for(&element).to_string();
                CaptureError::MissingElement { element, package }
            }
            _ => CaptureError::InvalidSource(message),
        }
    }
}

/// The Debian package that ships a GStreamer element vigil's pipelines use.
pub fn package_for(element: &str) -> &'static str {
    match element {
        "videotestsrc" | "videoconvert" | "videoscale" | "videorate" | "appsink" | "decodebin"
        | "uridecodebin" | "playbin" => "gstreamer1.0-plugins-base",
        "rtspsrc" | "souphttpsrc" | "multipartdemux" | "jpegdec" | "jpegenc" | "v4l2src"
        | "qtdemux" | "matroskademux" | "avidemux" | "rtph264depay" | "rtpjpegdepay" => {
            "gstreamer1.0-plugins-good"
        }
        e if e.starts_with("avdec_") || e.starts_with("avdemux_") => "gstreamer1.0-libav",
        "x264enc" => "gstreamer1.0-plugins-ugly",
        "h264parse" | "h265parse" | "openh264dec" => "gstreamer1.0-plugins-bad",
        _ => "that provides it (run `gst-inspect-1.0` to list what is installed)",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(error: impl gst::MessageErrorDomain, text: &str) -> CaptureError {
        gst::init().unwrap();
        let msg = gst::message::Error::builder(error, text).build();
        match msg.view() {
            gst::MessageView::Error(e) => CaptureError::from_gst(e),
            _ => unreachable!("built an error message"),
        }
    }

    #[test]
    fn gstreamer_errors_become_causes_a_person_can_act_on() {
        let e = classify(gst::StreamError::CodecNotFound, "missing H.265 decoder");
        assert!(matches!(e, CaptureError::UnsupportedCodec(_)) && e.is_permanent());
        assert!(e.to_string().contains("gstreamer1.0-libav"), "{e}");
        let e = classify(gst::ResourceError::OpenReadWrite, "Could not connect");
        assert!(matches!(e, CaptureError::Unreachable(_)) && !e.is_permanent());
        let e = classify(gst::ResourceError::NotAuthorized, "401");
        assert!(matches!(e, CaptureError::NotAuthorized(_)) && !e.is_permanent());
        let e = classify(gst::ResourceError::NotFound, "404");
        assert!(matches!(e, CaptureError::NotFound(_)) && !e.is_permanent());
    }

    #[test]
    fn a_missing_element_names_its_debian_package() {
        gst::init().unwrap();
        let err = gst::parse::launch("videotestsrc ! nosuchelement-vigil ! fakesink").unwrap_err();
        let e = CaptureError::from_parse(&err);
        match &e {
            CaptureError::MissingElement { element, .. } => {
                assert_eq!(element, "nosuchelement-vigil")
            }
            other => panic!("{other:?}"),
        }
        assert!(e.is_permanent());
        assert_eq!(package_for("rtspsrc"), "gstreamer1.0-plugins-good");
        assert_eq!(package_for("avdec_h264"), "gstreamer1.0-libav");
    }
}
