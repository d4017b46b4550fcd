//! Config errors that point at the offending text: file, line, column, the
//! line itself with a caret, and how to fix it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Box<Diagnostic>),
}

impl ConfigError {
    /// An error located at `span` (byte offsets) of `text`, read from `path`.
    pub fn at(path: &Path, text: &str, span: Option<Range<usize>>, message: &str) -> ConfigError {
        // Messages written by our deserializers may carry their own help line.
        let (message, help) = match message.split_once("\nhelp: ") {
            Some((m, h)) => (m.trim().to_string(), Some(h.trim().to_string())),
            None => (message.trim().to_string(), serde_help(message)),
        };
        let start = span.map(|s| s.start.min(text.len())).unwrap_or(0);
        let (line, column, line_text) = locate(text, start);
        let line_text = redact_line(&line_text);
        ConfigError::Invalid(Box::new(Diagnostic {
            path: path.to_path_buf(),
            line,
            column,
            line_text,
            message,
            help,
        }))
    }

    /// The located diagnostic, when the error has a place in the file.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            ConfigError::Invalid(d) => Some(d),
            ConfigError::Read { .. } => None,
        }
    }
}

/// One located problem in a config file.
#[derive(Debug)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    pub line_text: String,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.message
        )?;
        let gutter = self.line.to_string().len();
        writeln!(f, "{:gutter$} |", "")?;
        writeln!(f, "{} | {}", self.line, self.line_text)?;
        write!(f, "{:gutter$} | {:>col$}", "", "^", col = self.column)?;
        if let Some(help) = &self.help {
            write!(f, "\n{:gutter$} = help: {help}", "")?;
        }
        Ok(())
    }
}

/// Help for the messages serde writes itself.
fn serde_help(message: &str) -> Option<String> {
    if message.starts_with("unknown field") {
        Some("remove the key or fix its spelling; config/example.toml lists every option".into())
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or(rest);
        Some(format!("add `{key} = ...` to this table"))
    } else if message.starts_with("unknown variant") {
        Some("use one of the listed values".into())
    } else {
        None
    }
}

/// Byte offset → (line, column, text of that line), all for humans.
fn locate(text: &str, offset: usize) -> (usize, usize, String) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    let line_end = text[line_start..]
        .find('\n')
        .map(|i| line_start + i)
        .unwrap_or(text.len());
    (
        line,
        column,
        text[line_start..line_end].trim_end().to_string(),
    )
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_at_line_and_column() {
        let text = "[daemon]\nfoo = 1\n  bar = \"é\"\n";
        let offset = text.find("bar").unwrap();
        let err = ConfigError::at(
            Path::new("x.toml"),
            text,
            Some(offset..offset + 3),
            "bad\nhelp: fix it",
        );
        let d = err.diagnostic().unwrap();
        assert_eq!((d.line, d.column), (3, 3));
        assert_eq!(d.help.as_deref(), Some("fix it"));
        let shown = err.to_string();
        assert!(shown.starts_with("x.toml:3:3: bad"), "{shown}");
        assert!(shown.contains("3 |   bar = \"é\""), "{shown}");
    }
}

/// The quoted line of a diagnostic without secrets: errors are printed and,
/// under systemd, logged to the journal. Passwords in URLs become `***`, as
/// do the values of `secret` and `password` keys. The caret still points
/// at the right place for everything before the secret.
fn redact_line(line: &str) -> String {
    let trimmed = line.trim_start();
    for key in ["secret", "password"] {
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            let indent = &line[..line.len() - trimmed.len()];
            return format!("{indent}{key} = \"***\"");
        }
    }
    static USERINFO: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = USERINFO.get_or_init(|| {
        regex::Regex::new(r#"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@"']*):[^\s/@"']*@"#)
            .expect("a valid regex")
    });
    re.replace_all(line, "${1}:***@").into_owned()
}

#[cfg(test)]
mod redact_tests {
    use super::redact_line;

    #[test]
    fn secrets_in_quoted_lines_are_hidden() {
        assert_eq!(
            redact_line(r#"source = "rtsp://admin:hunter2@10.0.0.2:554/s""#),
            r#"source = "rtsp://admin:***@10.0.0.2:554/s""#
        );
        assert_eq!(
            redact_line(r#"  secret = "hunter2""#),
            r#"  secret = "***""#
        );
        assert_eq!(redact_line(r#"fps = 1"#), "fps = 1");
        assert_eq!(
            redact_line(r#"url = "https://example.com:8443/x""#),
            r#"url = "https://example.com:8443/x""#
        );
    }
}
