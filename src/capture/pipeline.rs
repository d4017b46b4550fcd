//! Turns a camera's spec into a gst-launch description from the templates in
//! `pipelines/` (compiled in, so an installed binary needs no data files).

use crate::config::{CameraSpec, RtspTransport, Source};

const SAMPLE: &str = include_str!("../../pipelines/sample.pipeline");
const TEST: &str = include_str!("../../pipelines/test.pipeline");
const FILE: &str = include_str!("../../pipelines/file.pipeline");
const RTSP: &str = include_str!("../../pipelines/rtsp.pipeline");
const HTTP: &str = include_str!("../../pipelines/http.pipeline");
const V4L2: &str = include_str!("../../pipelines/v4l2.pipeline");

/// The gst-launch description for a camera, ending in `appsink name=sink`.
pub fn describe(spec: &CameraSpec) -> String {
    // A test pattern has no aspect ratio of its own: give it 4:3 rather
    // than videotestsrc's default height.
    let height = match (&spec.source, spec.height) {
        (Source::Test(_), None) => Some(spec.width * 3 / 4),
        (_, h) => h,
    };
    let size = match height {
        Some(h) => format!("width={},height={h}", spec.width),
        None => format!("width={}", spec.width),
    };
    let sample = render(SAMPLE, &[("size", &size)]);
    match &spec.source {
        Source::Test(pattern) => render(TEST, &[("pattern", pattern), ("sample", &sample)]),
        Source::File(path) => render(
            FILE,
            &[
                ("location", &quote(&path.to_string_lossy())),
                ("sample", &sample),
            ],
        ),
        Source::Rtsp(url) => {
            let protocols = match spec.rtsp_transport {
                RtspTransport::Tcp => "tcp",
                RtspTransport::Udp => "udp",
                RtspTransport::Auto => "udp+udp-mcast+tcp",
            };
            render(
                RTSP,
                &[
                    ("location", &quote(url)),
                    ("protocols", protocols),
                    ("sample", &sample),
                ],
            )
        }
        Source::Http(url) => render(HTTP, &[("location", &quote(url)), ("sample", &sample)]),
        Source::V4l2(device) => render(
            V4L2,
            &[
                ("device", &quote(&device.to_string_lossy())),
                ("sample", &sample),
            ],
        ),
    }
}

/// Drops comment lines, joins the rest and fills `{name}` placeholders.
fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    for (name, value) in values {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    debug_assert!(!text.contains('{'), "unfilled placeholder in {text}");
    text
}

/// Quotes a user-supplied value for gst-launch syntax, so spaces, `!` or
/// quotes in a path or URL cannot change the pipeline's shape.
pub(super) fn quote(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Fps;
    use std::path::PathBuf;

    #[test]
    fn file_paths_are_quoted_and_the_tail_is_filled() {
        let mut spec = CameraSpec::with_defaults(
            "c",
            Source::File(PathBuf::from("/srv/my \"odd\" ! file.mp4")),
        );
        spec.fps = Fps { num: 1, den: 2 };
        spec.height = Some(240);
        let d = describe(&spec);
        assert!(
            d.starts_with(r#"filesrc location="/srv/my \"odd\" ! file.mp4" ! decodebin"#),
            "{d}"
        );
        assert!(
            d.contains("! videoconvert name=convert ! videoscale"),
            "{d}"
        );
        assert!(d.contains("format=RGB,width=640,height=240,"), "{d}");
        assert!(
            d.ends_with("appsink name=sink sync=true max-buffers=2 drop=true"),
            "{d}"
        );
    }

    #[test]
    fn rtsp_transport_is_rendered() {
        let mut spec = CameraSpec::with_defaults("c", Source::Rtsp("rtsp://h/x".into()));
        spec.rtsp_transport = RtspTransport::Tcp;
        assert!(describe(&spec).contains("protocols=tcp "));
    }
}
