//! The config file: `[daemon]`, `[model]`, `[[camera]]` and `[[question]]`.
//!
//! `load` reads and validates a file into runtime types; every problem is a
//! [`ConfigError`] that names file, line and column and says how to fix it.

mod check;
mod error;
mod output;
mod question;
mod schema;
mod source;
mod units;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, Diagnostic};
pub use output::{EVENT_KINDS, MqttSpec, OutputSpec, WebhookSpec};
pub use question::{AlertRule, AnswerKind, Comparison, Window};
pub use schema::{FeaturePrecision, RtspTransport};
pub use source::{Source, redact_url};
pub use units::{ByteSize, Dur, parse_bytes, parse_duration};

/// A validated config.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (relative paths in it are resolved against
    /// this file's folder).
    pub path: PathBuf,
    pub daemon: DaemonSettings,
    pub model: Option<ModelSettings>,
    pub cameras: Vec<CameraSpec>,
    pub questions: Vec<QuestionSpec>,
    /// Where events go besides the store (`[[output]]`).
    pub outputs: Vec<OutputSpec>,
    /// Things that are allowed but probably wrong (a missing footage file).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSettings {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub socket_group: Option<String>,
    /// How often the daemon logs a one-line summary of every camera.
    pub summary_interval: Duration,
    /// A tracing filter such as `info` or `vigil=debug`.
    pub log_level: String,
    /// An optional TCP listener for the API (loopback unless `allow_remote`).
    pub listen: Option<std::net::SocketAddr>,
    /// A camera whose frames changed in less than this fraction of a small
    /// grey thumbnail's pixels keeps its questions' last answers without
    /// running the LM (0 turns gating off).
    pub change_threshold: f64,
    /// Events older than this are deleted.
    pub event_max_age: Duration,
    /// The event store is kept under this many bytes (oldest events go first).
    pub event_max_size: u64,
    /// A camera thread or the inference worker that shows no life for this
    /// long is wedged: the daemon stops pinging systemd's watchdog.
    pub wedged_after: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelSettings {
    pub lm: PathBuf,
    pub adapter: Option<PathBuf>,
    pub encoder: Option<PathBuf>,
    pub resampler: Option<PathBuf>,
    pub threads: usize,
    pub feature_precision: FeaturePrecision,
}

/// A sampling rate as an exact fraction, as GStreamer caps want it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fps {
    pub num: i32,
    pub den: i32,
}

impl Fps {
    pub const ONE: Fps = Fps { num: 1, den: 1 };

    /// The closest fraction with a denominator up to 1000 (0.5 → 1/2).
    pub fn from_f64(fps: f64) -> Fps {
        let mut best = Fps {
            num: fps.round().max(1.0) as i32,
            den: 1,
        };
        let mut best_err = (best.as_f64() - fps).abs();
        for den in 1..=1000 {
            let num = (fps * den as f64).round();
            if num < 1.0 {
                continue;
            }
            let err = (num / den as f64 - fps).abs();
            if err + 1e-12 < best_err {
                best = Fps {
                    num: num as i32,
                    den,
                };
                best_err = err;
            }
        }
        best
    }

    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// Time between two samples.
    pub fn interval(self) -> Duration {
        Duration::from_secs_f64(self.den as f64 / self.num as f64)
    }
}

/// One camera, ready for the capture layer.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraSpec {
    pub name: String,
    pub source: Source,
    pub fps: Fps,
    pub width: u32,
    /// `None` keeps the source's aspect ratio.
    pub height: Option<u32>,
    /// How much footage the ring keeps.
    pub buffer: Duration,
    /// The ring's memory budget in bytes (pixels plus cached features).
    pub memory: u64,
    /// Replay a file from the start when it ends.
    pub looping: bool,
    pub stall_timeout: Duration,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    pub rtsp_transport: RtspTransport,
    pub enabled: bool,
}

impl CameraSpec {
    /// A camera with every option at its default (used by `vigil probe`).
    pub fn with_defaults(name: &str, source: Source) -> CameraSpec {
        CameraSpec {
            name: name.to_string(),
            source,
            fps: Fps::ONE,
            width: defaults::WIDTH,
            height: None,
            buffer: defaults::BUFFER,
            memory: defaults::MEMORY,
            looping: false,
            stall_timeout: defaults::STALL_TIMEOUT,
            reconnect_initial: defaults::RECONNECT_INITIAL,
            reconnect_max: defaults::RECONNECT_MAX,
            rtsp_transport: RtspTransport::Auto,
            enabled: true,
        }
    }
}

/// A standing question, checked against its camera.
#[derive(Debug, Clone, PartialEq)]
pub struct QuestionSpec {
    pub name: String,
    pub camera: String,
    pub ask: String,
    pub answer: AnswerKind,
    pub every: Duration,
    pub window: Window,
    pub alert_when: Option<AlertRule>,
    pub consecutive: u32,
    pub cooldown: Duration,
    pub examples: Vec<Example>,
}

/// A few-shot example: a snapshot and its correct answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub image: PathBuf,
    pub answer: String,
}

/// Default values, in one place so the docs and `example.toml` can match.
pub mod defaults {
    use std::time::Duration;
    pub const WIDTH: u32 = 640;
    pub const BUFFER: Duration = Duration::from_secs(120);
    pub const MEMORY: u64 = 128 << 20;
    pub const STALL_TIMEOUT: Duration = Duration::from_secs(20);
    pub const RECONNECT_INITIAL: Duration = Duration::from_secs(1);
    pub const RECONNECT_MAX: Duration = Duration::from_secs(30);
    pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(60);
    /// Longer than any single inference job on a slow CPU (a long text
    /// answer on 2 cores takes a few seconds).
    pub const WEDGED_AFTER: Duration = Duration::from_secs(60);
    /// Idle inference workers and failed or reconnecting cameras show a
    /// sign of life about once a second, and the daemon reads them once a
    /// second: anything much shorter would take an idle, healthy daemon
    /// for a wedged one and stop its watchdog pings.
    pub const MIN_WEDGED_AFTER: Duration = Duration::from_secs(5);
    pub const EVERY: Duration = Duration::from_secs(5);
    pub const STATE_DIR: &str = "/var/lib/vigil";
    pub const SOCKET: &str = "/run/vigil/vigil.sock";
    pub const MAX_FPS: f64 = 60.0;
    pub const CHANGE_THRESHOLD: f64 = 0.005;
    pub const EVENT_MAX_AGE: Duration = Duration::from_secs(30 * 86400);
    pub const EVENT_MAX_SIZE: u64 = 1 << 30;
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Validates config text as if read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: schema::RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::at(path, text, e.span(), e.message()))?;
    validate::validate(path, text, raw)
}
