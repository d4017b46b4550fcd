//! Supervision against real servers on loopback: an RTSP camera that goes
//! away and comes back, and an MJPEG camera that stalls.

mod common;

use std::time::Duration;

use common::{MjpegServer, RtspServer, fd_count, thread_count, wait_until};
use vigil::capture::{Camera, CameraState};
use vigil::config::{CameraSpec, Fps, RtspTransport, Source};
use vigil::ring::Frame;

#[test]
fn rtsp_camera_reconnects_each_time_the_server_returns() {
    let mut server = RtspServer::start(None);
    let port = server.port;
    let mut spec = CameraSpec::with_defaults("door", Source::Rtsp(server.url()));
    spec.fps = Fps { num: 4, den: 1 };
    spec.width = 160;
    spec.rtsp_transport = RtspTransport::Tcp;
    spec.stall_timeout = Duration::from_secs(3);
    spec.reconnect_initial = Duration::from_millis(250);
    spec.reconnect_max = Duration::from_secs(1);
    let camera = Camera::start(spec, None);

    let mut counts = Vec::new();
    for cycle in 1..=5 {
        let before = camera.status().frames;
        assert!(
            wait_until(Duration::from_secs(15), || camera.status().frames
                >= before + 3),
            "cycle {cycle}: frames did not flow: {:?}",
            camera.status()
        );
        assert_eq!(camera.state(), CameraState::Streaming);
        counts.push((thread_count(), fd_count()));

        drop(server);
        assert!(
            wait_until(Duration::from_secs(8), || camera.state()
                == CameraState::Reconnecting),
            "cycle {cycle}: server gone but state is {:?}",
            camera.status()
        );
        std::thread::sleep(Duration::from_millis(500));
        server = RtspServer::start(Some(port));
        assert_eq!(server.port, port);
    }
    let before = camera.status().frames;
    assert!(wait_until(Duration::from_secs(15), || camera
        .status()
        .frames
        >= before + 3));
    let status = camera.status();
    assert!(status.reconnects >= 5, "{status:?}");
    camera.join();
    drop(server);

    // Resources after the first and the last cycle: nothing accumulates.
    eprintln!("(threads, fds) after each reconnect cycle: {counts:?}");
    let (threads_first, fds_first) = counts[0];
    let (threads_last, fds_last) = counts[counts.len() - 1];
    assert!(
        threads_last <= threads_first + 1,
        "threads grew: {counts:?} (threads, fds) per cycle"
    );
    assert!(
        fds_last <= fds_first + 4,
        "fds grew: {counts:?} (threads, fds) per cycle"
    );
}

#[test]
fn a_stalled_camera_is_restarted_after_stall_timeout() {
    // A real JPEG, made by the same encoder the daemon uses for snapshots.
    let pixels: Vec<u8> = (0..160 * 120 * 3).map(|i| (i % 251) as u8).collect();
    let frame = Frame::new(
        0,
        None,
        std::time::SystemTime::now(),
        std::time::Instant::now(),
        160,
        120,
        pixels,
    );
    let jpeg = vigil::picture::encode_jpeg(&frame).unwrap();
    // Each connection: 6 frames at 5 fps, then silence with the socket open.
    let server = MjpegServer::start(jpeg, 6);
    let mut spec = CameraSpec::with_defaults("barn", Source::Http(server.url()));
    spec.fps = Fps { num: 5, den: 1 };
    spec.width = 160;
    spec.stall_timeout = Duration::from_secs(2);
    spec.reconnect_initial = Duration::from_millis(200);
    let camera = Camera::start(spec, None);

    assert!(
        wait_until(Duration::from_secs(10), || camera.status().frames >= 3),
        "{:?}",
        camera.status()
    );
    assert!(
        wait_until(Duration::from_secs(8), || camera.state()
            == CameraState::Reconnecting),
        "no restart after the stall: {:?}",
        camera.status()
    );
    let status = camera.status();
    assert!(
        status
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("stalled"),
        "{status:?}"
    );
    // The restart opens a new connection and frames flow again.
    let before = camera.status().frames;
    assert!(
        wait_until(Duration::from_secs(8), || server
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
            && camera.status().frames > before),
        "{:?}",
        camera.status()
    );
    camera.join();
}
