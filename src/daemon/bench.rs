//! `vigil bench daemon`: the daemon as a user meets it, measured through
//! its socket. Starts `vigil run` as a child on test-pattern cameras and
//! prints `name: value` lines:
//!
//! - `ask_yes_no_p50_ms`, `ask_yes_no_p95_ms`: ad-hoc yes/no questions, one
//!   at a time, end to end through the socket (one camera, nothing else
//!   running);
//! - `cameras_sustained`: the most cameras, each with 3 standing questions
//!   every 5 s at 1 FPS, that run a measured period with no skipped tick
//!   and no frame dropped from a ring.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::client;

pub struct BenchOptions {
    pub lm: PathBuf,
    pub adapter: PathBuf,
    pub encoder: PathBuf,
    pub resampler: PathBuf,
    pub threads: usize,
    /// Timed asks (after 3 warm-up ones).
    pub asks: usize,
    /// The most cameras to try.
    pub max_cameras: usize,
    /// How long each camera count must hold.
    pub hold: Duration,
    /// videotestsrc pattern of every camera ("ball" moves, so change gating
    /// never saves a run).
    pub pattern: String,
}

struct RunningDaemon {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config(o: &BenchOptions, cameras: usize, questions: bool) -> String {
    // The config lives in a temp dir: relative paths would resolve there.
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let (lm, adapter, encoder, resampler) = (
        abs(&o.lm),
        abs(&o.adapter),
        abs(&o.encoder),
        abs(&o.resampler),
    );
    let mut text = format!(
        "[daemon]\nsummary_interval = \"1h\"\nlog_level = \"warn\"\n\n[model]\nlm = \"{}\"\nadapter = \"{}\"\nencoder = \"{}\"\nresampler = \"{}\"\nthreads = {}\n",
        lm.display(),
        adapter.display(),
        encoder.display(),
        resampler.display(),
        o.threads
    );
    for i in 0..cameras {
        text.push_str(&format!(
            "\n[[camera]]\nname = \"cam{i}\"\nsource = \"test:{}\"\nfps = 1\nwidth = 640\nbuffer = \"30s\"\n",
            o.pattern
        ));
        if questions {
            for (name, ask, answer, window) in [
                ("someone", "Is anyone there?", "\"yes-no\"", "1 frame"),
                (
                    "how-many",
                    "How many things are there?",
                    "\"count\"",
                    "1 frame",
                ),
                ("moving", "Is something moving?", "\"yes-no\"", "4s"),
            ] {
                text.push_str(&format!(
                    "\n[[question]]\nname = \"{name}-{i}\"\ncamera = \"cam{i}\"\nask = \"{ask}\"\nanswer = {answer}\nevery = \"5s\"\nwindow = \"{window}\"\n"
                ));
            }
        }
    }
    text
}

fn start(o: &BenchOptions, cameras: usize, questions: bool) -> Result<RunningDaemon, String> {
    let dir = std::env::temp_dir().join(format!(
        "vigil-bench-{}-{cameras}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let config_path = dir.join("vigil.toml");
    std::fs::write(&config_path, config(o, cameras, questions)).map_err(|e| e.to_string())?;
    let socket = dir.join("vigil.sock");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("daemon.log")).map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .args(["run", "--config"])
        .arg(&config_path)
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start the daemon: {e}"))?;
    let mut d = RunningDaemon { child, dir, socket };
    // Ready when every camera has a frame.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(s) = status(&d.socket)
            && let Some(cams) = s["cameras"].as_array()
            && cams.len() == cameras
            && cams
                .iter()
                .all(|c| c["ring"]["frames"].as_u64().unwrap_or(0) > 0)
        {
            return Ok(d);
        }
        let exited = matches!(d.child.try_wait(), Ok(Some(_)));
        if exited || Instant::now() > deadline {
            let log = std::fs::read_to_string(d.dir.join("daemon.log")).unwrap_or_default();
            return Err(format!("the daemon did not come up:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn status(socket: &Path) -> Result<Value, String> {
    let r = client::request(socket, "GET", "/v1/status", None, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&r.body).map_err(|e| e.to_string())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ask_latency(o: &BenchOptions, out: &mut dyn Write) -> Result<(), String> {
    let d = start(o, 1, false)?;
    let body = br#"{"camera": "cam0", "question": "Is anyone there?", "answer": "yes-no"}"#;
    let mut times = Vec::with_capacity(o.asks);
    for i in 0..o.asks + 3 {
        let started = Instant::now();
        let r = client::request(
            &d.socket,
            "POST",
            "/v1/ask",
            Some(body),
            Duration::from_secs(60),
        )
        .map_err(|e| e.to_string())?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if r.status != 200 {
            return Err(format!("ask failed: {}", String::from_utf8_lossy(&r.body)));
        }
        if i >= 3 {
            times.push(ms);
        }
    }
    times.sort_by(f64::total_cmp);
    writeln!(out, "ask_yes_no_p50_ms: {:.1}", percentile(&times, 0.5))
        .map_err(|e| e.to_string())?;
    writeln!(out, "ask_yes_no_p95_ms: {:.1}", percentile(&times, 0.95))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Counters that must not move while the load holds.
fn losses(s: &Value) -> (u64, u64, u64) {
    let dropped: u64 = s["cameras"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["ring"]["dropped"].as_u64().unwrap_or(0))
        .sum();
    (
        s["worker"]["ticks_skipped"].as_u64().unwrap_or(0),
        s["vision"]["skipped_busy"].as_u64().unwrap_or(0),
        dropped,
    )
}

/// Whether `cameras` cameras hold for `o.hold` (after a warm-up: every
/// question answered once, then one period).
fn holds(o: &BenchOptions, cameras: usize, out: &mut dyn Write) -> Result<bool, String> {
    let d = start(o, cameras, true)?;
    // Steady state: every question has answered once (the first round all
    // comes due together), then one more period.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let r = client::request(
            &d.socket,
            "GET",
            "/v1/questions",
            None,
            Duration::from_secs(10),
        )
        .map_err(|e| e.to_string())?;
        let questions: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
        let all = questions.as_array().cloned().unwrap_or_default();
        if all.len() == cameras * 3 && all.iter().all(|q| q["runs"].as_u64().unwrap_or(0) >= 1) {
            break;
        }
        if Instant::now() > deadline {
            writeln!(
                out,
                "# {cameras} cameras: not every question answered within 3 minutes"
            )
            .map_err(|e| e.to_string())?;
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_secs(5));
    let before = status(&d.socket)?;
    std::thread::sleep(o.hold);
    let after = status(&d.socket)?;
    let (t0, v0, r0) = losses(&before);
    let (t1, v1, r1) = losses(&after);
    let runs = after["worker"]["runs"].as_u64().unwrap_or(0)
        - before["worker"]["runs"].as_u64().unwrap_or(0);
    // Frames not encoded on arrival are not lost (a question that needs one
    // encodes it then), so they are reported but do not fail the count.
    let ok = t1 == t0 && r1 == r0;
    writeln!(
        out,
        "# {cameras} cameras: {runs} LM runs in {:?}, {} ticks skipped, {} frames not encoded on arrival, {} dropped: {}",
        o.hold,
        t1 - t0,
        v1 - v0,
        r1 - r0,
        if ok { "holds" } else { "does not hold" }
    )
    .map_err(|e| e.to_string())?;
    Ok(ok)
}

pub fn run(o: &BenchOptions, out: &mut dyn Write) -> Result<(), String> {
    writeln!(
        out,
        "# vigil bench daemon: {} thread(s), test:{} cameras at 640 px, 1 FPS",
        o.threads, o.pattern
    )
    .map_err(|e| e.to_string())?;
    ask_latency(o, out)?;
    // Double until it fails, then bisect between the last pass and the fail.
    let (mut good, mut bad) = (0, None);
    let mut n = 1;
    while n <= o.max_cameras {
        if holds(o, n, out)? {
            good = n;
            n *= 2;
        } else {
            bad = Some(n);
            break;
        }
    }
    if let Some(mut bad) = bad {
        while bad - good > 1 {
            let mid = (good + bad) / 2;
            if holds(o, mid, out)? {
                good = mid;
            } else {
                bad = mid;
            }
        }
    }
    writeln!(out, "cameras_sustained: {good}").map_err(|e| e.to_string())?;
    Ok(())
}
