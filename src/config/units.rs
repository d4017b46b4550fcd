//! Human-written quantities in the config file: durations ("5s", "2m") and
//! byte sizes ("64MiB"). Both deserialize from strings so that a typo is
//! reported at the value's own line and column by the TOML deserializer.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// A duration written as a number and a unit: `500ms`, `5s`, `1.5m`, `2h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

/// Splits `"12.5 MiB"` into `(12.5, "MiB")`; the unit may be empty.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number: f64 = text[..end].parse().ok()?;
    Some((number, text[end..].trim()))
}

/// Parses a duration such as `"5s"`; the error says how to write one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let hint =
        "write a number and a unit: ms, s, m, h or d (for example \"500ms\", \"5s\", \"2m\")";
    let Some((number, unit)) = split_number(text) else {
        return Err(format!("\"{text}\" is not a duration; {hint}"));
    };
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        "" => return Err(format!("\"{text}\" has no unit; {hint}")),
        other => return Err(format!("unknown unit \"{other}\" in \"{text}\"; {hint}")),
    };
    let seconds = number * seconds_per_unit;
    if !seconds.is_finite() || seconds > 10.0 * 365.0 * 86400.0 {
        return Err(format!("\"{text}\" is too long a duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a byte size such as `"64MiB"`, `"1.5GB"` or `"4096"`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let hint = "write a number and a unit: B, KiB, MiB, GiB (or KB, MB, GB), for example \"64MiB\"";
    let Some((number, unit)) = split_number(text) else {
        return Err(format!("\"{text}\" is not a size; {hint}"));
    };
    let factor: f64 = match unit {
        "" | "B" => 1.0,
        "KiB" | "K" => 1024.0,
        "MiB" | "M" => 1024.0 * 1024.0,
        "GiB" | "G" => 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => return Err(format!("unknown unit \"{other}\" in \"{text}\"; {hint}")),
    };
    let bytes = number * factor;
    if !bytes.is_finite() || bytes > 1e15 {
        return Err(format!("\"{text}\" is too large a size"));
    }
    Ok(bytes.round() as u64)
}

struct DurVisitor;

impl Visitor<'_> for DurVisitor {
    type Value = Dur;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration string such as \"5s\"")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
        parse_duration(v).map(Dur).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
        Err(E::custom(format!(
            "a duration needs a unit: write \"{v}s\" for {v} seconds"
        )))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dur, E> {
        Err(E::custom(format!(
            "a duration needs a unit: write \"{v}s\" for {v} seconds"
        )))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DurVisitor)
    }
}

/// A byte count written as `"64MiB"` (or a plain integer of bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

struct ByteSizeVisitor;

impl Visitor<'_> for ByteSizeVisitor {
    type Value = ByteSize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a size such as \"64MiB\"")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        parse_bytes(v).map(ByteSize).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v)
            .map(ByteSize)
            .map_err(|_| E::custom("a size cannot be negative"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ByteSizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5 m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn durations_without_known_unit_are_refused_with_a_hint() {
        let err = parse_duration("5 parsecs").unwrap_err();
        assert!(err.contains("unknown unit \"parsecs\""), "{err}");
        assert!(err.contains("\"5s\""), "{err}");
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("3 bananas").unwrap_err().contains("bananas"));
    }
}
