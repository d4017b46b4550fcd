//! Whether a question asks about something the adapter was trained on: a
//! demo adapter knows a handful of objects, and its answer about anything
//! else is a guess that should say so.

use crate::lm::TrainedOn;

/// Words that come before the thing a question names ("Is there *a* cat?",
/// "How *many* horses …", "Is *the* gate open?").
const DETERMINERS: &[&str] = &["a", "an", "the", "any", "many", "some", "this", "that"];

/// A warning when `question` names a thing that is none of the objects the
/// adapter was trained on; `None` when it names one of them, names nothing
/// a word can tell, or the adapter does not say what it knows.
pub fn outside_training(question: &str, trained: &TrainedOn, adapter: &str) -> Option<String> {
    if trained.objects.is_empty() {
        return None;
    }
    let words: Vec<String> = question
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let known = |w: &str| {
        forms(w)
            .iter()
            .any(|f| trained.objects.iter().any(|o| o.eq_ignore_ascii_case(f)))
    };
    if words.iter().any(|w| known(w)) {
        return None;
    }
    let thing = words
        .iter()
        .position(|w| DETERMINERS.contains(&w.as_str()))
        .and_then(|i| {
            words[i + 1..]
                .iter()
                .find(|w| !DETERMINERS.contains(&w.as_str()))
        })?;
    Some(format!(
        "{adapter} was trained on: {}; \"{thing}\" is not among them: its answers about it are guesses",
        trained.objects.join(", ")
    ))
}

/// The word and its singular forms ("horses" → "horse", "butterflies" →
/// "butterfly", "boxes" → "box").
fn forms(word: &str) -> Vec<String> {
    let mut out = vec![word.to_string()];
    if let Some(stem) = word.strip_suffix("ies") {
        out.push(format!("{stem}y"));
    }
    if let Some(stem) = word.strip_suffix("es") {
        out.push(stem.to_string());
    }
    if let Some(stem) = word.strip_suffix('s') {
        out.push(stem.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> TrainedOn {
        TrainedOn {
            objects: ["cat", "horse", "butterfly", "fish"]
                .map(String::from)
                .to_vec(),
            families: vec!["presence".into()],
        }
    }

    #[test]
    fn a_question_about_a_trained_object_is_fine_in_any_number() {
        for q in [
            "Is there a cat?",
            "How many horses are there?",
            "Are there butterflies?",
            "Is the fish moving?",
            "Did something appear?",
        ] {
            assert_eq!(outside_training(q, &demo(), "the demo model"), None, "{q}");
        }
    }

    #[test]
    fn a_question_about_anything_else_says_its_answers_are_guesses() {
        let w =
            outside_training("Is there a person at the door?", &demo(), "the demo model").unwrap();
        assert_eq!(
            w,
            "the demo model was trained on: cat, horse, butterfly, fish; \"person\" is not among them: its answers about it are guesses"
        );
        let w = outside_training("How many cars are there?", &demo(), "x.gguf").unwrap();
        assert!(w.contains("\"cars\""), "{w}");
        // An adapter that does not say what it knows warns about nothing.
        assert_eq!(
            outside_training("Is there a person?", &TrainedOn::default(), "x.gguf"),
            None
        );
    }
}
