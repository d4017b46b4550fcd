//! The figures `vigil eval` prints: accuracy per question family with the
//! chance level (a uniform guess) and the majority-answer baseline beside
//! it, the few-shot gain, and agreement with the Python reference.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::dataset::Item;
use crate::config::AnswerKind;
use crate::watch::Answer;

pub struct Outcome {
    pub id: String,
    pub family: String,
    pub question: String,
    pub shots: usize,
    /// Candidates a guess picks among (0: open-ended, e.g. counts).
    pub n_choices: usize,
    pub expected: String,
    pub answer: String,
    pub reference: Option<String>,
    pub reference_margin: Option<f64>,
}

impl Outcome {
    pub fn of(item: &Item, answer: Answer) -> Outcome {
        Outcome {
            id: item.id.clone(),
            family: item.family.clone(),
            question: item.question.clone(),
            shots: item.shots(),
            n_choices: match &item.answer_type {
                AnswerKind::YesNo => 2,
                AnswerKind::Choices(c) => c.len(),
                AnswerKind::Count | AnswerKind::Text => 0,
            },
            expected: item.answer.clone(),
            answer: answer.text,
            reference: item.reference.clone(),
            reference_margin: item.reference_margin,
        }
    }

    /// Whether the reference answered this item and differs.
    fn disagrees(&self) -> bool {
        self.reference
            .as_deref()
            .is_some_and(|r| r.trim() != self.answer.trim())
    }

    pub fn correct(&self) -> bool {
        self.answer
            .trim()
            .eq_ignore_ascii_case(self.expected.trim())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    pub accuracy: f64,
    /// The accuracy of a uniform guess among an item's candidates (for
    /// counts: among the counts the family's answers take, e.g. 0-3).
    pub chance: f64,
    /// The accuracy of always giving the family's most common answer.
    pub majority: f64,
    pub n: usize,
}

pub struct Report {
    pub outcomes: Vec<Outcome>,
    pub elapsed: Duration,
}

impl Report {
    pub fn new(outcomes: Vec<Outcome>, elapsed: Duration) -> Report {
        Report { outcomes, elapsed }
    }

    /// Per family (few-shot items as `fewshot_0shot` / `fewshot_2shot` by
    /// their number of examples).
    pub fn families(&self) -> BTreeMap<String, Figure> {
        let mut groups: BTreeMap<String, Vec<&Outcome>> = BTreeMap::new();
        for o in &self.outcomes {
            let key = if o.family == "fewshot" {
                format!("fewshot_{}shot", o.shots)
            } else {
                o.family.clone()
            };
            groups.entry(key).or_default().push(o);
        }
        groups
            .into_iter()
            .map(|(k, v)| {
                let n = v.len();
                let right = v.iter().filter(|o| o.correct()).count();
                let mut freq: BTreeMap<&str, usize> = BTreeMap::new();
                for o in &v {
                    *freq.entry(o.expected.as_str()).or_default() += 1;
                }
                let most = freq.values().copied().max().unwrap_or(0);
                let chance = v
                    .iter()
                    .map(|o| match o.n_choices {
                        0 => 1.0 / freq.len() as f64,
                        k => 1.0 / k as f64,
                    })
                    .sum::<f64>()
                    / n as f64;
                (
                    k,
                    Figure {
                        accuracy: right as f64 / n as f64,
                        chance,
                        majority: most as f64 / n as f64,
                        n,
                    },
                )
            })
            .collect()
    }

    /// 2-shot minus 0-shot accuracy on few-shot episodes, in points.
    pub fn fewshot_gain(&self) -> Option<f64> {
        let f = self.families();
        let zero = f.get("fewshot_0shot")?;
        let two = f.get("fewshot_2shot")?;
        Some(100.0 * (two.accuracy - zero.accuracy))
    }

    /// Count questions: how often each expected count got each answer, so
    /// that one sees where counting errs (e.g. 2 answered as 1, or the
    /// model's counts running low), not only how often.
    pub fn count_confusion(&self) -> Vec<(String, Vec<(String, usize)>)> {
        let mut tally: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for o in self.outcomes.iter().filter(|o| o.family == "count") {
            *tally
                .entry(o.expected.trim().to_string())
                .or_default()
                .entry(o.answer.trim().to_string())
                .or_default() += 1;
        }
        let mut out: Vec<(String, Vec<(String, usize)>)> = tally
            .into_iter()
            .map(|(expected, answers)| {
                let mut answers: Vec<(String, usize)> = answers.into_iter().collect();
                answers.sort_by(|a, b| count_order(&a.0, &b.0));
                (expected, answers)
            })
            .collect();
        out.sort_by(|a, b| count_order(&a.0, &b.0));
        out
    }

    /// Share of items whose answer equals the reference's, over items that
    /// have one.
    pub fn reference_agreement(&self) -> Option<(f64, usize)> {
        let with: Vec<&Outcome> = self
            .outcomes
            .iter()
            .filter(|o| o.reference.is_some())
            .collect();
        if with.is_empty() {
            return None;
        }
        let same = with.iter().filter(|o| !o.disagrees()).count();
        Some((same as f64 / with.len() as f64, with.len()))
    }

    /// The widest lead the reference's answer had on an item the runtime
    /// answers otherwise: small means every disagreement was a close call
    /// (arithmetic, not a different model). None without disagreements or
    /// margins.
    pub fn widest_disagreement(&self) -> Option<f64> {
        self.outcomes
            .iter()
            .filter(|o| o.disagrees())
            .filter_map(|o| o.reference_margin)
            .reduce(f64::max)
    }
}

/// Counts in numeric order ("2" before "10"), then any answer that is not a
/// number, in text order: a string sort would put an answered "10" between
/// "1" and "2".
fn count_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(
            f,
            "# {} questions in {:.1} s",
            self.outcomes.len(),
            self.elapsed.as_secs_f64()
        )?;
        for (family, fig) in self.families() {
            writeln!(f, "accuracy_{family}: {:.3}", fig.accuracy)?;
            writeln!(f, "chance_{family}: {:.3}", fig.chance)?;
            writeln!(f, "majority_{family}: {:.3}", fig.majority)?;
            writeln!(f, "n_{family}: {}", fig.n)?;
        }
        if let Some(gain) = self.fewshot_gain() {
            writeln!(f, "fewshot_gain: {gain:.1}")?;
        }
        for (expected, answers) in self.count_confusion() {
            let answered: Vec<String> = answers
                .iter()
                .map(|(answer, n)| format!("{answer} ×{n}"))
                .collect();
            writeln!(f, "# count {expected} answered as: {}", answered.join(", "))?;
        }
        // Every wrong answer with its question, so that one can see what a
        // model gets wrong (which object, which phrasing), not only how
        // often; comment lines, like the confusion above.
        for o in self.outcomes.iter().filter(|o| !o.correct()) {
            writeln!(
                f,
                "# wrong: {} ({}, {} examples): {:?} answered {:?}, expected {:?}",
                o.id,
                o.family,
                o.shots,
                o.question.trim(),
                o.answer.trim(),
                o.expected.trim()
            )?;
        }
        if let Some((agreement, n)) = self.reference_agreement() {
            writeln!(f, "reference_agreement: {agreement:.3}")?;
            writeln!(f, "n_reference: {n}")?;
        }
        for o in self.outcomes.iter().filter(|o| o.disagrees()) {
            let margin = o
                .reference_margin
                .map_or(String::new(), |m| format!(", reference ahead by {m:.3}"));
            writeln!(
                f,
                "# disagreement: {} ({}): runtime {:?}, reference {:?}{margin}",
                o.id,
                o.family,
                o.answer.trim(),
                o.reference.as_deref().unwrap_or("").trim()
            )?;
        }
        if let Some(widest) = self.widest_disagreement() {
            writeln!(f, "reference_disagreement_margin_max: {widest:.3}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(family: &str, shots: usize, expected: &str, answer: &str) -> Outcome {
        Outcome {
            id: format!("{family}-{expected}-{answer}"),
            family: family.into(),
            question: format!("{family}?"),
            shots,
            n_choices: 2,
            expected: expected.into(),
            answer: answer.into(),
            reference: Some(answer.into()),
            reference_margin: Some(5.0),
        }
    }

    #[test]
    fn disagreements_are_listed_with_the_widest_reference_margin() {
        let mut close = outcome("count", 0, "2", "3");
        close.reference = Some("2".into());
        close.reference_margin = Some(0.25);
        let mut closer = outcome("count", 0, "1", "1");
        closer.reference = Some("0".into());
        closer.reference_margin = Some(0.125);
        let report = Report::new(
            vec![outcome("count", 0, "1", "1"), close, closer],
            Duration::from_secs(1),
        );
        assert_eq!(report.reference_agreement(), Some((1.0 / 3.0, 3)));
        assert_eq!(report.widest_disagreement(), Some(0.25));
        let text = report.to_string();
        assert!(
            text.contains("runtime \"3\", reference \"2\", reference ahead by 0.250\n"),
            "{text}"
        );
        assert!(
            text.contains("reference_disagreement_margin_max: 0.250\n"),
            "{text}"
        );
        let agreeing = Report::new(vec![outcome("count", 0, "1", "1")], Duration::from_secs(1));
        assert_eq!(agreeing.widest_disagreement(), None);
    }

    #[test]
    fn count_answers_are_tallied_per_expected_count() {
        let report = Report::new(
            vec![
                outcome("count", 0, "2", "1"),
                outcome("count", 0, "2", "2"),
                outcome("count", 0, "2", "1"),
                outcome("count", 0, "0", "0"),
                outcome("count", 0, "2", "10"),
                outcome("count", 0, "2", "many"),
                outcome("count", 0, "10", "9"),
                outcome("presence", 0, "yes", "no"),
            ],
            Duration::from_secs(1),
        );
        let confusion = report.count_confusion();
        let expected: Vec<&str> = confusion.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(
            expected,
            ["0", "2", "10"],
            "numeric order, and presence is not a count: {confusion:?}"
        );
        let two: Vec<(&str, usize)> = confusion[1]
            .1
            .iter()
            .map(|(a, n)| (a.as_str(), *n))
            .collect();
        assert_eq!(two, [("1", 2), ("2", 1), ("10", 1), ("many", 1)]);
        let text = report.to_string();
        assert!(
            text.contains("# count 2 answered as: 1 ×2, 2 ×1, 10 ×1, many ×1\n"),
            "{text}"
        );
        assert!(text.contains("# count 10 answered as: 9 ×1\n"), "{text}");
        assert!(text.contains("# count 0 answered as: 0 ×1\n"), "{text}");
    }

    #[test]
    fn figures_per_family_with_majority_baseline_and_gain() {
        let report = Report::new(
            vec![
                outcome("presence", 0, "yes", "yes"),
                outcome("presence", 0, "yes", "no"),
                outcome("presence", 0, "no", "no"),
                outcome("presence", 0, "yes", "yes"),
                outcome("fewshot", 0, "dax", "wug"),
                outcome("fewshot", 0, "wug", "wug"),
                outcome("fewshot", 2, "dax", "dax"),
                outcome("fewshot", 2, "wug", "wug"),
            ],
            Duration::from_secs(1),
        );
        let f = report.families();
        assert_eq!(f["presence"].accuracy, 0.75);
        assert_eq!(f["presence"].chance, 0.5);
        assert_eq!(f["presence"].majority, 0.75);
        assert_eq!(f["fewshot_0shot"].accuracy, 0.5);
        assert_eq!(report.fewshot_gain(), Some(50.0));
        assert_eq!(report.reference_agreement(), Some((1.0, 8)));
        let text = report.to_string();
        assert!(text.contains("accuracy_presence: 0.750\n"), "{text}");
        assert!(text.contains("fewshot_gain: 50.0\n"), "{text}");
    }

    #[test]
    fn every_wrong_answer_is_listed_with_its_question_and_no_right_one() {
        let report = Report::new(
            vec![
                outcome("presence", 0, "yes", "no"),
                outcome("presence", 0, "no", "no"),
                outcome("count", 0, "3", "2"),
                outcome("fewshot", 2, "dax", "Dax "),
            ],
            Duration::from_secs(1),
        );
        let text = report.to_string();
        let wrong: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("# wrong: "))
            .collect();
        assert_eq!(
            wrong,
            [
                "# wrong: presence-yes-no (presence, 0 examples): \"presence?\" answered \"no\", expected \"yes\"",
                "# wrong: count-3-2 (count, 0 examples): \"count?\" answered \"2\", expected \"3\"",
            ],
            "{text}"
        );
    }
}
