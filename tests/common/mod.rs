//! Real fixtures for the integration tests: files made by GStreamer, an RTSP
//! server on loopback, an MJPEG-over-HTTP server, temp dirs.
#![allow(dead_code)]

pub mod config;
pub mod daemon;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

pub fn init() {
    gst::init().expect("GStreamer initialises");
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("vigil-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a gst-launch description to EOS (for making fixture files).
pub fn run_to_eos(description: &str) {
    init();
    let pipeline = gst::parse::launch(description).expect("fixture pipeline parses");
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("fixture pipeline finishes within 60 s");
    pipeline.set_state(gst::State::Null).unwrap();
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("fixture pipeline failed: {} ({:?})", e.error(), e.debug());
    }
}

/// An H.264 MP4 of `seconds` at 10 fps, 320×240, I420 (what real cameras
/// record), made with x264enc.
pub fn make_h264_mp4(path: &Path, seconds: u32) {
    run_to_eos(&format!(
        "videotestsrc num-buffers={} pattern=ball ! video/x-raw,format=I420,width=320,height=240,framerate=10/1 \
         ! x264enc speed-preset=ultrafast ! h264parse ! mp4mux ! filesink location=\"{}\"",
        seconds * 10,
        path.display()
    ));
}

/// Polls `check` every 50 ms until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// An RTSP server on 127.0.0.1 serving `/cam` (MJPEG over RTP, 10 fps),
/// with its own GLib main loop thread. Dropping it disconnects every client.
pub struct RtspServer {
    pub port: u16,
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
}

impl RtspServer {
    /// Starts on `port`, or on a free port when `None`.
    pub fn start(port: Option<u16>) -> RtspServer {
        init();
        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread_loop = main_loop.clone();
        let thread = std::thread::spawn(move || {
            let ctx = thread_loop.context();
            let guard = ctx.acquire().expect("own the server's context");
            let server = rtsp::RTSPServer::new();
            server.set_address("127.0.0.1");
            server.set_service(&port.map_or("0".to_string(), |p| p.to_string()));
            let factory = rtsp::RTSPMediaFactory::new();
            factory.set_launch(
                "( videotestsrc is-live=true pattern=ball \
                 ! video/x-raw,format=I420,width=320,height=240,framerate=10/1 \
                 ! jpegenc quality=60 ! rtpjpegpay name=pay0 pt=26 )",
            );
            factory.set_shared(true);
            server.mount_points().unwrap().add_factory("/cam", factory);
            let source = match server.create_source(rtsp::gio::Cancellable::NONE) {
                Ok(s) => s,
                Err(e) => {
                    tx.send(Err(e.to_string())).unwrap();
                    return;
                }
            };
            source.attach(Some(&ctx));
            tx.send(Ok(server.bound_port() as u16)).unwrap();
            thread_loop.run();
            // Stop listening and drop every client before the server goes.
            source.destroy();
            server.client_filter(Some(
                &mut |_server: &rtsp::RTSPServer, _client: &rtsp::RTSPClient| {
                    rtsp::RTSPFilterResult::Remove
                },
            ));
            // Let the removals' idle callbacks run.
            while ctx.iteration(false) {}
            drop(guard);
        });
        let port = rx
            .recv()
            .expect("server thread answers")
            .unwrap_or_else(|e| panic!("RTSP server cannot listen: {e}"));
        RtspServer {
            port,
            main_loop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/cam", self.port)
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// An MJPEG-over-HTTP server (multipart/x-mixed-replace) on 127.0.0.1.
/// Each connection gets `frames_per_connection` frames at 5 fps; after
/// that the server keeps the connection open and sends nothing: a stall.
pub struct MjpegServer {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MjpegServer {
    pub fn start(jpeg: Vec<u8>, frames_per_connection: usize) -> MjpegServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (conn_count, stop_flag) = (Arc::clone(&connections), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut open = Vec::new();
            while !stop_flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        conn_count.fetch_add(1, Ordering::Relaxed);
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(2)))
                            .unwrap();
                        let mut request = [0u8; 4096];
                        let _ = stream.read(&mut request);
                        let _ = stream.write_all(
                            b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=vigilframe\r\n\r\n",
                        );
                        for _ in 0..frames_per_connection {
                            let head = format!(
                                "--vigilframe\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                                jpeg.len()
                            );
                            if stream.write_all(head.as_bytes()).is_err()
                                || stream.write_all(&jpeg).is_err()
                                || stream.write_all(b"\r\n").is_err()
                            {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        // Keep it open, silent: the client must notice the stall.
                        open.push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        MjpegServer {
            port,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mjpg", self.port)
    }
}

impl Drop for MjpegServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A file `make models` puts in models/, or a panic saying so.
pub fn model_file(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make models` (make test does)",
        path.display()
    );
    path
}
