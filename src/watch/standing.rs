//! One standing question's state in the worker: its schedule, rules,
//! change gate, few-shot prefix, and what the API shows of it.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::ask::Answer;
use super::gate::Gate;
use super::rules::{AlertState, Rules};
use crate::config::{AnswerKind, QuestionSpec};
use crate::lm::Prefix;

pub struct Standing {
    pub spec: QuestionSpec,
    pub rules: Rules,
    pub gate: Gate,
    /// The few-shot examples, encoded once (`None` without examples).
    pub prefix: Option<Prefix>,
    /// Why the examples could not be encoded: the question does not run
    /// without them.
    pub prefix_error: Option<String>,
    pub next_due: Instant,
    pub status: QuestionStatus,
}

/// What `GET /v1/questions` shows of a question.
#[derive(Debug, Clone, Serialize)]
pub struct QuestionStatus {
    pub name: String,
    pub camera: String,
    pub ask: String,
    pub answer_type: String,
    pub every_s: f64,
    pub window: String,
    pub examples: usize,
    pub state: AlertState,
    pub last_answer: Option<Answer>,
    /// Unix ms of the newest frame behind the last answer.
    pub last_answer_time_ms: Option<u64>,
    /// Unix ms of the last tick (run or gated).
    pub last_tick_ms: Option<u64>,
    pub runs: u64,
    /// Ticks answered from the last answer because the frames had not changed.
    pub gated: u64,
    /// Ticks skipped because the worker was too busy to run them on time.
    pub skipped_late: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    /// Why its answers may not mean much (a question about something the
    /// adapter was not trained on).
    pub warning: Option<String>,
    pub alerts: u64,
    pub suppressed_alerts: u64,
}

pub fn answer_type(kind: &AnswerKind) -> String {
    match kind {
        AnswerKind::YesNo => "yes-no".into(),
        AnswerKind::Count => "count".into(),
        AnswerKind::Text => "text".into(),
        AnswerKind::Choices(c) => format!("choices:{}", c.join(",")),
    }
}

impl Standing {
    pub fn new(spec: QuestionSpec, now: Instant) -> Standing {
        let status = QuestionStatus {
            name: spec.name.clone(),
            camera: spec.camera.clone(),
            ask: spec.ask.clone(),
            answer_type: answer_type(&spec.answer),
            every_s: spec.every.as_secs_f64(),
            window: spec.window.to_string(),
            examples: spec.examples.len(),
            state: AlertState::Normal,
            last_answer: None,
            last_answer_time_ms: None,
            last_tick_ms: None,
            runs: 0,
            gated: 0,
            skipped_late: 0,
            errors: 0,
            last_error: None,
            warning: None,
            alerts: 0,
            suppressed_alerts: 0,
        };
        Standing {
            rules: Rules::new(&spec),
            gate: Gate::default(),
            prefix: None,
            prefix_error: None,
            // The first tick comes one interval after start: cameras need a
            // moment to deliver their first frames.
            next_due: now + spec.every.min(Duration::from_secs(5)),
            spec,
            status,
        }
    }

    /// Moves the schedule past `now`; returns the ticks missed on the way
    /// (0 when this tick is on time, i.e. less than one interval late).
    pub fn advance(&mut self, now: Instant) -> u64 {
        let every = self.spec.every;
        let late = now.saturating_duration_since(self.next_due);
        let missed = (late.as_nanos() / every.as_nanos().max(1)) as u64;
        self.next_due += every * (missed as u32 + 1);
        missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Window;

    fn spec(every: u64) -> QuestionSpec {
        QuestionSpec {
            name: "q".into(),
            camera: "c".into(),
            ask: "Is it?".into(),
            answer: AnswerKind::YesNo,
            every: Duration::from_secs(every),
            window: Window::Frames(1),
            alert_when: None,
            consecutive: 1,
            cooldown: Duration::ZERO,
            examples: vec![],
        }
    }

    #[test]
    fn late_ticks_are_skipped_not_queued() {
        let t0 = Instant::now();
        let mut s = Standing::new(spec(5), t0);
        assert_eq!(s.next_due, t0 + Duration::from_secs(5));
        // On time (a little late): nothing missed, next slot in 5 s.
        assert_eq!(s.advance(t0 + Duration::from_millis(5300)), 0);
        assert_eq!(s.next_due, t0 + Duration::from_secs(10));
        // 12 s late: two slots (10 and 15) passed unrun; the next is 25.
        assert_eq!(s.advance(t0 + Duration::from_secs(22)), 2);
        assert_eq!(s.next_due, t0 + Duration::from_secs(25));
    }
}
