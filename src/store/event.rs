//! What the store keeps: events as written and as read back.

use serde::Serialize;

/// Why an event was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A standing question's answer changed.
    AnswerChanged,
    /// A standing question entered its alert state.
    Alert,
    /// A standing question returned to normal.
    Normal,
    /// An ad-hoc question was answered.
    Ask,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::AnswerChanged => "answer_changed",
            EventKind::Alert => "alert",
            EventKind::Normal => "normal",
            EventKind::Ask => "ask",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        [
            EventKind::AnswerChanged,
            EventKind::Alert,
            EventKind::Normal,
            EventKind::Ask,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// An event to record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewEvent {
    /// Unix time in milliseconds of the newest frame used.
    pub time_ms: u64,
    pub kind: EventKind,
    pub camera: String,
    /// The standing question's name (`None` for ad-hoc questions).
    pub question: Option<String>,
    /// The question as asked.
    pub ask: String,
    pub answer: String,
    /// The answer before a change.
    pub previous: Option<String>,
    pub scores: Vec<(String, f64)>,
    pub latency_ms: f64,
    pub frames_used: u32,
}

/// An event as stored: what was recorded, its id, and whether a snapshot
/// came with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub id: i64,
    #[serde(flatten)]
    pub event: NewEvent,
    pub has_snapshot: bool,
}

impl StoredEvent {
    pub(super) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
        let kind: String = r.get(2)?;
        let scores: String = r.get(8)?;
        Ok(StoredEvent {
            id: r.get(0)?,
            event: NewEvent {
                time_ms: r.get::<_, i64>(1)? as u64,
                // A kind written by a newer vigil reads as an answer change.
                kind: EventKind::parse(&kind).unwrap_or(EventKind::AnswerChanged),
                camera: r.get(3)?,
                question: r.get(4)?,
                ask: r.get(5)?,
                answer: r.get(6)?,
                previous: r.get(7)?,
                scores: serde_json::from_str(&scores).unwrap_or_default(),
                latency_ms: r.get(9)?,
                frames_used: r.get::<_, i64>(10)? as u32,
            },
            has_snapshot: r.get(11)?,
        })
    }
}

/// Which events to list.
#[derive(Debug, Clone, PartialEq)]
pub struct EventFilter {
    pub camera: Option<String>,
    pub question: Option<String>,
    /// Only events at or after this Unix time in milliseconds.
    pub since_ms: Option<u64>,
    /// Only events with a larger id.
    pub after_id: Option<i64>,
    pub limit: usize,
}

impl Default for EventFilter {
    fn default() -> Self {
        EventFilter {
            camera: None,
            question: None,
            since_ms: None,
            after_id: None,
            limit: 100,
        }
    }
}
