//! Raw config → runtime types, with every cross-field check located in the
//! text.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::check::{Checker, check_name, positive_dur};
use super::schema::{RawCamera, RawConfig, RawDaemon, RawModel, RawQuestion, RtspTransport};
use super::{
    CameraSpec, Config, ConfigError, DaemonSettings, Example, Fps, ModelSettings, QuestionSpec,
    Source, Window, defaults,
};

pub fn validate(path: &Path, text: &str, raw: RawConfig) -> Result<Config, ConfigError> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = absolute
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut checker = Checker::new(path, text, base);
    let daemon = daemon(&checker, raw.daemon)?;
    let model = raw.model.map(|m| model(&mut checker, m)).transpose()?;
    let cameras = cameras(&mut checker, raw.camera)?;
    let questions = questions(&mut checker, raw.question, &cameras, model.as_ref())?;
    let outputs = super::output::outputs(&checker, raw.output)?;
    if cameras.is_empty() {
        checker
            .warnings
            .push("no [[camera]] is defined: the daemon will have nothing to watch".into());
    }
    Ok(Config {
        path: absolute,
        daemon,
        model,
        cameras,
        questions,
        outputs,
        warnings: checker.warnings,
    })
}

fn daemon(c: &Checker, raw: RawDaemon) -> Result<DaemonSettings, ConfigError> {
    let summary_interval = match raw.summary_interval {
        Some(s) if s.get_ref().get().is_zero() => {
            return Err(c.error(s.span(), "summary_interval must be longer than zero"));
        }
        Some(s) => s.into_inner().get(),
        None => defaults::SUMMARY_INTERVAL,
    };
    let wedged_after = match raw.wedged_after {
        Some(s) if s.get_ref().get() < defaults::MIN_WEDGED_AFTER => {
            return Err(c.error(
                s.span(),
                "wedged_after must be at least 5s: idle cameras and workers show a sign of life about once a second\nhelp: it should exceed the longest inference job (the default is 60s)",
            ));
        }
        Some(s) => s.into_inner().get(),
        None => defaults::WEDGED_AFTER,
    };
    let log_level = match raw.log_level {
        Some(level) => {
            let text = level.get_ref().clone();
            if tracing_subscriber::EnvFilter::try_new(&text).is_err() {
                return Err(c.error(
                    level.span(),
                    format!("\"{text}\" is not a log filter\nhelp: use error, warn, info, debug or trace"),
                ));
            }
            text
        }
        None => "info".into(),
    };
    let listen = match raw.listen {
        Some(l) => {
            let addr: std::net::SocketAddr = l.get_ref().parse().map_err(|_| {
                c.error(
                    l.span(),
                    format!(
                        "\"{}\" is not an address and port\nhelp: write e.g. \"127.0.0.1:7878\"",
                        l.get_ref()
                    ),
                )
            })?;
            if !addr.ip().is_loopback() && raw.allow_remote != Some(true) {
                return Err(c.error(
                    l.span(),
                    format!(
                        "listen on {addr} would let other machines ask questions and read snapshots without any authentication\nhelp: listen on 127.0.0.1, or set allow_remote = true in [daemon] if a firewall or proxy guards it"
                    ),
                ));
            }
            Some(addr)
        }
        None => None,
    };
    let change_threshold = match raw.change_threshold {
        Some(t) if !(0.0..=1.0).contains(t.get_ref()) => {
            return Err(c.error(
                t.span(),
                "change_threshold is a fraction of pixels, between 0 and 1\nhelp: 0.005 (half a percent) suits most cameras; 0 turns gating off",
            ));
        }
        Some(t) => *t.get_ref(),
        None => defaults::CHANGE_THRESHOLD,
    };
    let event_max_age = positive_dur(
        c,
        raw.event_max_age,
        defaults::EVENT_MAX_AGE,
        "event_max_age",
    )?;
    let event_max_size = match raw.event_max_size {
        Some(s) if s.get_ref().0 < (1 << 20) => {
            return Err(c.error(s.span(), "event_max_size must be at least 1MiB"));
        }
        Some(s) => s.into_inner().0,
        None => defaults::EVENT_MAX_SIZE,
    };
    Ok(DaemonSettings {
        listen,
        change_threshold,
        event_max_age,
        event_max_size,
        state_dir: c.resolve(raw.state_dir.as_deref().unwrap_or(defaults::STATE_DIR)),
        socket: c.resolve(raw.socket.as_deref().unwrap_or(defaults::SOCKET)),
        socket_group: raw.socket_group,
        summary_interval,
        wedged_after,
        log_level,
    })
}

fn model(c: &mut Checker, raw: RawModel) -> Result<ModelSettings, ConfigError> {
    let threads = match raw.threads {
        Some(t) if *t.get_ref() < 1 || *t.get_ref() > 256 => {
            return Err(c.error(
                t.span(),
                "threads must be between 1 and 256\nhelp: use the number of cores the daemon may use",
            ));
        }
        Some(t) => *t.get_ref() as usize,
        None => std::thread::available_parallelism().map_or(2, |n| n.get()),
    };
    let mut file = |what: &str, p: Option<Spanned<String>>| {
        p.map(|p| {
            let path = c.resolve(p.get_ref());
            c.warn_if_missing(what, &path);
            path
        })
    };
    Ok(ModelSettings {
        lm: file("model.lm", Some(raw.lm)).expect("lm is required by the schema"),
        adapter: file("model.adapter", raw.adapter),
        encoder: file("model.encoder", raw.encoder),
        resampler: file("model.resampler", raw.resampler),
        threads,
        feature_precision: raw.feature_precision.unwrap_or_default(),
    })
}

fn size(c: &Checker, value: Option<Spanned<i64>>, key: &str) -> Result<Option<u32>, ConfigError> {
    match value {
        Some(v) if !(16..=7680).contains(v.get_ref()) => Err(c.error(
            v.span(),
            format!("{key} must be between 16 and 7680 pixels"),
        )),
        Some(v) => Ok(Some(*v.get_ref() as u32)),
        None => Ok(None),
    }
}

fn cameras(c: &mut Checker, raw: Vec<RawCamera>) -> Result<Vec<CameraSpec>, ConfigError> {
    let mut seen: HashMap<String, Range<usize>> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for cam in raw {
        check_name(c, &cam.name, "camera")?;
        let name = cam.name.get_ref().clone();
        if let Some(first) = seen.get(&name) {
            return Err(c.error(
                cam.name.span(),
                format!(
                    "camera \"{name}\" is defined twice (first at line {})\nhelp: give each camera its own name",
                    c.line_of(first)
                ),
            ));
        }
        seen.insert(name.clone(), cam.name.span());

        let source = Source::parse(cam.source.get_ref(), c.base())
            .map_err(|e| c.error(cam.source.span(), e))?;
        if let Source::File(path) = &source {
            c.warn_if_missing(&format!("camera \"{name}\": footage file"), path);
        }
        let fps = match cam.fps {
            Some(f) => {
                let v = *f.get_ref();
                if !(v > 0.0 && v <= defaults::MAX_FPS) {
                    return Err(c.error(
                        f.span(),
                        format!(
                            "fps must be greater than 0 and at most {} (got {v})\nhelp: vigil samples slowly: 1 is typical, 0.2 samples every 5 s",
                            defaults::MAX_FPS
                        ),
                    ));
                }
                Fps::from_f64(v)
            }
            None => Fps::ONE,
        };
        let width = size(c, cam.width, "width")?.unwrap_or(defaults::WIDTH);
        let height = size(c, cam.height, "height")?;
        let buffer = positive_dur(c, cam.buffer, defaults::BUFFER, "buffer")?;
        let memory = match cam.memory {
            Some(m) if m.get_ref().0 < 64 * 1024 => {
                return Err(c.error(
                    m.span(),
                    "memory must be at least 64KiB\nhelp: a 640x480 RGB frame takes 900KiB; \"128MiB\" holds about two minutes of it",
                ));
            }
            Some(m) => m.get_ref().0,
            None => defaults::MEMORY,
        };
        let interval = fps.interval();
        let stall_timeout = match cam.stall_timeout {
            Some(s) if s.get_ref().get() < interval * 2 => {
                return Err(c.error(
                    s.span(),
                    format!(
                        "stall_timeout ({}) must be at least two frame intervals ({:.1}s at this fps)",
                        s.get_ref(),
                        (interval * 2).as_secs_f64()
                    ),
                ));
            }
            Some(s) => s.into_inner().get(),
            None => defaults::STALL_TIMEOUT.max(interval * 3),
        };
        let reconnect_initial = positive_dur(
            c,
            cam.reconnect_initial,
            defaults::RECONNECT_INITIAL,
            "reconnect_initial",
        )?;
        let max_span = cam.reconnect_max.as_ref().map(Spanned::span);
        let reconnect_max = positive_dur(
            c,
            cam.reconnect_max,
            defaults::RECONNECT_MAX.max(reconnect_initial),
            "reconnect_max",
        )?;
        if reconnect_max < reconnect_initial {
            return Err(c.error(
                max_span.unwrap_or(0..0),
                "reconnect_max is shorter than reconnect_initial\nhelp: the backoff doubles from reconnect_initial up to reconnect_max",
            ));
        }
        if cam.looping == Some(true) && !matches!(source, Source::File(_)) {
            return Err(c.error(
                cam.source.span(),
                "`loop = true` only applies to file sources\nhelp: remove `loop`, or point source at a video file",
            ));
        }
        out.push(CameraSpec {
            name,
            source,
            fps,
            width,
            height,
            buffer,
            memory,
            looping: cam.looping.unwrap_or(false),
            stall_timeout,
            reconnect_initial,
            reconnect_max,
            rtsp_transport: cam.rtsp_transport.unwrap_or(RtspTransport::Auto),
            enabled: cam.enabled.unwrap_or(true),
        });
    }
    Ok(out)
}

fn questions(
    c: &mut Checker,
    raw: Vec<RawQuestion>,
    cameras: &[CameraSpec],
    model: Option<&ModelSettings>,
) -> Result<Vec<QuestionSpec>, ConfigError> {
    let first_ask = raw.first().map(|q| q.ask.span());
    let mut seen: HashMap<String, Range<usize>> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for (index, q) in raw.into_iter().enumerate() {
        let camera_name = q.camera.get_ref();
        let Some(camera) = cameras.iter().find(|cam| &cam.name == camera_name) else {
            let known: Vec<&str> = cameras.iter().map(|c| c.name.as_str()).collect();
            return Err(c.error(
                q.camera.span(),
                format!(
                    "question names camera \"{camera_name}\", which is not defined\nhelp: defined cameras: {}",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            ));
        };
        let (name, name_span) = match &q.name {
            Some(n) => {
                check_name(c, n, "question")?;
                (n.get_ref().clone(), n.span())
            }
            None => (format!("question-{}", index + 1), q.ask.span()),
        };
        if let Some(first) = seen.get(&name) {
            return Err(c.error(
                name_span,
                format!(
                    "question \"{name}\" is defined twice (first at line {})\nhelp: give each question its own name",
                    c.line_of(first)
                ),
            ));
        }
        seen.insert(name.clone(), name_span);
        if q.ask.get_ref().trim().is_empty() {
            return Err(c.error(
                q.ask.span(),
                "`ask` is empty\nhelp: write the question, e.g. \"Is anyone on the path?\"",
            ));
        }
        let answer = q.answer.get_ref().clone();
        let every = positive_dur(c, q.every, defaults::EVERY, "every")?;
        let window = match q.window {
            Some(w) => {
                if let Window::Span(span) = *w.get_ref()
                    && span > camera.buffer
                {
                    return Err(c.error(
                            w.span(),
                            format!(
                                "window is longer than camera \"{}\" keeps ({}s)\nhelp: shorten the window or raise the camera's `buffer`",
                                camera.name,
                                camera.buffer.as_secs()
                            ),
                        ));
                }
                *w.get_ref()
            }
            None => Window::Frames(1),
        };
        let alert_when = q
            .alert_when
            .map(|a| {
                answer
                    .parse_alert(a.get_ref())
                    .map_err(|e| c.error(a.span(), e))
            })
            .transpose()?;
        let consecutive = match q.consecutive {
            Some(n) if *n.get_ref() < 1 || *n.get_ref() > 1000 => {
                return Err(c.error(n.span(), "consecutive must be between 1 and 1000"));
            }
            Some(n) => *n.get_ref() as u32,
            None => 1,
        };
        let cooldown = q.cooldown.map(|d| d.into_inner().get()).unwrap_or_default();
        let mut examples = Vec::with_capacity(q.examples.len());
        for ex in q.examples {
            answer
                .check_answer(ex.answer.get_ref())
                .map_err(|e| c.error(ex.answer.span(), e))?;
            let image = c.resolve(ex.image.get_ref());
            if !image.is_file() {
                return Err(c.error(
                    ex.image.span(),
                    format!(
                        "example image {} does not exist\nhelp: paths are relative to the config file's folder",
                        image.display()
                    ),
                ));
            }
            examples.push(Example {
                image,
                answer: ex.answer.into_inner(),
            });
        }
        out.push(QuestionSpec {
            name,
            camera: camera.name.clone(),
            ask: q.ask.into_inner(),
            answer,
            every,
            window,
            alert_when,
            consecutive,
            cooldown,
            examples,
        });
    }
    if let Some(first_ask) = first_ask {
        let missing: Vec<&str> = match model {
            None => vec!["lm", "encoder", "resampler", "adapter"],
            Some(m) => [
                ("encoder", m.encoder.is_none()),
                ("resampler", m.resampler.is_none()),
                ("adapter", m.adapter.is_none()),
            ]
            .into_iter()
            .filter_map(|(k, absent)| absent.then_some(k))
            .collect(),
        };
        if !missing.is_empty() {
            return Err(c.error(
                first_ask,
                format!(
                    "standing questions need the vision models and an adapter, but [model] has no {}\nhelp: set them in [model] (see config/example.toml), or remove the [[question]]s",
                    missing.join(", ")
                ),
            ));
        }
    }
    Ok(out)
}
