//! Capture from real GStreamer sources: sampling rate, files, loops, probe.

mod common;

use std::time::Duration;

use common::{TempDir, make_h264_mp4, wait_until};
use vigil::capture::{Camera, CameraState, ProbeOptions, probe};
use vigil::config::{CameraSpec, Fps, Source};

fn probe_lines(spec: &CameraSpec, frames: u32) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let options = ProbeOptions {
        frames,
        timeout: Duration::from_secs(10),
        snapshot: None,
    };
    probe(spec, &options, &mut out).expect("probe succeeds");
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn pts_gaps(lines: &[serde_json::Value]) -> Vec<i64> {
    lines
        .windows(2)
        .map(|w| w[1]["pts_ms"].as_i64().unwrap() - w[0]["pts_ms"].as_i64().unwrap())
        .collect()
}

fn assert_spacing(gaps: &[i64], expected_ms: i64) {
    let tolerance = expected_ms / 20; // ±5%
    for gap in gaps {
        assert!(
            (gap - expected_ms).abs() <= tolerance,
            "PTS gap {gap} ms, expected {expected_ms} ± {tolerance} (all: {gaps:?})"
        );
    }
}

#[test]
fn test_source_is_sampled_at_one_frame_per_second() {
    let spec = CameraSpec::with_defaults("t", Source::Test("ball".into()));
    let lines = probe_lines(&spec, 4);
    assert_eq!(lines.len(), 4);
    assert_spacing(&pts_gaps(&lines), 1000);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["index"], i);
        assert_eq!(l["width"], 640);
        assert_eq!(l["height"], 480);
    }
    // Live source: the wall clock advances with the stream, not faster.
    let wall: Vec<i64> = lines
        .iter()
        .map(|l| l["wall_ms"].as_i64().unwrap())
        .collect();
    let span = wall[3] - wall[0];
    assert!(
        (2500..=3500).contains(&span),
        "3 intervals took {span} ms of wall time"
    );
}

#[test]
fn test_source_is_sampled_at_two_frames_per_second() {
    let mut spec = CameraSpec::with_defaults("t", Source::Test("smpte".into()));
    spec.fps = Fps { num: 2, den: 1 };
    spec.width = 320;
    spec.height = Some(200);
    let lines = probe_lines(&spec, 5);
    assert_spacing(&pts_gaps(&lines), 500);
    assert_eq!(
        (lines[0]["width"].as_i64(), lines[0]["height"].as_i64()),
        (Some(320), Some(200))
    );
}

#[test]
fn file_source_delivers_its_frames_then_ends() {
    let dir = TempDir::new("file-eos");
    let file = dir.path().join("clip.mp4");
    make_h264_mp4(&file, 3);
    let mut spec = CameraSpec::with_defaults("f", Source::File(file));
    spec.fps = Fps { num: 2, den: 1 };
    // Ask for more frames than the file has: probe stops at EOS.
    let lines = probe_lines(&spec, 50);
    assert_eq!(lines.len(), 6, "3 s at 2 fps: {lines:?}");
    assert_spacing(&pts_gaps(&lines), 500);
    assert_eq!(lines[0]["width"], 640);
    assert_eq!(lines[0]["height"], 480, "4:3 aspect kept");
}

#[test]
fn looping_file_keeps_going_with_rising_timestamps() {
    let dir = TempDir::new("file-loop");
    let file = dir.path().join("clip.mp4");
    make_h264_mp4(&file, 2);
    let mut spec = CameraSpec::with_defaults("loop", Source::File(file));
    spec.fps = Fps { num: 4, den: 1 };
    spec.looping = true;
    let camera = Camera::start(spec, None);
    // 2 s of file at 4 fps is 8 frames; 14 means it looped.
    let looped = wait_until(Duration::from_secs(15), || camera.status().frames >= 14);
    let status = camera.status();
    assert!(looped, "no loop: {status:?}");
    assert!(status.loops >= 1, "{status:?}");
    assert_eq!(
        status.reconnects, 0,
        "looping is not reconnecting: {status:?}"
    );
    assert_eq!(camera.state(), CameraState::Streaming);
    let frames = camera.ring().latest(100);
    let pts: Vec<u128> = frames.iter().map(|f| f.pts.unwrap().as_millis()).collect();
    assert!(
        pts.windows(2).all(|w| w[1] > w[0]),
        "PTS must keep rising: {pts:?}"
    );
    camera.join();
}

#[test]
fn a_missing_file_fails_permanently_without_retrying() {
    let spec = CameraSpec::with_defaults("gone", Source::File("/nonexistent/vigil.mp4".into()));
    let camera = Camera::start(spec, None);
    assert!(wait_until(Duration::from_secs(5), || camera.state()
        == CameraState::Failed));
    std::thread::sleep(Duration::from_millis(1500));
    let status = camera.status();
    assert_eq!(status.reconnects, 0);
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("does not exist"),
        "{status:?}"
    );
    camera.join();
}

#[test]
fn probe_names_the_cause_of_failure() {
    let options = ProbeOptions {
        frames: 1,
        timeout: Duration::from_secs(5),
        snapshot: None,
    };
    // Port 9 (discard) is closed on loopback: connection refused.
    let spec = CameraSpec::with_defaults("x", Source::Rtsp("rtsp://127.0.0.1:9/none".into()));
    let err = probe(&spec, &options, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot reach the source"), "{err}");

    let spec = CameraSpec::with_defaults("x", Source::Test("no-such-pattern".into()));
    let err = probe(&spec, &options, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("pattern"), "{err}");
}

#[test]
fn probe_writes_a_jpeg_snapshot_of_the_last_frame() {
    let dir = TempDir::new("snap");
    let out = dir.path().join("last.jpg");
    let mut spec = CameraSpec::with_defaults("s", Source::Test("smpte".into()));
    spec.fps = Fps { num: 5, den: 1 };
    let options = ProbeOptions {
        frames: 2,
        timeout: Duration::from_secs(5),
        snapshot: Some(out.clone()),
    };
    probe(&spec, &options, &mut Vec::new()).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "JPEG magic");
    assert_eq!(&bytes[bytes.len() - 2..], &[0xFF, 0xD9], "JPEG end marker");
    assert!(
        bytes.len() > 2000,
        "an SMPTE frame is not tiny: {} B",
        bytes.len()
    );
}
