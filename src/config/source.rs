//! Where a camera's pictures come from, parsed from the `source` string.

use std::fmt;
use std::path::{Path, PathBuf};

/// One camera source. Each kind has its own pipeline template in `pipelines/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `rtsp://` or `rtsps://` URL of a network camera.
    Rtsp(String),
    /// A video file; relative paths are resolved against the config's folder.
    File(PathBuf),
    /// A local capture device such as `/dev/video0`.
    V4l2(PathBuf),
    /// An `http(s)://` MJPEG stream (multipart/x-mixed-replace).
    Http(String),
    /// GStreamer's `videotestsrc` with a named pattern (`test:ball`).
    Test(String),
}

impl Source {
    /// Parses a source string; `base` is the folder relative file paths are
    /// resolved against (the config file's folder, or the working directory).
    pub fn parse(text: &str, base: &Path) -> Result<Source, String> {
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        if text.is_empty() {
            return Err("the source is empty; write an rtsp:// or http:// URL, a file path, v4l2:///dev/videoN or test:PATTERN".into());
        }
        if lower.starts_with("rtsp://") || lower.starts_with("rtsps://") {
            return Ok(Source::Rtsp(text.to_string()));
        }
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(Source::Http(text.to_string()));
        }
        if let Some(rest) = text.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(format!(
                    "\"{text}\" is not an absolute file URL; write file:///absolute/path or a plain path relative to the config file"
                ));
            }
            return Ok(Source::File(PathBuf::from(rest)));
        }
        if let Some(rest) = text.strip_prefix("v4l2://") {
            if !rest.starts_with("/dev/") {
                return Err(format!(
                    "\"{text}\" does not name a device; write v4l2:///dev/video0"
                ));
            }
            return Ok(Source::V4l2(PathBuf::from(rest)));
        }
        if let Some(pattern) = text.strip_prefix("test:") {
            if pattern.is_empty()
                || !pattern
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "\"{text}\" needs a videotestsrc pattern name, for example test:ball or test:smpte"
                ));
            }
            return Ok(Source::Test(pattern.to_string()));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(format!(
                "unsupported source scheme \"{scheme}://\"; use rtsp://, http(s)://, file:///, v4l2:///dev/videoN, test:PATTERN or a file path"
            ));
        }
        let path = Path::new(text);
        Ok(Source::File(if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        }))
    }

    /// The short name of the source kind, which is also its template's name.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Rtsp(_) => "rtsp",
            Source::File(_) => "file",
            Source::V4l2(_) => "v4l2",
            Source::Http(_) => "http",
            Source::Test(_) => "test",
        }
    }
}

impl fmt::Display for Source {
    /// Shows the source without credentials that may be embedded in a URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Rtsp(url) | Source::Http(url) => f.write_str(&redact_url(url)),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::V4l2(p) => write!(f, "v4l2://{}", p.display()),
            Source::Test(p) => write!(f, "test:{p}"),
        }
    }
}

/// `rtsp://user:secret@host/x` → `rtsp://user:***@host/x`, so logs never
/// carry camera passwords.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let base = Path::new("/etc/vigil");
        assert_eq!(
            Source::parse("rtsp://cam/stream", base),
            Ok(Source::Rtsp("rtsp://cam/stream".into()))
        );
        assert_eq!(
            Source::parse("footage/a.mp4", base),
            Ok(Source::File("/etc/vigil/footage/a.mp4".into()))
        );
        assert_eq!(
            Source::parse("file:///srv/a.mp4", base),
            Ok(Source::File("/srv/a.mp4".into()))
        );
        assert_eq!(
            Source::parse("v4l2:///dev/video0", base),
            Ok(Source::V4l2("/dev/video0".into()))
        );
        assert_eq!(
            Source::parse("https://cam/mjpg", base),
            Ok(Source::Http("https://cam/mjpg".into()))
        );
        assert_eq!(
            Source::parse("test:ball", base),
            Ok(Source::Test("ball".into()))
        );
    }

    #[test]
    fn refuses_unknown_schemes_and_says_what_works() {
        let err = Source::parse("ftp://cam/x", Path::new("/")).unwrap_err();
        assert!(
            err.contains("\"ftp://\"") && err.contains("rtsp://"),
            "{err}"
        );
        assert!(Source::parse("test:", Path::new("/")).is_err());
        assert!(Source::parse("v4l2://video0", Path::new("/")).is_err());
    }

    #[test]
    fn hides_passwords_in_urls() {
        assert_eq!(
            redact_url("rtsp://admin:hunter2@10.0.0.5:554/live"),
            "rtsp://admin:***@10.0.0.5:554/live"
        );
        assert_eq!(redact_url("rtsp://cam/live"), "rtsp://cam/live");
    }
}
