//! Log events to the systemd journal over its native protocol, so that each
//! field of an event becomes a journal field: an alert's line carries
//! `CAMERA=`, `QUESTION=`, `ANSWER=` and `EVENT_ID=`, and
//! `journalctl -u vigil CAMERA=yard` finds it. Pure Rust: one datagram per
//! event on journald's socket (systemd.journal-fields(7), "native
//! protocol" in systemd's docs).

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// journald's socket for native-protocol datagrams.
pub const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";

/// True when stderr is the journal stream systemd set up for this process
/// (`JOURNAL_STREAM` names its device and inode): then stderr lines would
/// reach the journal anyway, and the native protocol adds the fields. A
/// `JOURNAL_STREAM` inherited by a child whose stderr goes elsewhere (a
/// shell started from the service, a pipe) does not match.
pub fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// A tracing layer that sends each event to journald. When a datagram
/// cannot be sent (journald restarting, a message too large), the line goes
/// to stderr instead, which is the journal's stream: nothing is lost, only
/// its fields.
pub struct JournalLayer {
    socket: UnixDatagram,
    path: PathBuf,
}

impl JournalLayer {
    pub fn new(path: &Path) -> std::io::Result<JournalLayer> {
        Ok(JournalLayer {
            socket: UnixDatagram::unbound()?,
            path: path.to_path_buf(),
        })
    }
}

impl<S: Subscriber> Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        let datagram = encode(level, &fields);
        if self.socket.send_to(&datagram, &self.path).is_err() {
            let _ = writeln!(std::io::stderr(), "{:>5} {}", level, fields.line());
        }
    }
}

/// An event's message and fields, in the order they were written.
#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, String)>,
}

impl Fields {
    /// The line as the plain formatter writes it: message, then key=value.
    fn line(&self) -> String {
        let mut line = self.message.clone();
        for (k, v) in &self.pairs {
            let _ = write!(line, " {k}={v}");
        }
        line
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.pairs.push((field.name(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs.push((field.name(), value.to_string()));
        }
    }
}

/// syslog priorities: err 3, warning 4, info 6, debug 7.
fn priority(level: Level) -> &'static str {
    match level {
        Level::ERROR => "3",
        Level::WARN => "4",
        Level::INFO => "6",
        _ => "7",
    }
}

/// A journal field name: upper case letters, digits and '_', not starting
/// with '_' (those are trusted fields journald sets itself) or a digit.
fn field_name(name: &str) -> Option<String> {
    let upper: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' | '0'..='9' => c,
            _ => '_',
        })
        .collect();
    let first = upper.chars().next()?;
    (first.is_ascii_uppercase() && upper.len() <= 64).then_some(upper)
}

fn put(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    if value.contains('\n') {
        // A value with newlines: the name, a newline, the length as a
        // little-endian u64, the bytes, a newline.
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value.as_bytes());
    out.push(b'\n');
}

fn encode(level: Level, fields: &Fields) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    put(&mut out, "PRIORITY", priority(level));
    put(&mut out, "SYSLOG_IDENTIFIER", "vigil");
    put(&mut out, "MESSAGE", &fields.line());
    for (k, v) in &fields.pairs {
        if let Some(name) = field_name(k) {
            // The well-known fields stay journald's own.
            if !matches!(name.as_str(), "MESSAGE" | "PRIORITY" | "SYSLOG_IDENTIFIER") {
                put(&mut out, &name, v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_encoded_in_the_native_protocol() {
        let fields = Fields {
            message: "standing question event".into(),
            pairs: vec![
                ("camera", "yard".into()),
                ("event_id", "42".into()),
                ("error", "two\nlines".into()),
                ("1bad", "dropped".into()),
            ],
        };
        let out = encode(Level::WARN, &fields);
        let mut want = b"PRIORITY=4\nSYSLOG_IDENTIFIER=vigil\nMESSAGE=standing question event camera=yard event_id=42 error=two\n".to_vec();
        // MESSAGE itself has a newline (from `error`): length-prefixed.
        want.truncate(b"PRIORITY=4\nSYSLOG_IDENTIFIER=vigil\n".len());
        let message =
            "standing question event camera=yard event_id=42 error=two\nlines 1bad=dropped";
        want.extend_from_slice(b"MESSAGE\n");
        want.extend_from_slice(&(message.len() as u64).to_le_bytes());
        want.extend_from_slice(message.as_bytes());
        want.extend_from_slice(b"\nCAMERA=yard\nEVENT_ID=42\nERROR\n");
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want)
        );
    }

    #[test]
    fn field_names_follow_the_journal_rules() {
        assert_eq!(field_name("event_id").as_deref(), Some("EVENT_ID"));
        assert_eq!(field_name("latency.ms").as_deref(), Some("LATENCY_MS"));
        assert_eq!(field_name("_private"), None);
        assert_eq!(field_name("9lives"), None);
        assert_eq!(field_name(""), None);
    }
}
