//! `[[output]]`: where events go besides the store and the API — webhooks
//! (HTTP POST of each event, signed when a secret is set) and MQTT brokers
//! (with Home Assistant discovery).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::check::{Checker, check_name, positive_dur};
use super::error::ConfigError;
use super::units::Dur;

/// The event kinds an output may ask for (the store's `EventKind`s).
pub const EVENT_KINDS: [&str; 4] = ["alert", "normal", "answer_changed", "ask"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub name: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
    pub secret: Option<Spanned<String>>,
    pub events: Option<Spanned<Vec<String>>>,
    pub queue: Option<Spanned<i64>>,
    pub timeout: Option<Spanned<Dur>>,
    pub retry_max: Option<Spanned<Dur>>,
    pub snapshot_base: Option<Spanned<String>>,
    pub broker: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub client_id: Option<Spanned<String>>,
    pub topic_prefix: Option<Spanned<String>>,
    pub discovery: Option<bool>,
    pub discovery_prefix: Option<Spanned<String>>,
    pub commands: Option<bool>,
    pub ca_file: Option<Spanned<String>>,
}

/// A validated output.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputSpec {
    Webhook(WebhookSpec),
    Mqtt(MqttSpec),
}

impl OutputSpec {
    pub fn name(&self) -> &str {
        match self {
            OutputSpec::Webhook(w) => &w.name,
            OutputSpec::Mqtt(m) => &m.name,
        }
    }
}

#[derive(Clone, PartialEq)]
pub struct MqttSpec {
    pub name: String,
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS, checked against the system's roots or `ca_file`.
    pub tls: bool,
    pub ca_file: Option<std::path::PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub client_id: String,
    /// Topics are `<topic_prefix>/...`.
    pub topic_prefix: String,
    /// Home Assistant MQTT discovery configs under `discovery_prefix`.
    pub discovery: bool,
    pub discovery_prefix: String,
    /// Accept `<topic_prefix>/<camera>/ask/set` questions.
    pub commands: bool,
    /// Which event kinds go to `<topic_prefix>/events`.
    pub events: Vec<String>,
    /// Messages waiting while the broker is away, at most.
    pub queue: usize,
}

impl std::fmt::Debug for MqttSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSpec")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("topic_prefix", &self.topic_prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq)]
pub struct WebhookSpec {
    pub name: String,
    /// `http://` or `https://`.
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Key of the `X-Vigil-Signature-256` HMAC-SHA256 header.
    pub secret: Option<String>,
    /// Which event kinds are sent (`EVENT_KINDS`).
    pub events: Vec<String>,
    /// Events waiting to be delivered, at most; beyond it the oldest waiting
    /// one is dropped (and counted).
    pub queue: usize,
    /// Per request, connect to end.
    pub timeout: Duration,
    /// Retries back off from 1 s, doubling up to this.
    pub retry_max: Duration,
    /// Prefix of the snapshot link in each payload, such as
    /// `http://box.local:7878` (the API's TCP listener).
    pub snapshot_base: Option<String>,
}

// Secrets and header values (tokens) stay out of logs and debug output.
impl std::fmt::Debug for WebhookSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSpec")
            .field("name", &self.name)
            .field("url", &super::redact_url(&self.url))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .field("events", &self.events)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

const DEFAULT_EVENTS: [&str; 2] = ["alert", "normal"];
const DEFAULT_QUEUE: usize = 1000;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(60);

pub(super) fn outputs(c: &Checker, raw: Vec<RawOutput>) -> Result<Vec<OutputSpec>, ConfigError> {
    let mut out: Vec<OutputSpec> = Vec::with_capacity(raw.len());
    for (i, o) in raw.into_iter().enumerate() {
        let span = o.name.as_ref().map_or_else(|| o.kind.span(), |n| n.span());
        let spec = match o.kind.get_ref().as_str() {
            "webhook" => {
                only_for(
                    c,
                    "webhook",
                    &[
                        ("broker", o.broker.as_ref().map(Spanned::span)),
                        ("username", o.username.as_ref().map(Spanned::span)),
                        ("password", o.password.as_ref().map(Spanned::span)),
                        ("client_id", o.client_id.as_ref().map(Spanned::span)),
                        ("topic_prefix", o.topic_prefix.as_ref().map(Spanned::span)),
                        (
                            "discovery_prefix",
                            o.discovery_prefix.as_ref().map(Spanned::span),
                        ),
                        ("ca_file", o.ca_file.as_ref().map(Spanned::span)),
                    ],
                )?;
                OutputSpec::Webhook(webhook(c, o, i + 1)?)
            }
            "mqtt" => {
                only_for(
                    c,
                    "mqtt",
                    &[
                        ("url", o.url.as_ref().map(Spanned::span)),
                        ("headers", o.headers.as_ref().map(Spanned::span)),
                        ("secret", o.secret.as_ref().map(Spanned::span)),
                        ("timeout", o.timeout.as_ref().map(Spanned::span)),
                        ("retry_max", o.retry_max.as_ref().map(Spanned::span)),
                        ("snapshot_base", o.snapshot_base.as_ref().map(Spanned::span)),
                    ],
                )?;
                OutputSpec::Mqtt(mqtt(c, o, i + 1)?)
            }
            other => {
                return Err(c.error(
                    o.kind.span(),
                    format!(
                        "unknown output type \"{other}\"\nhelp: use type = \"webhook\" or \"mqtt\""
                    ),
                ));
            }
        };
        if out.iter().any(|s| s.name() == spec.name()) {
            return Err(c.error(
                span,
                format!(
                    "two [[output]] sections are named \"{}\"\nhelp: give each a distinct name",
                    spec.name()
                ),
            ));
        }
        out.push(spec);
    }
    Ok(out)
}

/// Rejects keys that belong to the other output type.
fn only_for(
    c: &Checker,
    kind: &str,
    others: &[(&str, Option<std::ops::Range<usize>>)],
) -> Result<(), ConfigError> {
    for (key, span) in others {
        if let Some(span) = span {
            return Err(c.error(
                span.clone(),
                format!("{key} does not apply to a {kind} output"),
            ));
        }
    }
    Ok(())
}

fn events(
    c: &Checker,
    raw: Option<Spanned<Vec<String>>>,
    default: &[&str],
) -> Result<Vec<String>, ConfigError> {
    match raw {
        None => Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(e) if e.get_ref().is_empty() => {
            Err(c.error(e.span(), "events is empty: this output would send nothing"))
        }
        Some(e) => {
            if let Some(bad) = e
                .get_ref()
                .iter()
                .find(|k| !EVENT_KINDS.contains(&k.as_str()))
            {
                return Err(c.error(
                    e.span(),
                    format!(
                        "unknown event kind \"{bad}\"\nhelp: use any of {}",
                        EVENT_KINDS.join(", ")
                    ),
                ));
            }
            Ok(e.into_inner())
        }
    }
}

fn queue(c: &Checker, raw: Option<Spanned<i64>>) -> Result<usize, ConfigError> {
    match raw {
        Some(q) if !(1..=100_000).contains(q.get_ref()) => {
            Err(c.error(q.span(), "queue must be between 1 and 100000 events"))
        }
        Some(q) => Ok(*q.get_ref() as usize),
        None => Ok(DEFAULT_QUEUE),
    }
}

/// A topic segment we write: no MQTT wildcards or separators of its own.
fn check_topic(c: &Checker, value: &Spanned<String>, key: &str) -> Result<(), ConfigError> {
    let t = value.get_ref();
    if t.is_empty() || t.starts_with('/') || t.ends_with('/') || t.contains(['+', '#', '\0']) {
        return Err(c.error(
            value.span(),
            format!("{key} \"{t}\" is not a usable MQTT topic prefix\nhelp: letters, digits, '-', '_' and inner '/', no '+' or '#'"),
        ));
    }
    Ok(())
}

fn mqtt(c: &Checker, o: RawOutput, index: usize) -> Result<MqttSpec, ConfigError> {
    let name = match &o.name {
        Some(n) => {
            check_name(c, n, "output")?;
            n.get_ref().clone()
        }
        None => format!("mqtt-{index}"),
    };
    let Some(broker) = o.broker else {
        return Err(c.error(
            o.kind.span(),
            "an mqtt output needs broker\nhelp: broker = \"mqtt://192.0.2.5:1883\" (or mqtts:// for TLS)",
        ));
    };
    let text = broker.get_ref();
    let (tls, rest) = match (text.strip_prefix("mqtt://"), text.strip_prefix("mqtts://")) {
        (Some(r), _) => (false, r),
        (_, Some(r)) => (true, r),
        _ => {
            return Err(c.error(
                broker.span(),
                format!(
                    "broker \"{}\" is not an mqtt:// or mqtts:// URL",
                    super::redact_url(text)
                ),
            ));
        }
    };
    let hostport = rest.trim_end_matches('/');
    if hostport.contains(['@', '/']) {
        return Err(c.error(
            broker.span(),
            "broker must be mqtt://HOST[:PORT]\nhelp: credentials go in username and password, not in the URL",
        ));
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) if p > 0 => (h, p),
            _ => {
                return Err(c.error(
                    broker.span(),
                    format!("broker port \"{p}\" is not a port number"),
                ));
            }
        },
        None => (hostport, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return Err(c.error(
            broker.span(),
            "broker must be mqtt://HOST[:PORT]\nhelp: credentials go in username and password, not in the URL",
        ));
    }
    let topic_prefix = match o.topic_prefix {
        Some(t) => {
            check_topic(c, &t, "topic_prefix")?;
            t.into_inner()
        }
        None => "vigil".to_string(),
    };
    let discovery_prefix = match o.discovery_prefix {
        Some(t) => {
            check_topic(c, &t, "discovery_prefix")?;
            t.into_inner()
        }
        None => "homeassistant".to_string(),
    };
    let client_id = match o.client_id {
        Some(id) if id.get_ref().is_empty() || id.get_ref().len() > 64 => {
            return Err(c.error(id.span(), "client_id must be 1 to 64 characters"));
        }
        Some(id) => id.into_inner(),
        None => format!("vigil-{name}"),
    };
    if o.password.is_some() && o.username.is_none() {
        return Err(c.error(
            o.kind.span(),
            "password without username\nhelp: set username too",
        ));
    }
    let ca_file = match o.ca_file {
        Some(f) if !tls => {
            return Err(c.error(f.span(), "ca_file needs an mqtts:// broker"));
        }
        Some(f) => Some(c.resolve(f.get_ref())),
        None => None,
    };
    Ok(MqttSpec {
        name,
        host: host.to_string(),
        port,
        tls,
        ca_file,
        username: o.username.map(Spanned::into_inner),
        password: o.password.map(Spanned::into_inner),
        client_id,
        topic_prefix,
        discovery: o.discovery.unwrap_or(true),
        discovery_prefix,
        commands: o.commands.unwrap_or(false),
        events: events(c, o.events, &EVENT_KINDS[..3])?,
        queue: queue(c, o.queue)?,
    })
}

fn webhook(c: &Checker, o: RawOutput, index: usize) -> Result<WebhookSpec, ConfigError> {
    let name = match &o.name {
        Some(n) => {
            check_name(c, n, "output")?;
            n.get_ref().clone()
        }
        None => format!("webhook-{index}"),
    };
    let Some(url) = o.url else {
        return Err(c.error(
            o.kind.span(),
            "a webhook output needs url\nhelp: url = \"https://example.com/hooks/vigil\"",
        ));
    };
    check_http_url(c, &url, "url")?;
    let mut headers = Vec::new();
    if let Some(h) = o.headers {
        for (k, v) in h.get_ref() {
            let valid_name = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b));
            if !valid_name || v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(c.error(
                    h.span(),
                    format!("header \"{k}\" is not a valid HTTP header\nhelp: names are letters, digits and '-'; values are one line"),
                ));
            }
            headers.push((k.clone(), v.clone()));
        }
    }
    let secret = match o.secret {
        Some(s) if s.get_ref().is_empty() => {
            return Err(c.error(s.span(), "secret is empty\nhelp: remove it, or set a long random string (openssl rand -hex 32)"));
        }
        s => s.map(Spanned::into_inner),
    };
    let events = events(c, o.events, &DEFAULT_EVENTS)?;
    let queue = queue(c, o.queue)?;
    let snapshot_base = match o.snapshot_base {
        Some(b) => {
            check_http_url(c, &b, "snapshot_base")?;
            Some(b.get_ref().trim_end_matches('/').to_string())
        }
        None => None,
    };
    Ok(WebhookSpec {
        name,
        url: url.into_inner(),
        headers,
        secret,
        events,
        queue,
        timeout: positive_dur(c, o.timeout, DEFAULT_TIMEOUT, "timeout")?,
        retry_max: positive_dur(c, o.retry_max, DEFAULT_RETRY_MAX, "retry_max")?,
        snapshot_base,
    })
}

fn check_http_url(c: &Checker, url: &Spanned<String>, key: &str) -> Result<(), ConfigError> {
    let text = url.get_ref();
    let rest = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"));
    let host = rest.map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
    match host {
        Some(h) if !h.is_empty() && !h.contains(char::is_whitespace) => Ok(()),
        _ => Err(c.error(
            url.span(),
            format!(
                "{key} \"{}\" is not an http:// or https:// URL with a host",
                super::redact_url(text)
            ),
        )),
    }
}
