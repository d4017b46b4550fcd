//! `vigil check-config` on good and bad files: exit codes and messages that
//! point at line and column.

mod common;

use std::path::Path;
use std::process::Command;

use common::TempDir;

struct Checked {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(path: &Path) -> Checked {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("check-config")
        .arg(path)
        .output()
        .expect("vigil runs");
    Checked {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check_text(dir: &TempDir, text: &str) -> Checked {
    let path = dir.path().join("vigil.toml");
    std::fs::write(&path, text).unwrap();
    check(&path)
}

/// Asserts exit 2 and a first line `…/vigil.toml:LINE:COL: …` containing `needle`.
fn assert_rejected_at(dir: &TempDir, text: &str, line: usize, column: usize, needle: &str) {
    let c = check_text(dir, text);
    assert_eq!(c.code, 2, "{text}\nstderr: {}", c.stderr);
    let first = c.stderr.lines().next().unwrap_or_default();
    let location = format!("vigil.toml:{line}:{column}: ");
    assert!(
        first.contains(&location),
        "expected {location} in: {first}\n(full: {})",
        c.stderr
    );
    assert!(
        c.stderr.contains(needle),
        "expected {needle:?} in: {}",
        c.stderr
    );
    assert!(c.stdout.is_empty());
}

const CAMERA: &str = "[[camera]]\nname = \"yard\"\nsource = \"test:ball\"\n";

#[test]
fn unknown_keys_are_rejected_where_they_stand() {
    let dir = TempDir::new("cfg-unknown");
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}fsp = 1\n"),
        4,
        1,
        "unknown field `fsp`",
    );
    assert_rejected_at(&dir, "[deamon]\n", 1, 2, "unknown field `deamon`");
}

#[test]
fn bad_durations_are_rejected_with_the_units_that_work() {
    let dir = TempDir::new("cfg-duration");
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}buffer = \"5 parsecs\"\n"),
        4,
        10,
        "unknown unit \"parsecs\"",
    );
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}stall_timeout = 20\n"),
        4,
        17,
        "needs a unit",
    );
    // Idle threads show a sign of life about once a second: a shorter
    // limit would stop the watchdog pings of a healthy daemon.
    assert_rejected_at(
        &dir,
        &format!("[daemon]\nwedged_after = \"1s\"\n{CAMERA}"),
        2,
        16,
        "wedged_after must be at least 5s",
    );
}

#[test]
fn duplicate_camera_names_are_rejected_at_the_second() {
    let dir = TempDir::new("cfg-dup");
    let text = format!("{CAMERA}\n[[camera]]\nname = \"yard\"\nsource = \"test:snow\"\n");
    assert_rejected_at(&dir, &text, 6, 8, "defined twice (first at line 2)");
}

#[test]
fn questions_must_name_a_defined_camera() {
    let dir = TempDir::new("cfg-question");
    let text = format!(
        "{CAMERA}\n[[question]]\ncamera = \"gate\"\nask = \"Is the gate open?\"\nanswer = \"yes-no\"\n"
    );
    assert_rejected_at(&dir, &text, 6, 10, "camera \"gate\", which is not defined");
    let c = check_text(&dir, &text);
    assert!(
        c.stderr.contains("help: defined cameras: yard"),
        "{}",
        c.stderr
    );
}

#[test]
fn fps_must_be_positive() {
    let dir = TempDir::new("cfg-fps");
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}fps = 0\n"),
        4,
        7,
        "fps must be greater than 0",
    );
    assert_rejected_at(&dir, &format!("{CAMERA}fps = -1.5\n"), 4, 7, "got -1.5");
}

#[test]
fn answers_and_alert_rules_are_checked_against_each_other() {
    let dir = TempDir::new("cfg-alert");
    let q = "\n[[question]]\ncamera = \"yard\"\nask = \"How many?\"\nanswer = \"count\"\n";
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{q}alert_when = \"lots\"\n"),
        9,
        14,
        "not a count rule",
    );
    let model = "[model]\nlm = \"lm.gguf\"\nencoder = \"e.onnx\"\nresampler = \"r.onnx\"\nadapter = \"a.gguf\"\n";
    let c = check_text(
        &dir,
        &format!("{CAMERA}{q}alert_when = \"count >= 3\"\n{model}"),
    );
    assert_eq!(c.code, 0, "{}", c.stderr);
    // Without the models a question cannot be answered: said at the question.
    let no_adapter = model.replace("adapter = \"a.gguf\"\n", "");
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{q}{no_adapter}"),
        7,
        7,
        "[model] has no adapter",
    );
}

#[test]
fn syntax_errors_are_located() {
    let dir = TempDir::new("cfg-syntax");
    assert_rejected_at(&dir, "[[camera]]\nname = \"a\nsource = \"x\"\n", 2, 10, "");
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let c = check(Path::new("/nonexistent/vigil.toml"));
    assert_eq!(c.code, 2);
    assert!(
        c.stderr
            .contains("cannot read config file /nonexistent/vigil.toml"),
        "{}",
        c.stderr
    );
}

#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["config/demo.toml", "config/example.toml"] {
        let c = check(&root.join(name));
        assert_eq!(c.code, 0, "{name}: {}", c.stderr);
        assert!(c.stdout.contains("OK"), "{name}: {}", c.stdout);
    }
    // Relative paths in the demo resolve against its own folder.
    let demo = vigil::config::load(&root.join("config/demo.toml")).unwrap();
    let yard = demo.cameras.iter().find(|c| c.name == "yard").unwrap();
    assert_eq!(
        yard.source,
        vigil::config::Source::File(root.join("config/../data/demo-scenario.avi"))
    );
    assert_eq!(demo.questions.len(), 3);
}

#[test]
fn outputs_are_checked_where_they_stand() {
    let dir = TempDir::new("cfg-output");
    let hook = "\n[[output]]\ntype = \"webhook\"\n";
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}\n[[output]]\ntype = \"pager\"\n"),
        6,
        8,
        "unknown output type \"pager\"",
    );
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{hook}"),
        6,
        8,
        "a webhook output needs url",
    );
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{hook}url = \"ftp://example.com/x\"\n"),
        7,
        7,
        "is not an http:// or https:// URL",
    );
    let url = "url = \"https://example.com/hook\"\n";
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{hook}{url}events = [\"alert\", \"alarm\"]\n"),
        8,
        10,
        "unknown event kind \"alarm\"",
    );
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{hook}{url}queue = 0\n"),
        8,
        9,
        "queue must be between 1 and 100000",
    );
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{hook}{url}headers = {{ \"Bad Name\" = \"x\" }}\n"),
        8,
        11,
        "header \"Bad Name\" is not a valid HTTP header",
    );
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{hook}{url}name = \"a\"\n{hook}{url}name = \"a\"\n"),
        13,
        8,
        "two [[output]] sections are named \"a\"",
    );
    let mqtt = "\n[[output]]\ntype = \"mqtt\"\n";
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{mqtt}"),
        6,
        8,
        "an mqtt output needs broker",
    );
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{mqtt}broker = \"tcp://example.com\"\n"),
        7,
        10,
        "is not an mqtt:// or mqtts:// URL",
    );
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{mqtt}broker = \"mqtt://u:p@example.com\"\n"),
        7,
        10,
        "credentials go in username and password",
    );
    let broker = "broker = \"mqtt://example.com\"\n";
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{mqtt}{broker}topic_prefix = \"vigil/#\"\n"),
        8,
        16,
        "is not a usable MQTT topic prefix",
    );
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{mqtt}{broker}secret = \"x\"\n"),
        8,
        10,
        "secret does not apply to a mqtt output",
    );
    assert_rejected_at(
        &dir,
        &format!("{CAMERA}{mqtt}{broker}ca_file = \"ca.pem\"\n"),
        8,
        11,
        "ca_file needs an mqtts:// broker",
    );
    let c = check_text(
        &dir,
        &format!(
            "{CAMERA}{mqtt}broker = \"mqtts://example.com:8883\"\nusername = \"u\"\npassword = \"p\"\n"
        ),
    );
    assert_eq!(c.code, 0, "{}", c.stderr);
    // A good one passes, and a password in the URL is never echoed.
    let c = check_text(
        &dir,
        &format!("{CAMERA}{hook}url = \"https://user:hunter2@example.com/hook\"\nsecret = \"k\"\n"),
    );
    assert_eq!(c.code, 0, "{}", c.stderr);
    let c = check_text(
        &dir,
        &format!("{CAMERA}{hook}url = \"ftp://user:hunter2@example.com/hook\"\n"),
    );
    assert_eq!(c.code, 2);
    assert!(!c.stderr.contains("hunter2"), "{}", c.stderr);
}

/// With an adapter that says what it was trained on (the demo model's), a
/// standing question about anything else is valid but gets a warning that
/// its answers are guesses; one about a trained object gets none.
#[test]
fn questions_outside_the_adapters_training_are_warned_about() {
    let dir = TempDir::new("cfg-trained");
    let text = format!(
        "{}{CAMERA}\
         [[question]]\nname = \"visitor\"\ncamera = \"yard\"\nask = \"Is there a person at the door?\"\nanswer = \"yes-no\"\n\
         [[question]]\nname = \"cats\"\ncamera = \"yard\"\nask = \"How many cats are there?\"\nanswer = \"count\"\n",
        common::config::demo_model()
    );
    let c = check_text(&dir, &text);
    assert_eq!(c.code, 0, "{}", c.stderr);
    assert!(c.stdout.contains("OK"), "{}", c.stdout);
    let warnings: Vec<&str> = c
        .stderr
        .lines()
        .filter(|l| l.contains("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", c.stderr);
    assert!(
        warnings[0].contains("question \"visitor\"")
            && warnings[0].contains("trained on: cat, horse")
            && warnings[0].contains("\"person\" is not among them"),
        "{}",
        c.stderr
    );
}
