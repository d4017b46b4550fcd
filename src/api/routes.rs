//! The endpoints: request → response, with JSON errors
//! `{"error": {"code", "message"}}` and the status that fits.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Value, json};

use super::context::{API_METRICS, ApiContext};
use super::http::{Request, Response};
use super::metrics;
use crate::config::{AnswerKind, Example, Window};
use crate::metrics::status_object;
use crate::output::{BACKLOG_METRICS, OUTPUT_METRICS};
use crate::store::{EventFilter, StoredEvent};
use crate::watch::{AskError, AskRequest, Subscription, WORKER_METRICS};

pub enum Reply {
    Done(Response),
    Events {
        subscription: Subscription<Arc<StoredEvent>>,
        backlog: Vec<StoredEvent>,
        filter: EventFilter,
    },
}

/// Event list sizes: the default and the most one request may ask for.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Longest question accepted, in bytes.
const MAX_QUESTION: usize = 1000;

pub fn route(ctx: &ApiContext, req: &Request) -> Reply {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let get = req.method == "GET";
    let done = Reply::Done;
    match (segments.as_slice(), get, req.method.as_str()) {
        (["v1", "status"], true, _) => done(status(ctx)),
        (["v1", "cameras"], true, _) => done(Response::json(200, &json!((ctx.cameras)()))),
        (["v1", "cameras", name, "snapshot.jpg"], true, _) => done(camera_snapshot(ctx, name)),
        (["v1", "ask"], _, "POST") => done(ask(ctx, req)),
        (["v1", "questions"], true, _) => done(Response::json(
            200,
            &match &ctx.watch {
                Some(w) => json!(*w.shared.questions.lock().unwrap_or_else(|p| p.into_inner())),
                None => json!([]),
            },
        )),
        (["v1", "events"], true, _) => done(events(ctx, req)),
        (["v1", "events", "stream"], true, _) => event_stream(ctx, req),
        (["v1", "events", id, "snapshot.jpg"], true, _) => done(event_snapshot(ctx, id)),
        (["metrics"], true, _) => done(Response {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            headers: Vec::new(),
            body: metrics::render(ctx).into_bytes(),
        }),
        (
            ["v1", "status"]
            | ["v1", "cameras", ..]
            | ["v1", "questions"]
            | ["v1", "events", ..]
            | ["metrics"],
            false,
            m,
        ) => done(
            Response::error(
                405,
                "method_not_allowed",
                format!("{m} is not allowed here; use GET"),
            )
            .with_header("Allow", "GET".into()),
        ),
        (["v1", "ask"], _, m) => done(
            Response::error(
                405,
                "method_not_allowed",
                format!("{m} is not allowed here; use POST"),
            )
            .with_header("Allow", "POST".into()),
        ),
        _ => done(Response::error(
            404,
            "not_found",
            format!(
                "no endpoint {} {}; see /v1/status, /v1/cameras, /v1/ask, /v1/questions, /v1/events, /metrics",
                req.method, req.path
            ),
        )),
    }
}

fn status(ctx: &ApiContext) -> Response {
    let worker = ctx.watch.as_ref().map(|w| {
        let mut worker = status_object(WORKER_METRICS, &w.shared.stats);
        worker.extend([
            (
                "questions".to_string(),
                json!(
                    w.shared
                        .questions
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .len()
                ),
            ),
            ("queue_depth".to_string(), json!(w.queue_depth())),
            ("queue_capacity".to_string(), json!(crate::watch::ASK_QUEUE)),
            (
                "heartbeat_age_ms".to_string(),
                json!(w.shared.heartbeat_age().as_millis() as u64),
            ),
        ]);
        worker
    });
    let outputs: Vec<Value> = ctx
        .outputs
        .iter()
        .map(|o| {
            let mut numbers = status_object(OUTPUT_METRICS, o.as_ref());
            if o.knows_backlog() {
                numbers.extend(status_object(BACKLOG_METRICS, o.as_ref()));
            }
            json!({"name": o.name, "kind": o.kind, "stats": numbers})
        })
        .collect();
    Response::json(
        200,
        &json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": ctx.started.elapsed().as_secs(),
            "model": ctx.model,
            "cameras": (ctx.cameras)(),
            "worker": worker,
            "vision": ctx.vision.as_ref().map(|v| v.stats()),
            "outputs": outputs,
            "api": status_object(API_METRICS, &ctx.counters),
            "store": {
                "path": ctx.store.path(),
                "events": ctx.store.count().ok(),
                "bytes": ctx.store.used_bytes().ok(),
            },
        }),
    )
}

fn camera_snapshot(ctx: &ApiContext, name: &str) -> Response {
    let ring = {
        let rings = ctx.rings.read().unwrap_or_else(|p| p.into_inner());
        rings.get(name).cloned()
    };
    let Some(ring) = ring else {
        return unknown_camera(ctx, name);
    };
    let Some(frame) = ring.newest() else {
        return Response::error(
            409,
            "no_frames",
            format!("camera \"{name}\" has no frames yet; try again when it is streaming"),
        )
        .with_header("Retry-After", "2".into());
    };
    match crate::picture::encode_jpeg(&frame) {
        Ok(jpeg) => jpeg_response(jpeg),
        Err(e) => Response::error(500, "snapshot_failed", e.to_string()),
    }
}

fn jpeg_response(jpeg: Vec<u8>) -> Response {
    Response {
        status: 200,
        content_type: "image/jpeg",
        headers: Vec::new(),
        body: jpeg,
    }
}

fn unknown_camera(ctx: &ApiContext, name: &str) -> Response {
    let known: Vec<String> = (ctx.cameras)().into_iter().map(|c| c.name).collect();
    Response::error(
        404,
        "unknown_camera",
        format!(
            "no camera named \"{name}\"; cameras: {}",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ),
    )
}

/// The body of `POST /v1/ask`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AskBody {
    camera: String,
    question: String,
    window: Option<String>,
    answer: Option<AnswerKind>,
    #[serde(default)]
    examples: Vec<ExampleBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExampleBody {
    image: String,
    answer: String,
}

fn bad(message: impl Into<String>) -> Response {
    Response::error(400, "bad_request", message)
}

fn ask(ctx: &ApiContext, req: &Request) -> Response {
    let body: AskBody = match serde_json::from_slice(&req.body) {
        Ok(b) => b,
        Err(e) => {
            return bad(format!(
                "the body is not a valid ask: {e}\nexpected: {{\"camera\": \"name\", \"question\": \"Is anyone there?\", \"window\": \"4s\", \"answer\": \"yes-no\"}}"
            ));
        }
    };
    let question = body.question.trim().to_string();
    if question.is_empty() {
        return bad("`question` is empty");
    }
    if question.len() > MAX_QUESTION {
        return bad(format!("`question` is longer than {MAX_QUESTION} bytes"));
    }
    let window = match body.window.as_deref().map(Window::parse).transpose() {
        Ok(w) => w.unwrap_or(Window::Frames(1)),
        Err(e) => return bad(format!("`window`: {e}")),
    };
    let answer = body.answer.unwrap_or(AnswerKind::YesNo);
    let mut examples = Vec::with_capacity(body.examples.len());
    for ex in body.examples {
        if let Err(e) = answer.check_answer(&ex.answer) {
            return bad(format!("example {}: {e}", ex.image));
        }
        let image = std::path::PathBuf::from(&ex.image);
        if !image.is_absolute() || !image.is_file() {
            return bad(format!(
                "example image {} is not an absolute path to a file the daemon can read",
                ex.image
            ));
        }
        examples.push(Example {
            image,
            answer: ex.answer,
        });
    }
    let request = AskRequest {
        camera: body.camera,
        ask: question,
        window,
        answer,
        examples,
    };
    let Some(watch) = &ctx.watch else {
        return Response::error(
            503,
            "no_models",
            "this daemon has no adapter or vision models configured, so it cannot answer questions\nhelp: set encoder, resampler and adapter in [model]",
        );
    };
    match watch.ask(request, ctx.ask_timeout) {
        Ok(r) => Response::json(200, &json!(r)),
        Err(e) => ask_error(ctx, e),
    }
}

fn ask_error(ctx: &ApiContext, e: AskError) -> Response {
    let message = e.to_string();
    match e {
        AskError::Busy { retry_after_s, .. } => Response::error(503, "busy", message)
            .with_header("Retry-After", retry_after_s.to_string()),
        AskError::UnknownCamera { camera, .. } => unknown_camera(ctx, &camera),
        AskError::NoFrames(_) => {
            Response::error(409, "no_frames", message).with_header("Retry-After", "2".into())
        }
        AskError::Examples(_) => bad(message),
        AskError::Clip(_) | AskError::Lm(_) => Response::error(500, "failed", message),
        AskError::Stopped => Response::error(503, "stopping", message),
        AskError::Timeout(_) => Response::error(504, "timeout", message),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `since`: Unix milliseconds, or a duration back from now ("10m").
fn parse_since(text: &str) -> Result<u64, String> {
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    crate::config::parse_duration(text)
        .map(|d| now_ms().saturating_sub(d.as_millis() as u64))
        .map_err(|e| format!("`since` is neither Unix milliseconds nor a duration: {e}"))
}

fn filter(req: &Request) -> Result<EventFilter, Response> {
    let mut f = EventFilter {
        camera: req.query("camera").map(str::to_string),
        question: req.query("question").map(str::to_string),
        ..EventFilter::default()
    };
    if let Some(s) = req.query("since") {
        f.since_ms = Some(parse_since(s).map_err(bad)?);
    }
    if let Some(a) = req.query("after").or(req.header("last-event-id")) {
        f.after_id = Some(
            a.trim()
                .parse()
                .map_err(|_| bad(format!("`after` \"{a}\" is not an event id")))?,
        );
    }
    f.limit = match req.query("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(bad(format!("`limit` must be 1 to {MAX_LIMIT}"))),
        },
    };
    Ok(f)
}

fn events(ctx: &ApiContext, req: &Request) -> Response {
    let f = match filter(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match ctx.store.events(&f) {
        Ok(list) => Response::json(200, &json!(list)),
        Err(e) => Response::error(500, "store", e.to_string()),
    }
}

fn event_snapshot(ctx: &ApiContext, id: &str) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return bad(format!("\"{id}\" is not an event id"));
    };
    match ctx.store.snapshot(id) {
        Ok(Some(jpeg)) => jpeg_response(jpeg),
        Ok(None) => Response::error(404, "not_found", format!("event {id} has no snapshot")),
        Err(e) => Response::error(500, "store", e.to_string()),
    }
}

fn event_stream(ctx: &ApiContext, req: &Request) -> Reply {
    let f = match filter(req) {
        Ok(f) => f,
        Err(r) => return Reply::Done(r),
    };
    // Subscribe before reading the backlog, so nothing falls in between.
    let Some(watch) = &ctx.watch else {
        return Reply::Done(Response::error(
            503,
            "no_models",
            "this daemon has no adapter or vision models configured, so it records no events",
        ));
    };
    let Some(subscription) = watch.shared.events.subscribe() else {
        return Reply::Done(
            Response::error(503, "busy", "too many event streams are open")
                .with_header("Retry-After", "5".into()),
        );
    };
    let backlog = match f.after_id {
        Some(_) => match ctx.store.events(&EventFilter {
            limit: MAX_LIMIT,
            ..f.clone()
        }) {
            Ok(mut list) => {
                list.reverse();
                list
            }
            Err(e) => return Reply::Done(Response::error(500, "store", e.to_string())),
        },
        None => Vec::new(),
    };
    Reply::Events {
        subscription,
        backlog,
        filter: f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_milliseconds_or_a_duration() {
        assert_eq!(parse_since("1700000000000"), Ok(1_700_000_000_000));
        let back = parse_since("10m").unwrap();
        let expected = now_ms() - 600_000;
        assert!(back.abs_diff(expected) < 5_000);
        assert!(parse_since("yesterday").is_err());
    }
}
