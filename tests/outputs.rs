//! `[[output]]` for real: the daemon POSTs events to a webhook receiver on
//! loopback (a plain HTTP server in this test), signed with HMAC-SHA256;
//! with the receiver down it retries, drops the oldest beyond its queue
//! bound (counted in /metrics), and delivers the rest once it is back.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use common::daemon::Daemon;
use common::{TempDir, wait_until};
use hmac::{Hmac, Mac};

struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver: answers 200 to every POST and keeps what it got.
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(listener: TcpListener, received: Arc<Mutex<Vec<Received>>>) -> Receiver {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            if let Some(r) = read_request(conn) {
                                received.lock().unwrap().push(r);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Receiver {
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(conn: TcpStream) -> Option<Received> {
    conn.set_nonblocking(false).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let length: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut conn = conn;
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    Some(Received {
        path,
        headers,
        body,
    })
}

/// `[model]` for a test daemon: these tests are about where events go.
fn models() -> String {
    common::config::random_model()
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn metric(d: &Daemon, name: &str) -> f64 {
    let text = String::from_utf8(d.get("/metrics").body).unwrap();
    let prefix = format!("{name}{{output=\"hook\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{prefix} not in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

fn ask(d: &Daemon) -> i64 {
    let r = d.post(
        "/v1/ask",
        r#"{"camera": "yard", "question": "Is there a ball?", "window": "1 frame"}"#,
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["event_id"].as_i64().expect("the ask is stored")
}

#[test]
fn webhook_signs_retries_bounds_its_queue_and_delivers_once_back() {
    let dir = TempDir::new("webhook");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let receiver = Receiver::start(listener, Arc::clone(&received));
    let config = format!(
        "[daemon]\nsummary_interval = \"1h\"\n\
         {models}\
         [[camera]]\nname = \"yard\"\nsource = \"test:ball\"\nfps = 2\nwidth = 160\n\
         [[output]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"http://127.0.0.1:{port}/hooks/vigil\"\n\
         secret = \"s3cret\"\nevents = [\"ask\"]\nqueue = 2\nretry_max = \"1s\"\ntimeout = \"2s\"\n\
         snapshot_base = \"http://box.example:7878/\"\n\
         headers = {{ Authorization = \"Bearer t0ken\" }}\n",
        models = models(),
    );
    let path = dir.path().join("vigil.toml");
    std::fs::write(&path, config).unwrap();
    let mut d = Daemon::start(&dir, &path, None);
    d.wait_ready(Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(10), || {
        d.get("/v1/cameras/yard/snapshot.jpg").status == 200
    }));

    // Up: one ask, one signed POST.
    let first = ask(&d);
    assert!(
        wait_until(Duration::from_secs(10), || receiver.count() == 1),
        "{}",
        d.log_text()
    );
    {
        let got = received.lock().unwrap();
        let r = &got[0];
        assert_eq!(r.path, "/hooks/vigil");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["authorization"], "Bearer t0ken");
        assert_eq!(r.headers["x-vigil-event"], "ask");
        assert_eq!(r.headers["x-vigil-event-id"], first.to_string());
        assert_eq!(
            r.headers["x-vigil-signature-256"],
            format!("sha256={}", hmac_hex(b"s3cret", &r.body))
        );
        assert_ne!(
            r.headers["x-vigil-signature-256"],
            format!("sha256={}", hmac_hex(b"wrong", &r.body))
        );
        let j = r.json();
        assert_eq!(j["output"], "hook");
        assert_eq!(j["event"]["id"], first);
        assert_eq!(j["event"]["kind"], "ask");
        assert_eq!(j["event"]["camera"], "yard");
        assert!(
            j["event"]["answer"] == "yes" || j["event"]["answer"] == "no",
            "{j}"
        );
        assert_eq!(j["snapshot"], format!("/v1/events/{first}/snapshot.jpg"));
        assert_eq!(
            j["snapshot_url"],
            format!("http://box.example:7878/v1/events/{first}/snapshot.jpg")
        );
    }
    // Counted once the daemon has read the receiver's answer.
    assert!(wait_until(Duration::from_secs(5), || metric(
        &d,
        "vigil_output_delivered_total"
    ) == 1.0));

    // Down: four asks. The first is retried; the queue (2) holds the
    // newest two; the second is dropped to make room.
    drop(receiver);
    let down: Vec<i64> = (0..4).map(|_| ask(&d)).collect();
    assert!(
        wait_until(Duration::from_secs(10), || metric(
            &d,
            "vigil_output_failures_total"
        ) >= 2.0),
        "{}",
        d.log_text()
    );
    // The intake thread takes each event off the broadcast a moment after
    // its ask returned: wait for it rather than race it.
    assert!(
        wait_until(Duration::from_secs(5), || metric(
            &d,
            "vigil_output_dropped_total"
        ) >= 1.0),
        "nothing dropped"
    );
    assert_eq!(metric(&d, "vigil_output_dropped_total"), 1.0);
    assert!(wait_until(Duration::from_secs(5), || metric(
        &d,
        "vigil_output_queued"
    ) == 3.0));
    assert!(
        d.log_has(&["webhook delivery failed", "output=hook"]),
        "{}",
        d.log_text()
    );
    assert!(d.wait_log(
        &["webhook queue full: dropped the oldest event"],
        Duration::from_secs(5)
    ));

    // Back on the same port: everything still queued arrives, in order.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let receiver = Receiver::start(listener, Arc::clone(&received));
    assert!(
        wait_until(Duration::from_secs(15), || receiver.count() == 4),
        "{} received\n{}",
        receiver.count(),
        d.log_text()
    );
    let ids: Vec<i64> = received
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.json()["event"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![first, down[0], down[2], down[3]]);
    assert!(wait_until(Duration::from_secs(5), || metric(
        &d,
        "vigil_output_delivered_total"
    ) == 4.0));
    assert!(wait_until(Duration::from_secs(5), || metric(
        &d,
        "vigil_output_queued"
    ) == 0.0));
    // Nothing more: the webhook's queue is empty and the dropped event is
    // counted as dropped, so it cannot be sent late.
    assert_eq!(metric(&d, "vigil_output_dropped_total"), 1.0);
    assert_eq!(receiver.count(), 4);
    assert!(d.wait_log(
        &["webhook delivered after retrying"],
        Duration::from_secs(5)
    ));
}

/// Under systemd (stderr is the journal stream named by `JOURNAL_STREAM`)
/// each log event goes to journald's native socket, an alert's with its
/// CAMERA=, QUESTION=, ANSWER= and EVENT_ID= fields. A datagram socket in
/// the test stands in for journald (`VIGIL_JOURNAL_SOCKET`).
#[test]
fn alert_events_reach_the_journal_with_their_fields() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixDatagram;

    let dir = TempDir::new("journal");
    let journal_path = dir.path().join("journal.sock");
    let journal = UnixDatagram::bind(&journal_path).unwrap();
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stderr_path = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    let config = format!(
        "[daemon]\nsummary_interval = \"1h\"\n\
         {models}\
         [[camera]]\nname = \"yard\"\nsource = \"test:ball\"\nfps = 2\nwidth = 160\n\
         [[question]]\nname = \"busy\"\ncamera = \"yard\"\nask = \"How many balls are there?\"\n\
         answer = \"count\"\nevery = \"1s\"\nwindow = \"1 frame\"\nalert_when = \"count >= 0\"\n",
        models = models(),
    );
    let config_path = dir.path().join("vigil.toml");
    std::fs::write(&config_path, config).unwrap();
    let socket = dir.path().join("vigil.sock");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["run", "--config"])
        .arg(&config_path)
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("VIGIL_JOURNAL_SOCKET", &journal_path)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("VIGIL_LOG")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);

    let mut fields = HashMap::new();
    let mut seen = Vec::new();
    let found = wait_until(Duration::from_secs(90), || {
        let mut buf = vec![0u8; 65536];
        let Ok(n) = journal.recv(&mut buf) else {
            return false;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let f: HashMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        seen.push(text);
        if f.get("EVENT").map(String::as_str) == Some("alert") {
            fields = f;
            true
        } else {
            false
        }
    });
    assert!(
        found,
        "no alert in the journal; got:\n{}",
        seen.join("---\n")
    );
    assert_eq!(fields["CAMERA"], "yard");
    assert_eq!(fields["QUESTION"], "busy");
    assert!(fields["ANSWER"].parse::<u32>().is_ok(), "{fields:?}");
    assert_eq!(fields["PRIORITY"], "6");
    assert_eq!(fields["SYSLOG_IDENTIFIER"], "vigil");
    assert!(
        fields["MESSAGE"].starts_with("standing question event"),
        "{fields:?}"
    );
    // EVENT_ID is the stored event's id.
    let id: i64 = fields["EVENT_ID"].parse().unwrap();
    let events = common::daemon::request(&socket, "GET", "/v1/events?question=busy", None).json();
    let event = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("event {id} is not in the store: {events}"));
    assert_eq!(event["kind"], "alert");
    assert_eq!(event["camera"], "yard");
    // Other lines went there too (start-up), and none to stderr.
    assert!(
        seen.iter().any(|m| m.contains("MESSAGE=vigil started")),
        "{}",
        seen.join("---\n")
    );
    let stderr_text = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        !stderr_text.contains("standing question event"),
        "{stderr_text}"
    );
}

/// A real Mosquitto on loopback (Debian's `mosquitto`; `make setup`
/// installs it), without persistence: a restart loses every retained
/// message, so whatever is retained afterwards was republished.
struct Broker {
    child: std::process::Child,
}

impl Broker {
    /// A plain listener on `port`.
    fn start(dir: &TempDir, port: u16) -> Broker {
        Broker::with_config(
            dir,
            &format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
            &[port],
        )
    }

    /// mosquitto with `config`, once every one of `ports` accepts.
    fn with_config(dir: &TempDir, config: &str, ports: &[u16]) -> Broker {
        let conf = dir.path().join("mosquitto.conf");
        // `user root`: started as root, mosquitto would otherwise switch to
        // its own user and fail to read a key in our 0700 folder (ignored
        // when the tests do not run as root).
        std::fs::write(&conf, format!("user root\n{config}")).unwrap();
        let child = std::process::Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto is not installed: apt-get install mosquitto (make setup does)");
        let broker = Broker { child };
        assert!(
            wait_until(Duration::from_secs(10), || ports
                .iter()
                .all(|&p| TcpStream::connect(("127.0.0.1", p)).is_ok())),
            "mosquitto did not listen on {ports:?}"
        );
        broker
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Debug)]
struct Message {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
}

impl Message {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Subscribes to everything, re-subscribing on every (re)connection.
struct Listener {
    client: rumqttc::Client,
    messages: Arc<Mutex<Vec<Message>>>,
}

impl Listener {
    fn start(port: u16, id: &str) -> Listener {
        let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        options.set_max_packet_size(8 << 20, 8 << 20);
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut connection) = rumqttc::Client::new(options, 100);
        let messages = Arc::new(Mutex::new(Vec::new()));
        {
            let (client, messages) = (client.clone(), Arc::clone(&messages));
            std::thread::spawn(move || {
                for event in connection.iter() {
                    match event {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                            let _ = client.try_subscribe("#", rumqttc::QoS::AtLeastOnce);
                        }
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                            messages.lock().unwrap().push(Message {
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                                retain: p.retain,
                            });
                        }
                        Ok(_) => {}
                        Err(rumqttc::ConnectionError::RequestsDone) => return,
                        Err(_) => std::thread::sleep(Duration::from_millis(200)),
                    }
                }
            });
        }
        Listener { client, messages }
    }

    fn last(&self, topic: &str) -> Option<Message> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m.topic == topic)
            .cloned()
    }

    fn wait(&self, topic: &str, limit: Duration, ok: impl Fn(&Message) -> bool) -> Message {
        let mut found = None;
        wait_until(limit, || {
            found = self.last(topic).filter(&ok);
            found.is_some()
        });
        found.unwrap_or_else(|| {
            let topics: Vec<String> = self
                .messages
                .lock()
                .unwrap()
                .iter()
                .map(|m| m.topic.clone())
                .collect();
            panic!("nothing acceptable on {topic}; got topics {topics:?}")
        })
    }

    fn clear(&self) {
        self.messages.lock().unwrap().clear();
    }
}

fn json_of(m: &Message) -> serde_json::Value {
    serde_json::from_slice(&m.payload).unwrap_or_else(|e| panic!("{}: {e}: {}", m.topic, m.text()))
}

#[test]
fn mqtt_publishes_discovery_states_events_and_answers_and_survives_a_broker_restart() {
    let dir = TempDir::new("mqtt");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = Broker::start(&dir, port);
    let listener = Listener::start(port, "listener-1");
    let config = format!(
        "[daemon]\nsummary_interval = \"1h\"\n\
         {models}\
         [[camera]]\nname = \"yard\"\nsource = \"test:ball\"\nfps = 2\nwidth = 160\n\
         [[question]]\nname = \"ball\"\ncamera = \"yard\"\nask = \"Is there a ball?\"\nanswer = \"yes-no\"\nevery = \"1s\"\nwindow = \"1 frame\"\n\
         [[question]]\nname = \"balls\"\ncamera = \"yard\"\nask = \"How many balls are there?\"\nanswer = \"count\"\nevery = \"1s\"\nwindow = \"1 frame\"\n\
         [[output]]\ntype = \"mqtt\"\nname = \"ha\"\nbroker = \"mqtt://127.0.0.1:{port}\"\n\
         client_id = \"vigil-box1\"\ntopic_prefix = \"vigil-test\"\ncommands = true\n",
        models = models(),
    );
    let path = dir.path().join("vigil.toml");
    std::fs::write(&path, &config).unwrap();
    let mut d = Daemon::start(&dir, &path, None);
    d.wait_ready(Duration::from_secs(60));
    let limit = Duration::from_secs(30);

    // Home Assistant discovery: one device, an entity per question and camera.
    let check_discovery = |l: &Listener| {
        let yes_no = json_of(&l.wait(
            "homeassistant/binary_sensor/vigil-box1/yard_ball/config",
            limit,
            |_| true,
        ));
        assert_eq!(yes_no["state_topic"], "vigil-test/yard/ball/state");
        assert_eq!(yes_no["payload_on"], "yes");
        assert_eq!(yes_no["payload_off"], "no");
        assert_eq!(yes_no["availability_topic"], "vigil-test/availability");
        assert_eq!(yes_no["unique_id"], "vigil-box1_yard_ball");
        assert_eq!(yes_no["device"]["identifiers"][0], "vigil-box1");
        let count = json_of(&l.wait(
            "homeassistant/sensor/vigil-box1/yard_balls/config",
            limit,
            |_| true,
        ));
        assert_eq!(count["state_topic"], "vigil-test/yard/balls/state");
        assert_eq!(count["state_class"], "measurement");
        let image = json_of(
            &l.wait("homeassistant/image/vigil-box1/yard/config", limit, |_| {
                true
            }),
        );
        assert_eq!(image["image_topic"], "vigil-test/yard/snapshot");
        assert_eq!(image["content_type"], "image/jpeg");
        l.wait("vigil-test/availability", limit, |m| m.text() == "online");
        // State per question, and the camera's snapshot.
        l.wait("vigil-test/yard/ball/state", limit, |m| {
            m.text() == "yes" || m.text() == "no"
        });
        l.wait("vigil-test/yard/balls/state", limit, |m| {
            m.text().parse::<u32>().is_ok()
        });
        l.wait("vigil-test/yard/snapshot", limit, |m| {
            m.payload.starts_with(b"\xff\xd8")
        });
    };
    // What a newcomer (Home Assistant starting later) gets: all retained.
    let check_retained = |id: &str| {
        let late = Listener::start(port, id);
        for topic in [
            "homeassistant/binary_sensor/vigil-box1/yard_ball/config",
            "homeassistant/sensor/vigil-box1/yard_balls/config",
            "homeassistant/image/vigil-box1/yard/config",
            "vigil-test/availability",
            "vigil-test/yard/ball/state",
            "vigil-test/yard/balls/state",
            "vigil-test/yard/snapshot",
        ] {
            late.wait(topic, limit, |m| m.retain);
        }
        assert!(
            late.last("vigil-test/events").is_none_or(|m| !m.retain),
            "events are not retained"
        );
    };
    check_discovery(&listener);
    check_retained("late-1");
    // Each answer change is also an event.
    let event = json_of(&listener.wait("vigil-test/events", limit, |m| !m.retain));
    assert_eq!(event["event"]["kind"], "answer_changed");
    assert_eq!(event["event"]["camera"], "yard");

    // A question over MQTT, answered on .../ask/answer.
    listener
        .client
        .publish(
            "vigil-test/yard/ask/set",
            rumqttc::QoS::AtLeastOnce,
            false,
            "Is there a ball?",
        )
        .unwrap();
    let answer = json_of(&listener.wait(
        "vigil-test/yard/ask/answer",
        Duration::from_secs(60),
        |_| true,
    ));
    assert!(
        answer["answer"] == "yes" || answer["answer"] == "no",
        "{answer}"
    );
    assert_eq!(answer["camera"], "yard");
    listener
        .client
        .publish(
            "vigil-test/gate/ask/set",
            rumqttc::QoS::AtLeastOnce,
            false,
            "Is the gate open?",
        )
        .unwrap();
    let refused = json_of(&listener.wait("vigil-test/gate/ask/answer", limit, |_| true));
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("no camera named \"gate\""),
        "{refused}"
    );

    // The broker restarts and forgets everything retained: vigil reconnects
    // and announces availability, discovery and state again.
    drop(broker);
    assert!(
        d.wait_log(
            &["mqtt connection lost", "output=ha"],
            Duration::from_secs(15)
        ),
        "{}",
        d.log_text()
    );
    listener.clear();
    let broker = Broker::start(&dir, port);
    check_discovery(&listener);
    check_retained("late-2");
    assert!(d.log_has(&["mqtt connected"]));

    // A reload that swaps the count question for another yes/no one: the
    // old entity is withdrawn (empty retained config), its state cleared,
    // the new one announced.
    listener.clear();
    let swapped = config.replace(
        "name = \"balls\"\ncamera = \"yard\"\nask = \"How many balls are there?\"\nanswer = \"count\"",
        "name = \"person\"\ncamera = \"yard\"\nask = \"Is anyone there?\"\nanswer = \"yes-no\"",
    );
    assert_ne!(swapped, config);
    std::fs::write(&path, swapped).unwrap();
    d.signal(libc::SIGHUP);
    listener.wait(
        "homeassistant/sensor/vigil-box1/yard_balls/config",
        limit,
        |m| m.payload.is_empty(),
    );
    listener.wait("vigil-test/yard/balls/state", limit, |m| {
        m.payload.is_empty()
    });
    let person = json_of(&listener.wait(
        "homeassistant/binary_sensor/vigil-box1/yard_person/config",
        limit,
        |_| true,
    ));
    assert_eq!(person["state_topic"], "vigil-test/yard/person/state");
    listener.wait("vigil-test/yard/person/state", limit, |m| {
        m.text() == "yes" || m.text() == "no"
    });

    // Killed without a goodbye: the broker publishes the last will.
    listener.clear();
    let _ = d.child.kill();
    let _ = d.child.wait();
    listener.wait("vigil-test/availability", Duration::from_secs(10), |m| {
        m.text() == "offline"
    });
    drop(broker);
}

/// mqtts:// with the broker's CA in `ca_file`: vigil connects over TLS and
/// is announced; without the CA (system roots only) the certificate is
/// refused and the failure logged.
#[test]
fn mqtt_over_tls_checks_the_broker_certificate() {
    let dir = TempDir::new("mqtts");
    let p = |name: &str| dir.path().join(name);
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // A throwaway CA and a server certificate for localhost.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=vigil test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);

    let free_port = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (plain, tls) = (free_port(), free_port());
    let _broker = Broker::with_config(
        &dir,
        &format!(
            "per_listener_settings false\nallow_anonymous true\npersistence false\n\
             listener {plain} 127.0.0.1\n\
             listener {tls} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            p("ca.pem").display(),
            p("server.pem").display(),
            p("server.key").display()
        ),
        &[plain, tls],
    );
    let listener = Listener::start(plain, "tls-listener");

    let run = |name: &str, ca: Option<&std::path::Path>| {
        let ca_line = ca
            .map(|c| format!("ca_file = \"{}\"\n", c.display()))
            .unwrap_or_default();
        let config = format!(
            "[daemon]\nsummary_interval = \"1h\"\n\
             {models}\
             [[camera]]\nname = \"yard\"\nsource = \"test:ball\"\nfps = 2\nwidth = 160\n\
             [[output]]\ntype = \"mqtt\"\nname = \"secure\"\nbroker = \"mqtts://localhost:{tls}\"\n\
             client_id = \"vigil-{name}\"\ntopic_prefix = \"{name}\"\ndiscovery = false\n{ca_line}",
            models = models(),
        );
        let sub = TempDir::new(name);
        let path = sub.path().join("vigil.toml");
        std::fs::write(&path, config).unwrap();
        let mut d = Daemon::start(&sub, &path, None);
        d.wait_ready(Duration::from_secs(60));
        (sub, d)
    };

    let (_trusted_dir, trusted) = run("trusted", Some(&p("ca.pem")));
    listener.wait("trusted/availability", Duration::from_secs(20), |m| {
        m.text() == "online"
    });
    assert!(
        trusted.log_has(&["mqtt connected", "output=secure"]),
        "{}",
        trusted.log_text()
    );

    let (_untrusted_dir, untrusted) = run("untrusted", None);
    assert!(
        untrusted.wait_log(
            &["mqtt connection failed", "output=secure"],
            Duration::from_secs(20)
        ),
        "{}",
        untrusted.log_text()
    );
    assert!(
        untrusted.log_text().to_lowercase().contains("certificate"),
        "{}",
        untrusted.log_text()
    );
    assert!(listener.last("untrusted/availability").is_none());
}
