//! `vigil run` as a child process: its log, sd-notify over a datagram
//! socket standing in for systemd, and HTTP requests on its API socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{TempDir, wait_until};

/// An HTTP response as read off the socket.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Sends raw bytes on the API socket and reads the whole reply.
pub fn raw_request(socket: &std::path::Path, bytes: &[u8]) -> HttpReply {
    let mut s = UnixStream::connect(socket).expect("connect to the API socket");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s.write_all(bytes).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_reply(&raw)
}

pub fn parse_reply(raw: &[u8]) -> HttpReply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    HttpReply {
        status,
        head,
        body: raw[split + 4..].to_vec(),
    }
}

/// One request with an optional JSON body.
pub fn request(
    socket: &std::path::Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> HttpReply {
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: vigil\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_request(socket, req.as_bytes())
}

pub struct Daemon {
    pub child: Child,
    log: Arc<Mutex<Vec<String>>>,
    notify: UnixDatagram,
    pub messages: Vec<String>,
    /// The API socket (`--socket`), in the test's directory.
    pub socket: PathBuf,
}

impl Daemon {
    pub fn start(dir: &TempDir, config: &std::path::Path, watchdog_usec: Option<u64>) -> Daemon {
        Daemon::start_with_env(dir, config, watchdog_usec, &[])
    }

    /// `start`, with extra environment variables (such as `VIGIL_FAULT`).
    pub fn start_with_env(
        dir: &TempDir,
        config: &std::path::Path,
        watchdog_usec: Option<u64>,
        env: &[(&str, &str)],
    ) -> Daemon {
        let socket_path = dir.path().join("notify.sock");
        // A restarted daemon in the same directory gets a fresh one.
        let _ = std::fs::remove_file(&socket_path);
        let notify = UnixDatagram::bind(&socket_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let socket = dir.path().join("vigil.sock");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--socket")
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("NOTIFY_SOCKET", &socket_path)
            .env_remove("WATCHDOG_PID")
            .env_remove("VIGIL_LOG")
            .env_remove("RUST_LOG")
            .env_remove("VIGIL_FAULT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match watchdog_usec {
            Some(us) => cmd.env("WATCHDOG_USEC", us.to_string()),
            None => cmd.env_remove("WATCHDOG_USEC"),
        };
        let mut child = cmd.spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Daemon {
            child,
            log,
            notify,
            messages: Vec::new(),
            socket,
        }
    }

    /// Reads notify datagrams until one has a line equal to `needle`.
    pub fn wait_notify(&mut self, needle: &str, limit: Duration) -> bool {
        self.wait_notify_line(|l| l == needle, limit)
    }

    /// Like `wait_notify`, also looking at datagrams already received.
    pub fn wait_notify_prefix(&mut self, prefix: &str, limit: Duration) -> bool {
        if self
            .messages
            .iter()
            .any(|m| m.lines().any(|l| l.starts_with(prefix)))
        {
            return true;
        }
        self.wait_notify_line(|l| l.starts_with(prefix), limit)
    }

    pub fn wait_notify_line(&mut self, matches: impl Fn(&str) -> bool, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(&matches);
                self.messages.push(msg);
                if hit {
                    return true;
                }
            }
        }
        false
    }

    pub fn log_has(&self, parts: &[&str]) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    }

    pub fn wait_log(&self, parts: &[&str], limit: Duration) -> bool {
        wait_until(limit, || self.log_has(parts))
    }

    pub fn signal(&self, sig: i32) {
        send_signal(self.child.id(), sig);
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn get(&self, path: &str) -> HttpReply {
        request(&self.socket, "GET", path, None)
    }

    pub fn post(&self, path: &str, body: &str) -> HttpReply {
        request(&self.socket, "POST", path, Some(body))
    }

    /// Waits for READY=1, with the log in the panic message.
    pub fn wait_ready(&mut self, limit: Duration) {
        let ok = self.wait_notify("READY=1", limit);
        assert!(ok, "no READY=1 within {limit:?}:\n{}", self.log_text());
    }

    /// Resident memory of the daemon, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    /// SIGTERM, then the exit status (within `limit`).
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let asked = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                asked.elapsed() < limit,
                "still running {limit:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sends signal number `sig` to process `pid` with kill(1), which keeps
/// `unsafe` out of the tests.
pub fn send_signal(pid: u32, sig: i32) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -{sig} {pid}: {status}");
}
