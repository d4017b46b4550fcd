//! The client commands of the `vigil` CLI (`ask`, `status`, `questions`,
//! `events`): human-readable by default, the daemon's JSON with `--json`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::client::{self, ClientError};

/// The socket the CLI uses unless told otherwise.
pub fn default_socket() -> std::path::PathBuf {
    std::env::var_os("VIGIL_SOCKET")
        .map(Into::into)
        .unwrap_or_else(|| crate::config::defaults::SOCKET.into())
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The daemon answered with an error.
    #[error("{message}")]
    Daemon { status: u16, message: String },
    #[error("{0}")]
    Usage(String),
}

const TIMEOUT: Duration = Duration::from_secs(90);

fn get_json(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, CliError> {
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
    let reply = client::request(socket, method, path, bytes.as_deref(), TIMEOUT)?;
    let value: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if reply.status >= 400 {
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned());
        return Err(CliError::Daemon {
            status: reply.status,
            message,
        });
    }
    Ok(value)
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// `--answer yes-no | count | text | choices:a,b,c` as the API's JSON.
pub fn answer_json(text: &str) -> Result<Value, CliError> {
    match text {
        "yes-no" | "yes/no" | "yesno" => Ok(json!("yes-no")),
        "count" => Ok(json!("count")),
        "text" => Ok(json!("text")),
        other => match other.strip_prefix("choices:") {
            Some(list) => {
                let choices: Vec<&str> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect();
                if choices.len() < 2 {
                    return Err(CliError::Usage(
                        "choices need at least two: --answer choices:cat,dog".into(),
                    ));
                }
                Ok(json!({ "choices": choices }))
            }
            None => Err(CliError::Usage(format!(
                "unknown answer type \"{other}\"; use yes-no, count, text or choices:a,b"
            ))),
        },
    }
}

pub fn ask(
    socket: &Path,
    camera: &str,
    question: &str,
    window: Option<&str>,
    answer: &str,
    as_json: bool,
) -> Result<(), CliError> {
    let mut body =
        json!({ "camera": camera, "question": question, "answer": answer_json(answer)? });
    if let Some(w) = window {
        body["window"] = json!(w);
    }
    let r = get_json(socket, "POST", "/v1/ask", Some(&body))?;
    if as_json {
        print_json(&r);
        return Ok(());
    }
    let scores: Vec<String> = r["scores"]
        .as_array()
        .map(|a| {
            a.iter()
                .take(3)
                .filter_map(|p| Some(format!("{} {:.0}%", p[0].as_str()?, p[1].as_f64()? * 100.0)))
                .collect()
        })
        .unwrap_or_default();
    println!("{}", r["answer"].as_str().unwrap_or(""));
    println!(
        "  ({} frame{} of {}, {:.0} ms{}{})",
        r["frames_used"],
        if r["frames_used"] == 1 { "" } else { "s" },
        camera,
        r["latency_ms"].as_f64().unwrap_or(0.0),
        if scores.is_empty() { "" } else { "; " },
        scores.join(", ")
    );
    for w in r["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or_default());
    }
    Ok(())
}

pub fn status(socket: &Path, as_json: bool) -> Result<(), CliError> {
    let s = get_json(socket, "GET", "/v1/status", None)?;
    if as_json {
        print_json(&s);
        return Ok(());
    }
    println!(
        "vigil {} up {}",
        s["version"].as_str().unwrap_or("?"),
        human_duration(s["uptime_s"].as_u64().unwrap_or(0))
    );
    if let Some(m) = s["model"].as_object() {
        println!(
            "model: {} + {}",
            m.get("lm").and_then(Value::as_str).unwrap_or("-"),
            m.get("adapter")
                .and_then(Value::as_str)
                .unwrap_or("no adapter")
        );
    }
    for c in s["cameras"].as_array().into_iter().flatten() {
        println!(
            "camera {:<16} {:<12} {} frames, {} reconnects, ring {} frames{}",
            c["name"].as_str().unwrap_or(""),
            c["state"].as_str().unwrap_or(""),
            c["frames"],
            c["reconnects"],
            c["ring"]["frames"],
            c["last_error"]
                .as_str()
                .map(|e| format!(" — {e}"))
                .unwrap_or_default()
        );
    }
    let w = &s["worker"];
    if w.is_object() {
        println!(
            "worker: {} questions; {} asks answered, {} refused; {} runs, {} gated (frames unchanged), {} ticks skipped; queue {}/{}",
            w["questions"],
            w["asks_answered"],
            w["asks_refused"],
            w["runs"],
            w["runs_gated"],
            w["ticks_skipped"],
            w["queue_depth"],
            w["queue_capacity"]
        );
    } else {
        println!("worker: not running (no adapter or vision models configured)");
    }
    println!(
        "events: {} stored in {}",
        s["store"]["events"],
        s["store"]["path"].as_str().unwrap_or("")
    );
    Ok(())
}

pub fn questions(socket: &Path, as_json: bool) -> Result<(), CliError> {
    let q = get_json(socket, "GET", "/v1/questions", None)?;
    if as_json {
        print_json(&q);
        return Ok(());
    }
    let list = q.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no standing questions");
    }
    for q in list {
        let answer = q["last_answer"]["text"].as_str().unwrap_or("(not yet)");
        println!(
            "{:<20} {:<8} {:<10} {} — \"{}\" on {} every {}s over {}",
            q["name"].as_str().unwrap_or(""),
            q["state"].as_str().unwrap_or(""),
            answer,
            q["answer_type"].as_str().unwrap_or(""),
            q["ask"].as_str().unwrap_or(""),
            q["camera"].as_str().unwrap_or(""),
            q["every_s"],
            q["window"].as_str().unwrap_or("")
        );
        if let Some(e) = q["last_error"].as_str() {
            println!("  last error: {e}");
        }
        if let Some(w) = q["warning"].as_str() {
            println!("  warning: {w}");
        }
    }
    Ok(())
}

fn event_line(e: &Value) -> String {
    let t = e["time_ms"].as_u64().unwrap_or(0);
    let what = match e["kind"].as_str().unwrap_or("") {
        "alert" => "ALERT ".to_string(),
        "normal" => "normal".to_string(),
        "ask" => "ask   ".to_string(),
        _ => "change".to_string(),
    };
    let name = e["question"].as_str().unwrap_or("-");
    let previous = e["previous"]
        .as_str()
        .map(|p| format!(" (was {p})"))
        .unwrap_or_default();
    format!(
        "#{:<6} {} {} {:<12} {:<20} {}{}  \"{}\"",
        e["id"],
        clock(t),
        what,
        e["camera"].as_str().unwrap_or(""),
        name,
        e["answer"].as_str().unwrap_or(""),
        previous,
        e["ask"].as_str().unwrap_or("")
    )
}

/// `HH:MM:SS` UTC of a Unix-ms time.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

fn human_duration(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s / 60) % 60),
    }
}

pub fn events(
    socket: &Path,
    query: &[(&str, String)],
    follow: bool,
    as_json: bool,
) -> Result<(), CliError> {
    let qs: String = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let path = format!("/v1/events?{qs}");
    let list = get_json(socket, "GET", &path, None)?;
    let mut last_id = 0;
    // Oldest first on a terminal, like a log.
    for e in list.as_array().into_iter().flatten().rev() {
        last_id = last_id.max(e["id"].as_i64().unwrap_or(0));
        if as_json {
            println!("{e}");
        } else {
            println!("{}", event_line(e));
        }
    }
    if !follow {
        return Ok(());
    }
    let mut stream_query: Vec<String> = query
        .iter()
        .filter(|(k, _)| *k == "camera" || *k == "question")
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    stream_query.push(format!("after={last_id}"));
    let path = format!("/v1/events/stream?{}", stream_query.join("&"));
    client::follow(socket, &path, |data| {
        let line = match serde_json::from_str::<Value>(data) {
            Ok(e) if !as_json => event_line(&e),
            _ => data.to_string(),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").and_then(|_| out.flush()).is_ok()
    })?;
    Ok(())
}

/// Percent-encodes a query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_types_from_the_command_line() {
        assert_eq!(answer_json("yes-no").unwrap(), json!("yes-no"));
        assert_eq!(
            answer_json("choices:cat, dog").unwrap(),
            json!({"choices": ["cat", "dog"]})
        );
        assert!(answer_json("choices:cat").is_err());
        assert!(answer_json("maybe").is_err());
        assert_eq!(encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
