//! Latency histograms, metric descriptors and the Prometheus text format.
//!
//! Every stage counts what it does with atomics (no lock on the hot path)
//! and describes each number once, in a table of [`Metric`]s beside its
//! stats: `/metrics` renders the tables in the exposition format here, and
//! `/v1/status` reads the same tables by key.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency buckets, in milliseconds.
const BUCKETS_MS: [f64; 12] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS_MS.len()],
    /// Observations above the last bound.
    over: AtomicU64,
    sum_us: AtomicU64,
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Per bucket, the observations at or below its bound (not cumulative).
    pub counts: Vec<u64>,
    pub over: u64,
    pub sum_ms: f64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.over
    }
}

impl Histogram {
    pub fn observe_ms(&self, ms: f64) {
        let ms = ms.max(0.0);
        match BUCKETS_MS.iter().position(|&b| ms <= b) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_us
            .fetch_add((ms * 1000.0) as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            over: self.over.load(Ordering::Relaxed),
            sum_ms: self.sum_us.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}

/// What a number is to Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (until a restart).
    Counter,
    /// A level now: goes up and down.
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One number a stage keeps, described once: its name in `/metrics`, its
/// key in `/v1/status`, and how to read it from the stage's stats `T`.
pub struct Metric<T> {
    pub name: &'static str,
    pub key: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub read: fn(&T) -> u64,
}

/// A stage's numbers by key, as `/v1/status` shows them.
pub fn status_object<T>(
    table: &[Metric<T>],
    stats: &T,
) -> serde_json::Map<String, serde_json::Value> {
    table
        .iter()
        .map(|m| (m.key.to_string(), (m.read)(stats).into()))
        .collect()
}

/// Builds a Prometheus text exposition.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// A metric with one value per label set (`labels` is `key="v",…`).
    pub fn family(&mut self, name: &str, help: &str, kind: &str, values: &[(String, f64)]) {
        self.header(name, help, kind);
        for (labels, value) in values {
            if labels.is_empty() {
                let _ = writeln!(self.text, "{name} {value}");
            } else {
                let _ = writeln!(self.text, "{name}{{{labels}}} {value}");
            }
        }
    }

    pub fn single(&mut self, name: &str, help: &str, kind: &str, value: f64) {
        self.family(name, help, kind, &[(String::new(), value)]);
    }

    /// One family per metric of `table`, a sample per labelled item
    /// (labels `""` for a stage with one set of stats).
    pub fn table<T>(&mut self, table: &[Metric<T>], items: &[(String, &T)]) {
        for m in table {
            let samples: Vec<(String, f64)> = items
                .iter()
                .map(|(labels, stats)| (labels.clone(), (m.read)(stats) as f64))
                .collect();
            self.family(m.name, m.help, m.kind.as_str(), &samples);
        }
    }

    /// A summary without quantiles: a sum and a count.
    pub fn summary(&mut self, name: &str, help: &str, sum: f64, count: u64) {
        self.header(name, help, "summary");
        let _ = writeln!(self.text, "{name}_sum {sum}");
        let _ = writeln!(self.text, "{name}_count {count}");
    }

    /// A histogram in seconds, as Prometheus conventions want.
    pub fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.header(name, help, "histogram");
        let mut cumulative = 0;
        for (bound, count) in BUCKETS_MS.iter().zip(&h.counts) {
            cumulative += count;
            let _ = writeln!(
                self.text,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                bound / 1000.0
            );
        }
        let _ = writeln!(self.text, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
        let _ = writeln!(self.text, "{name}_sum {}", h.sum_ms / 1000.0);
        let _ = writeln!(self.text, "{name}_count {}", h.count());
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// A label value escaped for the exposition format.
pub fn label(key: &str, value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{key}=\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_in_seconds() {
        let h = Histogram::default();
        for ms in [3.0, 7.0, 7.5, 400.0, 99999.0] {
            h.observe_ms(ms);
        }
        let mut e = Exposition::default();
        e.histogram("x_seconds", "test", &h.snapshot());
        let text = e.finish();
        assert!(
            text.contains("x_seconds_bucket{le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("x_seconds_bucket{le=\"0.01\"} 3\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"0.5\"} 4\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"30\"} 4\n"), "{text}");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 5\n"), "{text}");
        assert!(text.contains("x_seconds_count 5\n"), "{text}");
    }

    #[test]
    fn a_table_feeds_both_the_exposition_and_the_status() {
        struct Stats {
            seen: u64,
            now: u64,
        }
        const TABLE: &[Metric<Stats>] = &[
            Metric {
                name: "x_seen_total",
                key: "seen",
                help: "Things seen.",
                kind: Kind::Counter,
                read: |s| s.seen,
            },
            Metric {
                name: "x_now",
                key: "now",
                help: "Things now.",
                kind: Kind::Gauge,
                read: |s| s.now,
            },
        ];
        let (a, b) = (Stats { seen: 3, now: 1 }, Stats { seen: 5, now: 0 });
        let mut e = Exposition::default();
        e.table(TABLE, &[(label("cam", "a"), &a), (label("cam", "b"), &b)]);
        let text = e.finish();
        assert!(text.contains("# TYPE x_seen_total counter\n"), "{text}");
        assert!(text.contains("x_seen_total{cam=\"b\"} 5\n"), "{text}");
        assert!(
            text.contains("# TYPE x_now gauge\nx_now{cam=\"a\"} 1\n"),
            "{text}"
        );
        let status = status_object(TABLE, &a);
        assert_eq!(
            serde_json::Value::Object(status),
            serde_json::json!({"seen": 3, "now": 1})
        );
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label("q", "a\"b\\c\nd"), "q=\"a\\\"b\\\\c\\nd\"");
    }
}
