//! How a question is put to the LM and how its answer is read: one text
//! format for queries and few-shot examples (the one the demo adapter is
//! trained on), and per answer type either choice scoring or generation.

use serde::Serialize;

use crate::config::AnswerKind;
use crate::lm::{GenerateOptions, LmError, Session};

/// Counts the LM chooses among (as text candidates).
pub const MAX_COUNT: u32 = 10;
/// Tokens a text answer may take.
const TEXT_TOKENS: usize = 24;

/// The text after a query's media chunk.
pub fn query_text(ask: &str) -> String {
    format!("Question: {} Answer:", ask.trim())
}

/// The text after an example's media chunk (its end-of-chunk follows).
pub fn example_text(ask: &str, answer: &str) -> String {
    format!("{} {}", query_text(ask), answer.trim())
}

/// An answer and how sure the LM was of each candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    pub text: String,
    /// Candidate → probability (normalised over the candidates); empty for
    /// text answers.
    pub scores: Vec<(String, f64)>,
}

/// The candidates of a scored answer kind; `None` for free text.
pub fn candidates(kind: &AnswerKind) -> Option<Vec<String>> {
    match kind {
        AnswerKind::YesNo => Some(vec!["yes".into(), "no".into()]),
        AnswerKind::Choices(c) => Some(c.clone()),
        AnswerKind::Count => Some((0..=MAX_COUNT).map(|n| n.to_string()).collect()),
        AnswerKind::Text => None,
    }
}

/// Reads the answer off a session positioned right after `query_text`.
pub fn answer(session: &mut Session<'_>, kind: &AnswerKind) -> Result<Answer, LmError> {
    match candidates(kind) {
        Some(candidates) => {
            // A leading space: the answer follows "Answer:" as a new word.
            let spaced: Vec<String> = candidates.iter().map(|c| format!(" {c}")).collect();
            let refs: Vec<&str> = spaced.iter().map(String::as_str).collect();
            let scored = session.score(&refs)?;
            let mut scores: Vec<(String, f64)> = candidates
                .into_iter()
                .zip(&scored)
                .map(|(c, s)| (c, s.prob))
                .collect();
            scores.sort_by(|a, b| b.1.total_cmp(&a.1));
            Ok(Answer {
                text: scores[0].0.clone(),
                scores,
            })
        }
        None => {
            let generated = session.generate(&GenerateOptions {
                max_tokens: TEXT_TOKENS,
                ..GenerateOptions::default()
            })?;
            Ok(Answer {
                text: generated.text.trim().to_string(),
                scores: Vec::new(),
            })
        }
    }
}
