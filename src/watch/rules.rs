//! The alert rule engine of one standing question: turns a stream of
//! answers into events. Pure logic, driven by answers and times, so it can
//! be tested with scripted answer sequences.
//!
//! - An *answer change* is an event whenever the answer differs from the
//!   previous one (the first answer too).
//! - The question *enters alert* after `consecutive` alerting answers in a
//!   row, and only when the last alert is at least `cooldown` ago; while the
//!   cooldown runs it stays normal and fires as soon as the cooldown ends if
//!   the answers still say so.
//! - It *returns to normal* after `consecutive` non-alerting answers in a
//!   row (the same hysteresis both ways, so a flickering answer does not
//!   flap).

use std::time::{Duration, Instant};

use regex::Regex;
use serde::Serialize;

use crate::config::{AlertRule, QuestionSpec};

/// Whether a question is alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Normal,
    Alert,
}

/// What one answer caused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    AnswerChanged { from: Option<String>, to: String },
    Alert,
    Normal,
}

enum Matcher {
    Never,
    Answer(String),
    Count(crate::config::Comparison, u32),
    Regex(Regex),
}

impl Matcher {
    fn new(rule: Option<&AlertRule>) -> Matcher {
        match rule {
            None => Matcher::Never,
            Some(AlertRule::Answer(a)) => Matcher::Answer(a.clone()),
            Some(AlertRule::Count(op, n)) => Matcher::Count(*op, *n),
            // Checked by the config already; an impossible regex never alerts.
            Some(AlertRule::Matches(re)) => Regex::new(re).map_or(Matcher::Never, Matcher::Regex),
        }
    }

    fn is_alert(&self, answer: &str) -> bool {
        match self {
            Matcher::Never => false,
            Matcher::Answer(a) => a == answer,
            Matcher::Count(op, n) => answer.parse::<u32>().is_ok_and(|v| op.holds(v, *n)),
            Matcher::Regex(re) => re.is_match(answer),
        }
    }
}

pub struct Rules {
    matcher: Matcher,
    consecutive: u32,
    cooldown: Duration,
    state: AlertState,
    last_answer: Option<String>,
    /// Answers in a row that disagree with the current state.
    streak: u32,
    last_alert: Option<Instant>,
    /// Alerts held back by the cooldown.
    suppressed: u64,
}

impl Rules {
    pub fn new(spec: &QuestionSpec) -> Rules {
        Rules::with(spec.alert_when.as_ref(), spec.consecutive, spec.cooldown)
    }

    pub fn with(rule: Option<&AlertRule>, consecutive: u32, cooldown: Duration) -> Rules {
        Rules {
            matcher: Matcher::new(rule),
            consecutive: consecutive.max(1),
            cooldown,
            state: AlertState::Normal,
            last_answer: None,
            streak: 0,
            last_alert: None,
            suppressed: 0,
        }
    }

    pub fn state(&self) -> AlertState {
        self.state
    }

    pub fn last_answer(&self) -> Option<&str> {
        self.last_answer.as_deref()
    }

    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// Takes one answer given at `now`.
    pub fn observe(&mut self, answer: &str, now: Instant) -> Vec<Transition> {
        let mut out = Vec::new();
        if self.last_answer.as_deref() != Some(answer) {
            out.push(Transition::AnswerChanged {
                from: self.last_answer.replace(answer.to_string()),
                to: answer.to_string(),
            });
        }
        let alerting = self.matcher.is_alert(answer);
        let disagrees = match self.state {
            AlertState::Normal => alerting,
            AlertState::Alert => !alerting,
        };
        self.streak = if disagrees { self.streak + 1 } else { 0 };
        if self.streak < self.consecutive {
            return out;
        }
        match self.state {
            AlertState::Normal => {
                let cooling = self
                    .last_alert
                    .is_some_and(|t| now.duration_since(t) < self.cooldown);
                if cooling {
                    self.suppressed += 1;
                } else {
                    self.state = AlertState::Alert;
                    self.last_alert = Some(now);
                    self.streak = 0;
                    out.push(Transition::Alert);
                }
            }
            AlertState::Alert => {
                self.state = AlertState::Normal;
                self.streak = 0;
                out.push(Transition::Normal);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Comparison;

    fn alerts(t: &[Transition]) -> Vec<&Transition> {
        t.iter()
            .filter(|t| !matches!(t, Transition::AnswerChanged { .. }))
            .collect()
    }

    /// Feeds answers one per second; returns (second, transition) for
    /// alerts and returns to normal.
    fn script(rules: &mut Rules, answers: &[&str]) -> Vec<(usize, Transition)> {
        let start = Instant::now();
        let mut out = Vec::new();
        for (i, a) in answers.iter().enumerate() {
            let now = start + Duration::from_secs(i as u64);
            for t in rules.observe(a, now) {
                if !matches!(t, Transition::AnswerChanged { .. }) {
                    out.push((i, t));
                }
            }
        }
        out
    }

    #[test]
    fn fires_on_the_transition_only() {
        let rule = AlertRule::Answer("yes".into());
        let mut r = Rules::with(Some(&rule), 1, Duration::ZERO);
        let got = script(&mut r, &["no", "yes", "yes", "yes", "no", "no", "yes"]);
        assert_eq!(
            got,
            vec![
                (1, Transition::Alert),
                (4, Transition::Normal),
                (6, Transition::Alert)
            ]
        );
        assert_eq!(r.state(), AlertState::Alert);
    }

    #[test]
    fn consecutive_answers_are_needed_both_ways() {
        let rule = AlertRule::Answer("yes".into());
        let mut r = Rules::with(Some(&rule), 3, Duration::ZERO);
        let got = script(
            &mut r,
            &[
                "yes", "yes", "no", // broken streak: nothing
                "yes", "yes", "yes", // 3 in a row: alert at 5
                "no", "yes", "no", "no", "no", // back to normal at 10
            ],
        );
        assert_eq!(got, vec![(5, Transition::Alert), (10, Transition::Normal)]);
    }

    #[test]
    fn cooldown_holds_the_next_alert_back_then_lets_it_through() {
        let rule = AlertRule::Answer("yes".into());
        let mut r = Rules::with(Some(&rule), 1, Duration::from_secs(10));
        // alert at 0, normal at 1, alerting answers from 2 on: held back
        // until the cooldown ends at 10.
        let mut answers = vec!["yes", "no"];
        answers.extend(std::iter::repeat_n("yes", 12));
        let got = script(&mut r, &answers);
        assert_eq!(
            got,
            vec![
                (0, Transition::Alert),
                (1, Transition::Normal),
                (10, Transition::Alert)
            ]
        );
        assert_eq!(r.suppressed(), 8);
    }

    #[test]
    fn answer_changes_are_reported_with_what_came_before() {
        let mut r = Rules::with(None, 1, Duration::ZERO);
        let now = Instant::now();
        assert_eq!(
            r.observe("2", now),
            vec![Transition::AnswerChanged {
                from: None,
                to: "2".into()
            }]
        );
        assert!(r.observe("2", now).is_empty());
        assert_eq!(
            r.observe("3", now),
            vec![Transition::AnswerChanged {
                from: Some("2".into()),
                to: "3".into()
            }]
        );
        assert_eq!(r.state(), AlertState::Normal);
    }

    #[test]
    fn count_and_regex_rules() {
        let rule = AlertRule::Count(Comparison::Ge, 2);
        let mut r = Rules::with(Some(&rule), 1, Duration::ZERO);
        let got = script(&mut r, &["0", "1", "2", "5", "1", "x"]);
        assert_eq!(got, vec![(2, Transition::Alert), (4, Transition::Normal)]);

        let rule = AlertRule::Matches("fire|smoke".into());
        let mut r = Rules::with(Some(&rule), 2, Duration::ZERO);
        let t = script(&mut r, &["a dog", "smoke rising", "a fire", "nothing"]);
        assert_eq!(t, vec![(2, Transition::Alert)]);
        assert_eq!(
            alerts(&r.observe("nothing", Instant::now())),
            vec![&Transition::Normal]
        );
    }
}
