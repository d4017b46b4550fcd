//! `[[output]]`: where events go besides the store and the API — webhooks
//! (HTTP POST of each event, signed when a secret is set).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::ConfigError;
use super::units::Dur;
use super::validate::{Checker, check_name, positive_dur};

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
}

/// A validated output.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputSpec {
    Webhook(WebhookSpec),
}

impl OutputSpec {
    pub fn name(&self) -> &str {
        match self {
            OutputSpec::Webhook(w) => &w.name,
        }
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
            "webhook" => OutputSpec::Webhook(webhook(c, o, i + 1)?),
            other => {
                return Err(c.error(
                    o.kind.span(),
                    format!("unknown output type \"{other}\"\nhelp: use type = \"webhook\""),
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
    let events = match o.events {
        None => DEFAULT_EVENTS.iter().map(|s| s.to_string()).collect(),
        Some(e) if e.get_ref().is_empty() => {
            return Err(c.error(e.span(), "events is empty: this output would send nothing"));
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
            e.into_inner()
        }
    };
    let queue = match o.queue {
        Some(q) if !(1..=100_000).contains(q.get_ref()) => {
            return Err(c.error(q.span(), "queue must be between 1 and 100000 events"));
        }
        Some(q) => *q.get_ref() as usize,
        None => DEFAULT_QUEUE,
    };
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
