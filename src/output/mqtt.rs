//! One MQTT output: a client on its own thread that (re)connects with a
//! last will, and on every connection publishes availability, Home
//! Assistant discovery configs and the retained state of every standing
//! question; an intake thread turns events into state, event and snapshot
//! messages; optionally a command thread answers `<prefix>/<camera>/ask/set`.
//!
//! Messages wait in the client's bounded request queue while the broker is
//! away; when it is full new ones are dropped and counted.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select};
use rumqttc::{Client, Connection, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, Transport};
use serde_json::{Value, json};

use super::stats::OutputStats;
use crate::capture::Backoff;
use crate::config::{AnswerKind, MqttSpec, QuestionSpec, Window};
use crate::store::{EventKind, Store, StoredEvent};
use crate::watch::{AskRequest, Subscription, Watch};

/// Largest message either way: snapshots are JPEGs of a few hundred KiB.
const MAX_PACKET: usize = 4 << 20;
/// Questions from MQTT waiting for the worker, at most.
const COMMAND_QUEUE: usize = 8;
const ASK_TIMEOUT: Duration = Duration::from_secs(60);

/// What the connection thread needs to announce on each (re)connection.
struct Shared {
    spec: MqttSpec,
    client: Client,
    stats: Arc<OutputStats>,
    /// What is announced; replaced on reload.
    questions: Mutex<Vec<QuestionSpec>>,
    cameras: Mutex<Vec<String>>,
    watch: Arc<Watch>,
    store: Arc<Store>,
    /// The newest answer of each standing question, by (camera, question).
    states: Mutex<BTreeMap<(String, String), String>>,
}

pub struct Mqtt {
    pub stats: Arc<OutputStats>,
    shared: Arc<Shared>,
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Mqtt {
    pub fn start(
        spec: MqttSpec,
        events: Subscription<Arc<StoredEvent>>,
        watch: Arc<Watch>,
        store: Arc<Store>,
        questions: Vec<QuestionSpec>,
        cameras: Vec<String>,
    ) -> Result<Mqtt, String> {
        let stats = Arc::new(OutputStats::new(&spec.name, "mqtt"));
        let options = options(&spec)?;
        let (client, connection) = Client::new(options, spec.queue);
        let shared = Arc::new(Shared {
            spec,
            client,
            stats: Arc::clone(&stats),
            questions: Mutex::new(questions),
            cameras: Mutex::new(cameras),
            watch,
            store,
            states: Mutex::new(BTreeMap::new()),
        });
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let (command_tx, command_rx) = bounded(COMMAND_QUEUE);
        let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name)
                .spawn(f)
                .map_err(|e| format!("cannot start a thread: {e}"))
        };
        let name = shared.spec.name.clone();
        let mut threads = Vec::new();
        {
            let (shared, stop) = (Arc::clone(&shared), stop_rx.clone());
            threads.push(spawn(
                format!("mqtt-{name}"),
                Box::new(move || run_connection(&shared, connection, &stop, &command_tx)),
            )?);
        }
        {
            let (shared, stop) = (Arc::clone(&shared), stop_rx.clone());
            threads.push(spawn(
                format!("mqin-{name}"),
                Box::new(move || intake(&shared, &events, &stop)),
            )?);
        }
        if shared.spec.commands {
            let shared = Arc::clone(&shared);
            threads.push(spawn(
                format!("mqask-{name}"),
                Box::new(move || commands(&shared, &command_rx)),
            )?);
        }
        tracing::info!(
            output = %name,
            broker = format!("{}:{}", shared.spec.host, shared.spec.port),
            tls = shared.spec.tls,
            topic_prefix = %shared.spec.topic_prefix,
            discovery = shared.spec.discovery,
            commands = shared.spec.commands,
            "mqtt output started"
        );
        Ok(Mqtt {
            stats,
            shared,
            stop: Some(stop_tx),
            threads,
        })
    }

    /// After a reload: entities of removed questions and cameras are
    /// deleted from Home Assistant (an empty retained config), new ones
    /// announced, and the retained states of removed questions cleared.
    pub fn reconfigure(&self, questions: &[QuestionSpec], cameras: &[String]) {
        let shared = &self.shared;
        let spec = &shared.spec;
        let old_topics: Vec<String> =
            discovery(spec, &lock(&shared.questions), &lock(&shared.cameras))
                .into_iter()
                .map(|(topic, _)| topic)
                .collect();
        *lock(&shared.questions) = questions.to_vec();
        *lock(&shared.cameras) = cameras.to_vec();
        let new_topics: Vec<String> = discovery(spec, questions, cameras)
            .into_iter()
            .map(|(topic, _)| topic)
            .collect();
        if spec.discovery {
            for topic in old_topics.into_iter().filter(|t| !new_topics.contains(t)) {
                shared.publish(topic, true, Vec::new());
            }
        }
        let gone: Vec<(String, String)> = lock(&shared.states)
            .keys()
            .filter(|(camera, name)| {
                !questions
                    .iter()
                    .any(|q| &q.camera == camera && &q.name == name)
            })
            .cloned()
            .collect();
        for key in gone {
            lock(&shared.states).remove(&key);
            shared.publish(state_topic(spec, &key.0, &key.1), true, Vec::new());
        }
        shared.announce();
    }

    /// Publishes `offline`, disconnects, and joins the threads.
    pub fn stop(mut self) {
        self.stop.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn options(spec: &MqttSpec) -> Result<MqttOptions, String> {
    let mut o = MqttOptions::new(&spec.client_id, &spec.host, spec.port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_session(true);
    o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
    o.set_last_will(LastWill::new(
        availability_topic(spec),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    if let Some(user) = &spec.username {
        o.set_credentials(user, spec.password.clone().unwrap_or_default());
    }
    if spec.tls {
        let transport = match &spec.ca_file {
            Some(path) => {
                let ca = std::fs::read(path)
                    .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
                Transport::tls(ca, None, None)
            }
            None => Transport::tls_with_default_config(),
        };
        o.set_transport(transport);
    }
    Ok(o)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn availability_topic(spec: &MqttSpec) -> String {
    format!("{}/availability", spec.topic_prefix)
}

fn state_topic(spec: &MqttSpec, camera: &str, question: &str) -> String {
    format!("{}/{camera}/{question}/state", spec.topic_prefix)
}

fn snapshot_topic(spec: &MqttSpec, camera: &str) -> String {
    format!("{}/{camera}/snapshot", spec.topic_prefix)
}

impl Shared {
    /// Queues a message; a full queue drops it (counted, logged).
    fn publish(&self, topic: String, retain: bool, payload: Vec<u8>) {
        if let Err(e) = self
            .client
            .try_publish(&topic, QoS::AtLeastOnce, retain, payload)
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(output = %self.spec.name, topic = %topic, "mqtt message dropped: {e}");
        }
    }

    /// Everything a fresh connection (or a broker that lost its retained
    /// messages) must hear: availability, discovery, states, snapshots.
    fn announce(&self) {
        let spec = &self.spec;
        if spec.commands {
            let filter = format!("{}/+/ask/set", spec.topic_prefix);
            if let Err(e) = self.client.try_subscribe(&filter, QoS::AtLeastOnce) {
                tracing::warn!(output = %spec.name, "cannot subscribe to {filter}: {e}");
            }
        }
        self.publish(availability_topic(spec), true, b"online".to_vec());
        if spec.discovery {
            let configs = discovery(spec, &lock(&self.questions), &lock(&self.cameras));
            for (topic, config) in configs {
                self.publish(topic, true, config.to_string().into_bytes());
            }
        }
        let states = lock(&self.states).clone();
        for ((camera, question), answer) in states {
            self.publish(
                state_topic(spec, &camera, &question),
                true,
                answer.into_bytes(),
            );
        }
        // Each camera's image entity starts from its newest frame.
        let cameras = lock(&self.cameras).clone();
        for camera in &cameras {
            let ring = {
                let rings = self
                    .watch
                    .shared
                    .rings
                    .read()
                    .unwrap_or_else(|p| p.into_inner());
                rings.get(camera).cloned()
            };
            if let Some(frame) = ring.and_then(|r| r.newest())
                && let Ok(jpeg) = crate::picture::encode_jpeg(&frame)
            {
                self.publish(snapshot_topic(spec, camera), true, jpeg);
            }
        }
    }
}

/// Home Assistant MQTT discovery: a `binary_sensor` per yes/no question, a
/// `sensor` per count, choice or text question, an `image` per camera, all
/// on one device, all following the availability topic.
fn discovery(
    spec: &MqttSpec,
    questions: &[QuestionSpec],
    cameras: &[String],
) -> Vec<(String, Value)> {
    let node: String = spec
        .client_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let device = json!({
        "identifiers": [node],
        "name": format!("vigil {}", spec.client_id),
        "manufacturer": "vigil",
        "model": "vigil camera watcher",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let availability = availability_topic(spec);
    let mut out = Vec::new();
    for q in questions {
        let object = format!("{}_{}", q.camera, q.name);
        let mut config = json!({
            "name": q.ask,
            "unique_id": format!("{node}_{object}"),
            "object_id": format!("vigil_{object}"),
            "state_topic": state_topic(spec, &q.camera, &q.name),
            "availability_topic": availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        });
        let component = match &q.answer {
            AnswerKind::YesNo => {
                config["payload_on"] = json!("yes");
                config["payload_off"] = json!("no");
                "binary_sensor"
            }
            AnswerKind::Count => {
                config["state_class"] = json!("measurement");
                "sensor"
            }
            AnswerKind::Choices(choices) => {
                config["device_class"] = json!("enum");
                config["options"] = json!(choices);
                "sensor"
            }
            AnswerKind::Text => "sensor",
        };
        out.push((
            format!(
                "{}/{component}/{node}/{object}/config",
                spec.discovery_prefix
            ),
            config,
        ));
    }
    for camera in cameras {
        let config = json!({
            "name": format!("{camera} snapshot"),
            "unique_id": format!("{node}_{camera}_snapshot"),
            "object_id": format!("vigil_{camera}_snapshot"),
            "image_topic": snapshot_topic(spec, camera),
            "content_type": "image/jpeg",
            "availability_topic": availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        });
        out.push((
            format!("{}/image/{node}/{camera}/config", spec.discovery_prefix),
            config,
        ));
    }
    out
}

fn run_connection(
    shared: &Shared,
    mut connection: Connection,
    stop: &Receiver<()>,
    commands: &Sender<(String, Vec<u8>)>,
) {
    let spec = &shared.spec;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    let mut connected = false;
    let ask_prefix = format!("{}/", spec.topic_prefix);
    loop {
        if !matches!(stop.try_recv(), Err(crossbeam_channel::TryRecvError::Empty)) {
            break;
        }
        match connection.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                connected = true;
                backoff.reset();
                tracing::info!(output = %spec.name, broker = format!("{}:{}", spec.host, spec.port), "mqtt connected");
                shared.announce();
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                let camera = p
                    .topic
                    .strip_prefix(&ask_prefix)
                    .and_then(|rest| rest.strip_suffix("/ask/set"))
                    .filter(|c| !c.contains('/'));
                if let (true, Some(camera)) = (spec.commands, camera) {
                    match commands.try_send((camera.to_string(), p.payload.to_vec())) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            tracing::warn!(output = %spec.name, camera, "mqtt question refused: {COMMAND_QUEUE} already waiting");
                        }
                        Err(TrySendError::Disconnected(_)) => {}
                    }
                }
            }
            Ok(Ok(Event::Outgoing(Outgoing::Publish(_)))) => {
                shared.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                shared.stats.failures.fetch_add(1, Ordering::Relaxed);
                let delay = backoff.next_delay();
                if connected {
                    tracing::warn!(output = %spec.name, retry_in_ms = delay.as_millis() as u64, "mqtt connection lost: {e}");
                } else {
                    tracing::warn!(output = %spec.name, retry_in_ms = delay.as_millis() as u64, "mqtt connection failed: {e}");
                }
                connected = false;
                // The next recv reconnects; wait first, unless stopped.
                if !matches!(
                    stop.recv_timeout(delay),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout)
                ) {
                    break;
                }
            }
            Err(rumqttc::RecvTimeoutError::Timeout) => {}
            Err(rumqttc::RecvTimeoutError::Disconnected) => return,
        }
    }
    // Stopping: say so (the will is only for dying), then disconnect.
    if connected {
        shared.publish(availability_topic(spec), true, b"offline".to_vec());
        let _ = shared.client.try_disconnect();
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            match connection.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) => break,
                Err(rumqttc::RecvTimeoutError::Disconnected) => break,
                _ => {}
            }
        }
    }
    tracing::info!(output = %spec.name, "mqtt output stopped");
}

fn intake(shared: &Shared, events: &Subscription<Arc<StoredEvent>>, stop: &Receiver<()>) {
    let spec = &shared.spec;
    loop {
        let event = select! {
            recv(events.rx) -> e => match e {
                Ok(e) => e,
                Err(_) => return,
            },
            recv(stop) -> _ => return,
        };
        let e = &event.event;
        if let (Some(question), EventKind::AnswerChanged) = (&e.question, e.kind) {
            lock(&shared.states).insert((e.camera.clone(), question.clone()), e.answer.clone());
            shared.publish(
                state_topic(spec, &e.camera, question),
                true,
                e.answer.clone().into_bytes(),
            );
        }
        if spec.events.iter().any(|k| k == e.kind.as_str()) {
            let payload = json!({
                "event": *event,
                "snapshot": event.has_snapshot.then(|| format!("/v1/events/{}/snapshot.jpg", event.id)),
            });
            shared.publish(
                format!("{}/events", spec.topic_prefix),
                false,
                payload.to_string().into_bytes(),
            );
        }
        if event.has_snapshot
            && let Ok(Some(jpeg)) = shared.store.snapshot(event.id)
        {
            shared.publish(snapshot_topic(spec, &e.camera), true, jpeg);
        }
    }
}

/// `<prefix>/<camera>/ask/set`: a question in plain text (yes/no, newest
/// frame), or JSON `{"question": ..., "answer": "count", "window": "4s"}`;
/// the answer (or the error) goes to `<prefix>/<camera>/ask/answer`.
fn commands(shared: &Shared, rx: &Receiver<(String, Vec<u8>)>) {
    #[derive(serde::Deserialize)]
    struct Body {
        question: String,
        answer: Option<AnswerKind>,
        window: Option<String>,
    }
    for (camera, payload) in rx {
        let text = String::from_utf8_lossy(&payload).trim().to_string();
        let parsed = if text.starts_with('{') {
            serde_json::from_str::<Body>(&text).map_err(|e| format!("not a valid question: {e}"))
        } else {
            Ok(Body {
                question: text,
                answer: None,
                window: None,
            })
        };
        let reply = parsed
            .and_then(|b| {
                let window = match b.window.as_deref().map(Window::parse).transpose() {
                    Ok(w) => w.unwrap_or(Window::Frames(1)),
                    Err(e) => return Err(format!("window: {e}")),
                };
                if b.question.is_empty() || b.question.len() > 1000 {
                    return Err("the question must be 1 to 1000 bytes".to_string());
                }
                let request = AskRequest {
                    camera: camera.clone(),
                    ask: b.question,
                    window,
                    answer: b.answer.unwrap_or(AnswerKind::YesNo),
                    examples: Vec::new(),
                };
                shared
                    .watch
                    .ask(request, ASK_TIMEOUT)
                    .map_err(|e| e.to_string())
            })
            .map_or_else(|e| json!({ "camera": camera, "error": e }), |a| json!(a));
        tracing::info!(output = %shared.spec.name, camera = %camera, "mqtt question answered");
        shared.publish(
            format!("{}/{camera}/ask/answer", shared.spec.topic_prefix),
            false,
            reply.to_string().into_bytes(),
        );
    }
}
