//! The config file as written: serde structs that mirror the TOML, with
//! spans kept where a later check needs to point back at the text.
//! Validation into runtime types happens in `validate.rs`.

use serde::Deserialize;
use toml::Spanned;

use super::question::{AnswerKind, Window};
use super::units::{ByteSize, Dur};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub daemon: RawDaemon,
    pub model: Option<RawModel>,
    #[serde(default)]
    pub camera: Vec<RawCamera>,
    #[serde(default)]
    pub question: Vec<RawQuestion>,
    #[serde(default)]
    pub output: Vec<super::output::RawOutput>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub state_dir: Option<String>,
    pub socket: Option<String>,
    pub socket_group: Option<String>,
    pub summary_interval: Option<Spanned<Dur>>,
    pub wedged_after: Option<Spanned<Dur>>,
    pub log_level: Option<Spanned<String>>,
    pub listen: Option<Spanned<String>>,
    pub allow_remote: Option<bool>,
    pub change_threshold: Option<Spanned<f64>>,
    pub event_max_age: Option<Spanned<Dur>>,
    pub event_max_size: Option<Spanned<ByteSize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub lm: Spanned<String>,
    pub adapter: Option<Spanned<String>>,
    pub encoder: Option<Spanned<String>>,
    pub resampler: Option<Spanned<String>>,
    pub threads: Option<Spanned<i64>>,
    pub feature_precision: Option<FeaturePrecision>,
}

/// How cached encoder features are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeaturePrecision {
    #[default]
    F16,
    F32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// Let rtspsrc try UDP first and fall back to TCP.
    Auto,
    Tcp,
    Udp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    pub name: Spanned<String>,
    pub source: Spanned<String>,
    pub fps: Option<Spanned<f64>>,
    pub width: Option<Spanned<i64>>,
    pub height: Option<Spanned<i64>>,
    pub buffer: Option<Spanned<Dur>>,
    pub memory: Option<Spanned<ByteSize>>,
    #[serde(rename = "loop")]
    pub looping: Option<bool>,
    pub stall_timeout: Option<Spanned<Dur>>,
    pub reconnect_initial: Option<Spanned<Dur>>,
    pub reconnect_max: Option<Spanned<Dur>>,
    pub rtsp_transport: Option<RtspTransport>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuestion {
    pub name: Option<Spanned<String>>,
    pub camera: Spanned<String>,
    pub ask: Spanned<String>,
    pub answer: Spanned<AnswerKind>,
    pub every: Option<Spanned<Dur>>,
    pub window: Option<Spanned<Window>>,
    pub alert_when: Option<Spanned<String>>,
    pub consecutive: Option<Spanned<i64>>,
    pub cooldown: Option<Spanned<Dur>>,
    #[serde(default)]
    pub examples: Vec<RawExample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExample {
    pub image: Spanned<String>,
    pub answer: Spanned<String>,
}
