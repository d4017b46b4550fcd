//! What every check of the config needs: [`Checker`] (the file, its text
//! and the warnings so far) and the small checks more than one section
//! uses. A leaf: the sections' validators read it, it reads none of them.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::ConfigError;
use super::units::Dur;

/// Carries what every error needs: the file and its text.
pub(super) struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    /// Relative paths in the file are relative to its folder.
    base: PathBuf,
    /// What is worth saying but does not stop the daemon.
    pub(super) warnings: Vec<String>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(path: &'a Path, text: &'a str, base: PathBuf) -> Checker<'a> {
        Checker {
            path,
            text,
            base,
            warnings: Vec::new(),
        }
    }

    pub(super) fn error(&self, span: Range<usize>, message: impl AsRef<str>) -> ConfigError {
        ConfigError::at(self.path, self.text, Some(span), message.as_ref())
    }

    /// The config file's folder, against which relative paths resolve.
    pub(super) fn base(&self) -> &Path {
        &self.base
    }

    pub(super) fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub(super) fn line_of(&self, span: &Range<usize>) -> usize {
        self.text[..span.start.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    pub(super) fn warn_if_missing(&mut self, what: &str, path: &Path) {
        if !path.exists() {
            self.warnings
                .push(format!("{what} {} does not exist (yet)", path.display()));
        }
    }
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
}

pub(super) fn check_name(
    c: &Checker,
    name: &Spanned<String>,
    what: &str,
) -> Result<(), ConfigError> {
    if is_valid_name(name.get_ref()) {
        Ok(())
    } else {
        Err(c.error(
            name.span(),
            format!(
                "{what} name \"{}\" is not usable in URLs and logs\nhelp: use 1 to 64 letters, digits, '-' or '_'",
                name.get_ref()
            ),
        ))
    }
}

pub(super) fn positive_dur(
    c: &Checker,
    value: Option<Spanned<Dur>>,
    default: std::time::Duration,
    key: &str,
) -> Result<std::time::Duration, ConfigError> {
    match value {
        Some(v) if v.get_ref().get().is_zero() => {
            Err(c.error(v.span(), format!("{key} must be longer than zero")))
        }
        Some(v) => Ok(v.into_inner().get()),
        None => Ok(default),
    }
}
