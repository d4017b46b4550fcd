//! The daemon as a service: `vigil run` with real models, cameras, SQLite
//! and its Unix socket, driven over HTTP and with the `vigil` CLI.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, raw_request};
use common::{TempDir, wait_until};

/// `[daemon]` and `[model]` for a test daemon (paths absolute).
fn header(extra_daemon: &str) -> String {
    format!(
        "[daemon]\nsummary_interval = \"1h\"\nlog_level = \"info\"\n{extra_daemon}\n{}",
        common::config::random_model()
    )
}

fn camera(name: &str, source: &str) -> String {
    format!(
        "[[camera]]\nname = \"{name}\"\nsource = \"{source}\"\nfps = 1\nwidth = 320\nbuffer = \"30s\"\n"
    )
}

fn question(
    name: &str,
    camera: &str,
    ask: &str,
    answer: &str,
    every: &str,
    window: &str,
) -> String {
    format!(
        "[[question]]\nname = \"{name}\"\ncamera = \"{camera}\"\nask = \"{ask}\"\nanswer = {answer}\nevery = \"{every}\"\nwindow = \"{window}\"\n"
    )
}

fn start(dir: &TempDir, config: &str) -> Daemon {
    let path = dir.path().join("vigil.toml");
    std::fs::write(&path, config).unwrap();
    let mut d = Daemon::start(dir, &path, None);
    d.wait_ready(Duration::from_secs(60));
    d
}

/// Waits until `camera` has at least `n` frames in its ring.
fn wait_frames(d: &Daemon, camera: &str, n: u64) {
    let ok = wait_until(Duration::from_secs(30), || {
        d.get("/v1/cameras")
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == camera && c["ring"]["frames"].as_u64().unwrap_or(0) >= n)
    });
    assert!(ok, "camera {camera} has no {n} frames:\n{}", d.log_text());
}

fn question_status(d: &Daemon, name: &str) -> serde_json::Value {
    d.get("/v1/questions")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no question {name}"))
}

fn photo(name: &str) -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/photos")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make setup`",
        path.display()
    );
    path
}

fn vigil(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .output()
        .unwrap()
}

/// The few-shot question's examples: two real photos with their answers.
fn cat_examples() -> String {
    format!(
        "examples = [{{ image = \"{}\", answer = \"yes\" }}, {{ image = \"{}\", answer = \"no\" }}]\n",
        photo("chelsea.png").display(),
        photo("coffee.png").display()
    )
}

/// "Is there a ball?" of the camera "moving", every 2 s.
fn ball_question() -> String {
    question(
        "ball",
        "moving",
        "Is there a ball?",
        "\"yes-no\"",
        "2s",
        "1 frame",
    )
}

/// Reads the event stream (SSE) from its start on a thread; each line
/// arrives on the returned channel.
fn event_stream(d: &Daemon) -> std::sync::mpsc::Receiver<String> {
    let mut sse = UnixStream::connect(&d.socket).unwrap();
    sse.write_all(b"GET /v1/events/stream HTTP/1.1\r\nHost: v\r\n\r\n")
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(sse).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits until each of `questions` has run at least once.
fn wait_runs(d: &Daemon, questions: &[&str]) {
    assert!(
        wait_until(Duration::from_secs(40), || {
            questions
                .iter()
                .all(|q| question_status(d, q)["runs"].as_u64().unwrap() >= 1)
        }),
        "{:#}\n{}",
        d.get("/v1/questions").json(),
        d.log_text()
    );
}

#[test]
fn ad_hoc_asks_answer_with_scores_a_stored_snapshot_and_examples() {
    let dir = TempDir::new("api-ask");
    let config = [header(""), camera("moving", "test:ball")].concat();
    let d = start(&dir, &config);
    // The socket is for owner and group only.
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode {mode:o}");

    wait_frames(&d, "moving", 2);
    // A yes/no question through the socket.
    let r = d.post(
        "/v1/ask",
        r#"{"camera": "moving", "question": "Is there a ball?", "window": "2 frames"}"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let a = r.json();
    assert!(a["answer"] == "yes" || a["answer"] == "no", "{a}");
    let scores = a["scores"].as_array().unwrap();
    assert_eq!(scores.len(), 2);
    let total: f64 = scores.iter().map(|s| s[1].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-6, "scores sum to {total}");
    assert_eq!(a["frames_used"], 2);
    assert!(a["latency_ms"].as_f64().unwrap() > 0.0);
    let ask_event = a["event_id"].as_i64().expect("the ask is stored");
    // Its snapshot is a JPEG.
    let snap = d.get(&format!("/v1/events/{ask_event}/snapshot.jpg"));
    assert_eq!(snap.status, 200);
    assert_eq!(&snap.body[..2], b"\xff\xd8");
    // Choices answer from their candidates.
    let r = d.post(
        "/v1/ask",
        r#"{"camera": "moving", "question": "What is it?", "answer": {"choices": ["a ball", "a car", "nothing"]}}"#,
    );
    assert_eq!(r.status, 200);
    assert!(["a ball", "a car", "nothing"].contains(&r.json()["answer"].as_str().unwrap()));
    // The camera's live snapshot.
    let snap = d.get("/v1/cameras/moving/snapshot.jpg");
    assert_eq!(snap.status, 200);
    assert_eq!(snap.header("content-type").as_deref(), Some("image/jpeg"));
    // With examples; an example that is not there is the asker's error.
    let body = format!(
        r#"{{"camera": "moving", "question": "Is there a cat?", "examples": [{{"image": "{}", "answer": "yes"}}]}}"#,
        photo("chelsea.png").display()
    );
    let r = d.post("/v1/ask", &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let bad_example = r#"{"camera": "moving", "question": "Is there a cat?", "examples": [{"image": "/nonexistent.jpg", "answer": "yes"}]}"#;
    let r = d.post("/v1/ask", bad_example);
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent.jpg"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

#[test]
fn standing_questions_answer_share_clips_and_encode_their_examples_once() {
    let dir = TempDir::new("api-standing");
    let clip = dir.path().join("clip.mp4");
    common::make_h264_mp4(&clip, 4);
    let config = [
        header(""),
        camera("moving", "test:ball"),
        camera("file", &clip.display().to_string()) + "loop = true\n",
        ball_question(),
        // Same camera and window, due together: they share the clip. The
        // camera samples every 5 s, so both see the same newest frame.
        camera("slow", "test:ball").replace("fps = 1\n", "fps = 0.2\n"),
        question(
            "round",
            "slow",
            "Is it round?",
            "\"yes-no\"",
            "2s",
            "1 frame",
        ),
        question(
            "square",
            "slow",
            "Is it square?",
            "\"yes-no\"",
            "2s",
            "1 frame",
        ),
        question(
            "cat",
            "moving",
            "Is there a cat?",
            "\"yes-no\"",
            "2s",
            "1 frame",
        ) + &cat_examples(),
        question(
            "count",
            "file",
            "How many things are there?",
            "\"count\"",
            "2s",
            "3s",
        ),
    ]
    .concat();
    let d = start(&dir, &config);
    wait_runs(&d, &["ball", "count", "cat"]);
    let cat = question_status(&d, "cat");
    assert_eq!(cat["examples"], 2, "{cat:#}");
    assert!(cat["last_error"].is_null(), "{cat:#}");
    assert!(
        d.log_has(&["few-shot prefix encoded", "question=cat", "examples=2"]),
        "{}",
        d.log_text()
    );
    assert!(
        wait_until(
            Duration::from_secs(20),
            || d.get("/v1/status").json()["worker"]["clips_shared"]
                .as_u64()
                .unwrap()
                >= 1
        ),
        "round and square share their clips"
    );
    let count = question_status(&d, "count");
    let n: u32 = count["last_answer"]["text"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(n <= vigil::watch::MAX_COUNT);
    // The moving ball, asked every 2 s at 1 FPS, sees a new picture at its
    // ticks: they run. (A tick that ran late can be followed closely by an
    // on-time one on the same newest frame, which is rightly gated; rare,
    // so bounded.)
    assert!(wait_until(Duration::from_secs(30), || {
        question_status(&d, "ball")["runs"].as_u64().unwrap() >= 3
    }));
    let ball = question_status(&d, "ball");
    let (runs, gated) = (
        ball["runs"].as_u64().unwrap(),
        ball["gated"].as_u64().unwrap(),
    );
    assert!(runs >= 3 && gated * 3 <= runs, "{ball:#}");
}

/// The still pattern runs (once, or twice when its first tick saw one
/// frame of its two-frame window) and then keeps its answer: three more
/// ticks, no more runs, and one event (its first answer).
#[test]
fn change_gating_keeps_the_answer_of_a_still_scene() {
    let dir = TempDir::new("api-gating");
    let config = [
        header(""),
        camera("still", "test:checkers-8"),
        question(
            "static",
            "still",
            "Is anything moving?",
            "\"yes-no\"",
            "1s",
            "2 frames",
        ),
    ]
    .concat();
    let d = start(&dir, &config);
    let gated = |d: &Daemon| question_status(d, "static")["gated"].as_u64().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || gated(&d) >= 1),
        "{:#}",
        question_status(&d, "static")
    );
    let runs = question_status(&d, "static")["runs"].as_u64().unwrap();
    assert!(
        (1..=2).contains(&runs),
        "{:#}",
        question_status(&d, "static")
    );
    let g = gated(&d);
    assert!(wait_until(Duration::from_secs(30), || gated(&d) >= g + 3));
    let still = question_status(&d, "static");
    assert_eq!(still["runs"].as_u64().unwrap(), runs, "{still:#}");
    let status = d.get("/v1/status").json();
    assert!(
        status["worker"]["runs_gated"].as_u64().unwrap() >= 3,
        "{status:#}"
    );
    let events = d.get("/v1/events?question=static").json();
    let list = events.as_array().unwrap();
    assert_eq!(list.len(), 1, "one answer, one change event: {events:#}");
    assert_eq!(list[0]["kind"], "answer_changed");
    assert_eq!(list[0]["camera"], "still");
}

#[test]
fn events_reach_http_the_cli_and_the_event_stream() {
    let dir = TempDir::new("api-events");
    let config = [header(""), camera("moving", "test:ball"), ball_question()].concat();
    let d = start(&dir, &config);
    // Live events from the start.
    let sse = event_stream(&d);
    wait_frames(&d, "moving", 1);
    let r = d.post(
        "/v1/ask",
        r#"{"camera": "moving", "question": "Is there a ball?"}"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let ask_event = r.json()["event_id"].as_i64().expect("the ask is stored");
    wait_runs(&d, &["ball"]);

    // Listed over HTTP, filtered by question.
    let events = d.get("/v1/events?question=ball").json();
    let list = events.as_array().unwrap();
    assert!(!list.is_empty(), "{events:#}");
    assert_eq!(list[0]["camera"], "moving");
    let ball_event = list[0]["id"].as_i64().unwrap();
    // And by the CLI.
    let socket = d.socket.to_str().unwrap().to_string();
    let out = vigil(&["events", "--socket", &socket, "--limit", "50"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["ball", "moving", "Is there a ball?"] {
        assert!(
            text.contains(needle),
            "`vigil events` lacks {needle}:\n{text}"
        );
    }
    // `vigil events --follow` prints stored events, then live ones.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "events",
            "--follow",
            "--question",
            "ball",
            "--socket",
            &socket,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.contains("ball") && first.contains("moving"),
        "{first}"
    );
    follow.kill().unwrap();
    follow.wait().unwrap();

    // The event stream delivered the same events with their ids.
    let mut sse_ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match sse.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(id) = line.strip_prefix("id: ") {
                    sse_ids.push(id.parse::<i64>().unwrap());
                }
            }
            Err(_) => {
                if sse_ids.contains(&ball_event) {
                    break;
                }
            }
        }
    }
    assert!(sse_ids.contains(&ask_event), "SSE ids {sse_ids:?}");
    assert!(sse_ids.contains(&ball_event), "SSE ids {sse_ids:?}");

    // The CLI's other commands.
    let out = vigil(&[
        "ask",
        "--socket",
        &socket,
        "--camera",
        "moving",
        "Is there a ball?",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.starts_with("yes\n") || answer.starts_with("no\n"),
        "{answer}"
    );
    let out = vigil(&["status", "--socket", &socket, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["cameras"].as_array().unwrap().len(), 1);
    let out = vigil(&["questions", "--socket", &socket]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ball"));
}

#[test]
fn bad_requests_get_their_status_and_a_json_error_and_the_daemon_stops_cleanly() {
    let dir = TempDir::new("api-bad");
    // No frames ever on "dark": nothing listens on port 1.
    let config = [
        header(""),
        camera("moving", "test:ball"),
        camera("dark", "rtsp://127.0.0.1:1/none") + "stall_timeout = \"30s\"\n",
    ]
    .concat();
    let mut d = start(&dir, &config);
    wait_frames(&d, "moving", 1);
    let expect = |r: common::daemon::HttpReply, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            r.json()["error"]["code"],
            code,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    };
    expect(d.post("/v1/ask", "{not json"), 400, "bad_request");
    expect(
        d.post("/v1/ask", r#"{"camera": "moving", "question": 1}"#),
        400,
        "bad_request",
    );
    expect(
        d.post("/v1/ask", r#"{"camera": "moving"}"#),
        400,
        "bad_request",
    );
    expect(
        d.post(
            "/v1/ask",
            r#"{"camera": "moving", "question": "?", "window": "forever"}"#,
        ),
        400,
        "bad_request",
    );
    expect(
        d.post("/v1/ask", r#"{"camera": "nope", "question": "Is it?"}"#),
        404,
        "unknown_camera",
    );
    expect(
        d.post("/v1/ask", r#"{"camera": "dark", "question": "Is it?"}"#),
        409,
        "no_frames",
    );
    expect(
        d.get("/v1/cameras/nope/snapshot.jpg"),
        404,
        "unknown_camera",
    );
    expect(d.get("/v1/nothing"), 404, "not_found");
    expect(d.get("/v1/ask"), 405, "method_not_allowed");
    let mut invalid_utf8 = b"POST /v1/ask HTTP/1.1\r\nContent-Length: 4\r\n\r\n".to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe\xfd\xfc");
    expect(raw_request(&d.socket, &invalid_utf8), 400, "bad_request");
    let huge = format!(
        "POST /v1/ask HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
        1 << 20
    );
    expect(
        raw_request(&d.socket, huge.as_bytes()),
        413,
        "body_too_large",
    );
    expect(raw_request(&d.socket, b"BLAH\r\n\r\n"), 400, "malformed");
    // A slow client: half a head, then nothing. It gets 408 after the
    // request deadline, and is not served in the meantime.
    let started = Instant::now();
    let mut slow = UnixStream::connect(&d.socket).unwrap();
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nHost:").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut raw = Vec::new();
    let _ = slow.read_to_end(&mut raw);
    expect(common::daemon::parse_reply(&raw), 408, "timeout");
    assert!(started.elapsed() >= Duration::from_secs(9));
    // Still healthy, and every refusal counted.
    assert_eq!(d.get("/v1/status").status, 200);
    let metrics = String::from_utf8(d.get("/metrics").body).unwrap();
    for needle in [
        "vigil_camera_frames_total{camera=\"moving\"}",
        "vigil_lm_seconds_bucket{le=\"+Inf\"}",
        "vigil_standing_gated_total",
        "vigil_api_bad_requests_total",
    ] {
        assert!(metrics.contains(needle), "/metrics lacks {needle}");
    }
    let api = &d.get("/v1/status").json()["api"];
    assert!(api["bad_requests"].as_u64().unwrap() >= 12, "{api}");

    let status = d.terminate(Duration::from_secs(8));
    assert!(status.success(), "{status:?}\n{}", d.log_text());
    assert!(!d.socket.exists(), "the socket file is removed on stop");
}

#[test]
fn fifty_clients_at_once_are_answered_or_refused_and_the_daemon_stays_healthy() {
    let dir = TempDir::new("api-overload");
    let config = format!("{}{}", header(""), camera("yard", "test:ball"));
    let d = start(&dir, &config);
    wait_frames(&d, "yard", 1);
    let rss_before = d.rss_kib();
    let socket = d.socket.clone();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let body =
                    format!(r#"{{"camera": "yard", "question": "Is there a ball number {i}?"}}"#);
                common::daemon::request(&socket, "POST", "/v1/ask", Some(&body))
            })
        })
        .collect();
    let replies: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let answered = replies.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = replies
        .iter()
        .filter(|r| r.status == 503 || r.status == 429)
        .collect();
    assert_eq!(
        answered + refused.len(),
        50,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(answered >= 1, "none answered");
    assert!(
        !refused.is_empty(),
        "50 at once cannot all fit a queue of {}",
        vigil::watch::ASK_QUEUE
    );
    for r in &refused {
        assert!(r.header("retry-after").is_some(), "{}", r.head);
        assert_eq!(r.json()["error"]["code"], "busy");
    }
    let status = d.get("/v1/status").json();
    assert_eq!(
        status["worker"]["asks_refused"].as_u64().unwrap() as usize,
        refused.len()
    );
    let rss_after = d.rss_kib();
    assert!(
        rss_after < rss_before + 200 * 1024,
        "memory grew from {rss_before} to {rss_after} KiB"
    );
    // Healthy after: a question is answered again.
    let r = d.post(
        "/v1/ask",
        r#"{"camera": "yard", "question": "Is there a ball?"}"#,
    );
    assert_eq!(r.status, 200);
}

#[test]
fn acknowledged_events_survive_kill_9() {
    let dir = TempDir::new("api-kill");
    let config = format!("{}{}", header(""), camera("yard", "test:ball"));
    let d = start(&dir, &config);
    wait_frames(&d, "yard", 1);
    // A burst of asks from 3 clients; each stored answer's id is its
    // acknowledgement. The daemon is killed mid-burst.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let socket = d.socket.clone();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let acked = std::sync::Arc::clone(&acked);
            let socket = socket.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let Ok(mut s) = UnixStream::connect(&socket) else {
                        break;
                    };
                    let body = r#"{"camera": "yard", "question": "Is there a ball?"}"#;
                    let req = format!(
                        "POST /v1/ask HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(req.as_bytes()).is_err() {
                        break;
                    }
                    let mut raw = Vec::new();
                    let _ = s.read_to_end(&mut raw);
                    if raw.is_empty() {
                        break;
                    }
                    let r = common::daemon::parse_reply(&raw);
                    if r.status == 200
                        && let Some(id) = r.json()["event_id"].as_i64()
                    {
                        acked.lock().unwrap().push(id);
                    }
                }
            })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(60), || acked
        .lock()
        .unwrap()
        .len()
        >= 8));
    let mut d = d;
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 8);

    // The database is intact and holds every acknowledged event.
    let db = dir.path().join("state").join("events.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(conn);
    // A restart on the same state dir (over the stale socket) lists them.
    let d = start(&dir, &config);
    let stored: Vec<i64> = d
        .get("/v1/events?limit=1000")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    for id in &acked {
        assert!(
            stored.contains(id),
            "acknowledged event {id} lost; stored {stored:?}"
        );
    }
}

#[test]
fn socket_security_and_listen_rules() {
    let dir = TempDir::new("api-security");
    let check = |extra: &str| {
        let path = dir.path().join(format!("c{}.toml", extra.len()));
        std::fs::write(&path, format!("[daemon]\n{extra}\n")).unwrap();
        vigil(&["check-config", path.to_str().unwrap()])
    };
    let out = check("listen = \"0.0.0.0:7878\"");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allow_remote"), "{err}");
    assert!(
        check("listen = \"0.0.0.0:7878\"\nallow_remote = true")
            .status
            .success()
    );
    assert!(check("listen = \"127.0.0.1:7878\"").status.success());
    assert_eq!(check("listen = \"here\"").status.code(), Some(2));

    // The CLI says clearly when no daemon listens.
    let out = vigil(&[
        "status",
        "--socket",
        dir.path().join("none.sock").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vigil is not running"), "{err}");

    // A second daemon on a live socket refuses to start, naming it.
    let config = format!("{}{}", header(""), camera("yard", "test:smpte"));
    let first = start(&dir, &config);
    let path = dir.path().join("vigil.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--config", path.to_str().unwrap(), "--socket"])
        .arg(&first.socket)
        .arg("--state-dir")
        .arg(dir.path().join("state2"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already listening"), "{err}");
    assert!(
        Path::new(&first.socket).exists(),
        "the live socket is left alone"
    );
}

#[test]
fn socket_activation_serves_on_the_listener_systemd_passes() {
    use std::os::fd::AsRawFd;
    let dir = TempDir::new("api-activation");
    let config = format!("{}{}", header(""), camera("yard", "test:smpte"));
    let config_path = dir.path().join("vigil.toml");
    std::fs::write(&config_path, config).unwrap();
    let activated = dir.path().join("activated.sock");
    let listener = std::os::unix::net::UnixListener::bind(&activated).unwrap();
    let fd = listener.as_raw_fd();
    // Inheritable, as systemd passes it (std opens sockets close-on-exec);
    // std has no safe way to clear FD_CLOEXEC.
    // SAFETY: fcntl on a descriptor this test owns and keeps open.
    #[allow(unsafe_code)]
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        assert_eq!(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC), 0);
    }
    let configured = dir.path().join("configured.sock");
    // As systemd does: the listener on fd 3, LISTEN_FDS=1, LISTEN_PID = the
    // daemon's pid (exec keeps the shell's).
    let script = format!(
        "exec 3<&{fd}; LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" run --config \"$1\" --socket \"$2\" --state-dir \"$3\""
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_vigil"))
        .arg(&config_path)
        .arg(&configured)
        .arg(dir.path().join("state"))
        .env_remove("NOTIFY_SOCKET")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    drop(listener);
    let up = wait_until(Duration::from_secs(60), || {
        UnixStream::connect(&activated).is_ok()
            && common::daemon::request(&activated, "GET", "/v1/status", None).status == 200
    });
    assert!(up, "no answer on the activated socket");
    assert!(
        !configured.exists(),
        "the configured path is not bound when activated"
    );
    common::daemon::send_signal(child.id(), libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    assert!(
        activated.exists(),
        "a passed socket belongs to systemd: left in place"
    );
}

#[test]
fn sighup_replaces_standing_questions_and_keeps_unchanged_ones() {
    let dir = TempDir::new("api-reload");
    let base = format!("{}{}", header(""), camera("yard", "test:ball"));
    let first = question(
        "ball",
        "yard",
        "Is there a ball?",
        "\"yes-no\"",
        "1s",
        "1 frame",
    );
    let d = start(&dir, &format!("{base}{first}"));
    assert!(wait_until(Duration::from_secs(30), || {
        question_status(&d, "ball")["runs"].as_u64().unwrap() >= 5
    }));
    let runs_before = question_status(&d, "ball")["runs"].as_u64().unwrap();
    let second = question(
        "count",
        "yard",
        "How many balls?",
        "\"count\"",
        "1s",
        "1 frame",
    );
    std::fs::write(
        dir.path().join("vigil.toml"),
        format!("{base}{first}{second}"),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(30), || {
            d.get("/v1/questions").json().as_array().unwrap().len() == 2
                && question_status(&d, "count")["runs"].as_u64().unwrap() >= 1
        }),
        "{}",
        d.log_text()
    );
    // The unchanged question kept its state: its run count went on (a
    // fresh one would be back near zero).
    assert!(question_status(&d, "ball")["runs"].as_u64().unwrap() >= runs_before);
    // Removing a question removes it.
    std::fs::write(dir.path().join("vigil.toml"), format!("{base}{second}")).unwrap();
    d.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || {
        let q = d.get("/v1/questions").json();
        q.as_array().unwrap().len() == 1 && q[0]["name"] == "count"
    }));
}
