//! What a standing question expects as an answer, over which footage, and
//! when its answer is an alert. Parsed and checked now; acted on by `watch`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::units::parse_duration;

/// The type of answer a question wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerKind {
    YesNo,
    Choices(Vec<String>),
    Count,
    Text,
}

const ANSWER_HELP: &str = "use \"yes-no\", \"count\", \"text\" or { choices = [\"a\", \"b\"] }";

struct AnswerVisitor;

impl<'de> Visitor<'de> for AnswerVisitor {
    type Value = AnswerKind;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(ANSWER_HELP)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<AnswerKind, E> {
        match v {
            "yes-no" | "yes/no" | "yesno" => Ok(AnswerKind::YesNo),
            "count" => Ok(AnswerKind::Count),
            "text" => Ok(AnswerKind::Text),
            other => Err(E::custom(format!(
                "unknown answer type \"{other}\"\nhelp: {ANSWER_HELP}"
            ))),
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnswerKind, A::Error> {
        let mut choices: Option<Vec<String>> = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "choices" {
                return Err(de::Error::custom(format!(
                    "unknown key \"{key}\" in answer\nhelp: {ANSWER_HELP}"
                )));
            }
            choices = Some(map.next_value()?);
        }
        let choices = choices.ok_or_else(|| {
            de::Error::custom(format!("answer table needs `choices`\nhelp: {ANSWER_HELP}"))
        })?;
        check_choices(&choices).map_err(de::Error::custom)?;
        Ok(AnswerKind::Choices(choices))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<AnswerKind, A::Error> {
        Err(de::Error::custom(
            "a list is not an answer type\nhelp: write answer = { choices = [...] }".to_string(),
        ))
    }
}

fn check_choices(choices: &[String]) -> Result<(), String> {
    if choices.len() < 2 {
        return Err("a choice question needs at least two choices".into());
    }
    for (i, c) in choices.iter().enumerate() {
        if c.trim().is_empty() {
            return Err("a choice cannot be empty".into());
        }
        if choices[..i].iter().any(|o| o.eq_ignore_ascii_case(c)) {
            return Err(format!("choice \"{c}\" is listed twice"));
        }
    }
    Ok(())
}

impl<'de> Deserialize<'de> for AnswerKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnswerVisitor)
    }
}

impl AnswerKind {
    /// Checks that `answer` is a possible answer of this kind (used for
    /// few-shot examples and for `alert_when` on yes/no and choices).
    pub fn check_answer(&self, answer: &str) -> Result<(), String> {
        match self {
            AnswerKind::YesNo => match answer {
                "yes" | "no" => Ok(()),
                _ => Err(format!(
                    "\"{answer}\" is not a yes/no answer\nhelp: write \"yes\" or \"no\""
                )),
            },
            AnswerKind::Choices(choices) => {
                if choices.iter().any(|c| c == answer) {
                    Ok(())
                } else {
                    Err(format!(
                        "\"{answer}\" is not one of the choices\nhelp: use one of {choices:?}"
                    ))
                }
            }
            AnswerKind::Count => answer.parse::<u32>().map(|_| ()).map_err(|_| {
                format!("\"{answer}\" is not a count\nhelp: write a whole number such as \"2\"")
            }),
            AnswerKind::Text => Ok(()),
        }
    }

    /// Parses `alert_when` for this kind of answer.
    pub fn parse_alert(&self, text: &str) -> Result<AlertRule, String> {
        match self {
            AnswerKind::YesNo | AnswerKind::Choices(_) => {
                self.check_answer(text)?;
                Ok(AlertRule::Answer(text.to_string()))
            }
            AnswerKind::Count => parse_count_rule(text),
            AnswerKind::Text => match regex::Regex::new(text) {
                Ok(_) => Ok(AlertRule::Matches(text.to_string())),
                Err(e) => Err(format!(
                    "alert_when is not a valid regular expression: {e}\nhelp: text answers alert when this regex matches"
                )),
            },
        }
    }
}

/// When an answer counts as an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertRule {
    /// A yes/no or choice answer equal to this one.
    Answer(String),
    /// A count compared with a threshold: `count >= 2`.
    Count(Comparison, u32),
    /// A text answer matching this regular expression.
    Matches(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

impl Comparison {
    pub fn holds(self, value: u32, threshold: u32) -> bool {
        match self {
            Comparison::Ge => value >= threshold,
            Comparison::Gt => value > threshold,
            Comparison::Le => value <= threshold,
            Comparison::Lt => value < threshold,
            Comparison::Eq => value == threshold,
            Comparison::Ne => value != threshold,
        }
    }
}

fn parse_count_rule(text: &str) -> Result<AlertRule, String> {
    let help = "\nhelp: write a comparison such as \"count >= 2\" (operators >=, >, <=, <, ==, !=)";
    let rest = text
        .trim()
        .strip_prefix("count")
        .ok_or_else(|| format!("\"{text}\" is not a count rule{help}"))?
        .trim_start();
    let ops = [
        (">=", Comparison::Ge),
        ("<=", Comparison::Le),
        ("==", Comparison::Eq),
        ("!=", Comparison::Ne),
        (">", Comparison::Gt),
        ("<", Comparison::Lt),
    ];
    for (symbol, op) in ops {
        if let Some(number) = rest.strip_prefix(symbol) {
            let n = number
                .trim()
                .parse::<u32>()
                .map_err(|_| format!("\"{}\" is not a whole number{help}", number.trim()))?;
            return Ok(AlertRule::Count(op, n));
        }
    }
    Err(format!("\"{text}\" has no comparison operator{help}"))
}

/// How much recent footage a question looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The newest N frames (`"1 frame"`, `"8 frames"`).
    Frames(u32),
    /// The frames captured in the last span of time (`"4s"`).
    Span(std::time::Duration),
}

struct WindowVisitor;

impl Visitor<'_> for WindowVisitor {
    type Value = Window;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a window such as \"4s\" or \"1 frame\"")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Window, E> {
        Window::parse(v).map_err(E::custom)
    }
}

impl Window {
    /// Parses `"4s"`, `"1 frame"` or `"8 frames"`.
    pub fn parse(v: &str) -> Result<Window, String> {
        let t = v.trim();
        let frames = t
            .strip_suffix("frames")
            .or_else(|| t.strip_suffix("frame"))
            .map(str::trim);
        if let Some(n) = frames {
            let n: u32 = if n.is_empty() { Ok(1) } else { n.parse() }.map_err(|_| {
                format!("\"{v}\" is not a frame count\nhelp: write \"1 frame\" or \"8 frames\"")
            })?;
            if n == 0 {
                return Err("a window needs at least one frame".into());
            }
            return Ok(Window::Frames(n));
        }
        let span = parse_duration(t)
            .map_err(|e| format!("{e}\nhelp: or write a frame count such as \"1 frame\""))?;
        if span.is_zero() {
            return Err("a window cannot be empty".into());
        }
        Ok(Window::Span(span))
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Window::Frames(1) => f.write_str("1 frame"),
            Window::Frames(n) => write!(f, "{n} frames"),
            Window::Span(d) => write!(f, "{}s", d.as_secs_f64()),
        }
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(WindowVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_rules_parse() {
        assert_eq!(
            AnswerKind::Count.parse_alert("count >= 2"),
            Ok(AlertRule::Count(Comparison::Ge, 2))
        );
        assert_eq!(
            AnswerKind::Count.parse_alert("count<1"),
            Ok(AlertRule::Count(Comparison::Lt, 1))
        );
        assert!(AnswerKind::Count.parse_alert("more than 2").is_err());
        assert!(AnswerKind::Count.parse_alert("count >= many").is_err());
        assert!(Comparison::Ge.holds(2, 2) && !Comparison::Gt.holds(2, 2));
    }

    #[test]
    fn alert_answers_must_be_possible() {
        let kind = AnswerKind::Choices(vec!["cat".into(), "dog".into()]);
        assert!(kind.parse_alert("cat").is_ok());
        assert!(kind.parse_alert("horse").is_err());
        assert!(AnswerKind::YesNo.parse_alert("maybe").is_err());
        assert!(AnswerKind::Text.parse_alert("(unclosed").is_err());
        assert!(AnswerKind::Text.parse_alert("fire|smoke").is_ok());
    }
}
