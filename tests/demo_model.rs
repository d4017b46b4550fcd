//! The trained demo model (models/demo/): accuracy on held-out data through
//! the runtime, the demo scenario end to end through the daemon's socket,
//! and clear errors for a broken adapter.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::daemon::Daemon;
use common::{TempDir, model_file};

/// The scenario plays a clip in real time and the daemon must answer each
/// second's question within that second; the held-out evaluation running
/// beside it on the same cores made its alerts 6 s late (measured on 2
/// cores). The two take turns.
static CPU_HEAVY: Mutex<()> = Mutex::new(());

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn demo_file(name: &str) -> PathBuf {
    model_file(&format!("demo/{name}"))
}

fn figures(stdout: &str) -> BTreeMap<String, f64> {
    stdout
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `vigil eval` on the fixed held-out subset (17 questions per family and
/// 17 few-shot episodes asked with 0 and 2 examples; `make test` writes it
/// with the Python reference's answers).
///
/// The floors are the issue's goals less two binomial standard deviations
/// at the goal on 17 questions, or what the committed demo model reaches
/// on this subset less two of its right answers (.12), whichever is
/// higher: two answers may flip because the LM's quantized-activation
/// kernels in llama.cpp differ between CPUs. A floor is a whole number of
/// the 17 answers (k/17 rounded down). The model (full held-out rate in
/// brackets): presence .94 (.97), count .88 (.74), motion 1.00 (.93),
/// change .88 (.87), 2-shot naming .82 (.90), agreement 1.00 (.993).
/// - presence: goal .95 − 2·√(.95·.05/17) = .84; model .94 − 2 answers
///   = .82: at .88, which asks for the same 15 of 17 as .84;
/// - count: goal .80 − 2·√(.80·.20/17) = .61; model .88 − 2 answers =
///   .76 (13 of 17): at .76. The subset is a lucky draw for count (the
///   full rate .74 expects 12.6 of 17), so this floor is the tight one;
/// - motion: goal .85 − 2·√(.85·.15/17) = .68; model 1.00 − 2 answers =
///   .88: at .88;
/// - change: goal .85 − 2·√(.85·.15/17) = .68; model .88 − 2 answers =
///   .76: at .82 (14 of 17, one answer of room) instead, because the
///   majority answer ("no") scores .82 and a floor under it would let a
///   change path that stops seeing the clip pass;
/// - 2-shot naming (the gain's 17 paired episodes cannot resolve 10
///   points): model .82 − 2 answers = .70 (12 of 17): at .70;
/// - agreement: goal .98 − 2·√(.98·.02/102) = .95, widened for the CPUs'
///   kernels: at .90.
///
/// Each is above chance (presence, motion, change and naming .5, count
/// .25), so a runtime that stops seeing the image, or mixes up which image
/// a text attends to, fails (models/demo/EVAL.md).
#[test]
fn held_out_subset_meets_the_accuracy_floors() {
    let _turn = CPU_HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let dataset = repo("target/eval-subset");
    assert!(
        dataset.join("dataset.json").is_file(),
        "{} is missing: `make test` writes it (scripts/demo-model.sh subset)",
        dataset.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["eval", "--dataset"])
        .arg(&dataset)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "vigil eval failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{stdout}");
    let f = figures(&stdout);
    let floors = [
        ("accuracy_presence", 0.88),
        ("accuracy_count", 0.76),
        ("accuracy_motion", 0.88),
        ("accuracy_change", 0.82),
        ("accuracy_fewshot_2shot", 0.70),
        ("reference_agreement", 0.90),
    ];
    for (name, floor) in floors {
        let value = *f
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in:\n{stdout}"));
        assert!(value >= floor, "{name} {value} < {floor}:\n{stdout}");
    }
    for family in [
        "presence",
        "count",
        "motion",
        "change",
        "fewshot_0shot",
        "fewshot_2shot",
    ] {
        assert_eq!(f[&format!("n_{family}")], 17.0, "{stdout}");
    }
    assert_eq!(f["chance_presence"], 0.5, "{stdout}");
    assert_eq!(f["chance_fewshot_2shot"], 0.5, "{stdout}");
    assert!(f["chance_count"] <= 0.34, "{stdout}");
    assert!(f.contains_key("fewshot_gain"), "{stdout}");
}

/// A yes/no standing question about `object` on the camera "yard",
/// alerting after two "yes" answers in a row.
fn object_question(object: &str) -> String {
    format!(
        r#"
[[question]]
name = "{object}"
camera = "yard"
ask = "Is there a {object}?"
answer = "yes-no"
every = "1s"
window = "1 frame"
alert_when = "yes"
consecutive = 2
"#
    )
}

/// Plays data/`clip` (written by `make models`) as the live camera "yard"
/// of a daemon on the demo model with `questions`; returns the clip's
/// metadata, the times (s of the clip) of each (question, event kind),
/// and `GET /v1/questions` at the end.
fn play_scenario(clip: &str, questions: &str) -> Scenario {
    let clip = repo(&format!("data/{clip}"));
    assert!(
        clip.is_file(),
        "{} is missing: run `make models`",
        clip.display()
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(clip.with_extension("json")).unwrap())
            .unwrap();
    let dir = TempDir::new("demo-scenario");
    let config = dir.path().join("vigil.toml");
    std::fs::write(
        &config,
        format!(
            r#"{model}
[[camera]]
name = "yard"
source = "{clip}"
fps = 1
{questions}"#,
            model = common::config::demo_model(),
            clip = clip.display(),
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&dir, &config, None);
    daemon.wait_ready(Duration::from_secs(120));
    // The wall-clock time of the clip's first frame: the file is replayed
    // in real time, so stream second s arrives at start + s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let start_ms = loop {
        let cams = daemon.get("/v1/cameras").json();
        let cam = &cams[0];
        if cam["frames"].as_u64().unwrap_or(0) >= 1 {
            let age = cam["last_frame_age_ms"].as_u64().unwrap_or(0);
            let frames = cam["frames"].as_u64().unwrap();
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            // frames - 1 seconds of stream have played before the newest one.
            break now - age - (frames - 1) * 1000;
        }
        assert!(Instant::now() < deadline, "no frame from the scenario clip");
        std::thread::sleep(Duration::from_millis(100));
    };
    let duration = meta["duration_s"].as_f64().unwrap();
    let end = Instant::now() + Duration::from_secs_f64(duration + 8.0);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
    }
    let events = daemon.get("/v1/events?limit=500").json();
    let mut seen: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for e in events.as_array().unwrap() {
        let kind = e["kind"].as_str().unwrap().to_string();
        let question = e["question"].as_str().unwrap_or("").to_string();
        let t = (e["time_ms"].as_u64().unwrap() as f64 - start_ms as f64) / 1000.0;
        seen.entry((question, kind)).or_default().push(t);
    }
    let questions = daemon.get("/v1/questions").json();
    assert_eq!(daemon.terminate(Duration::from_secs(20)).code(), Some(0));
    Scenario {
        meta,
        seen,
        questions,
    }
}

struct Scenario {
    meta: serde_json::Value,
    seen: BTreeMap<(String, String), Vec<f64>>,
    questions: serde_json::Value,
}

/// Each of the clip's events gave exactly one alert within ±3 s of the
/// object's arrival and one return to normal within ±3 s of its leaving.
fn assert_alerts_at_the_known_times(scenario: &Scenario) {
    let Scenario { meta, seen, .. } = scenario;
    let summary = format!("{seen:#?}");
    for event in meta["events"].as_array().unwrap() {
        let object = event["object"].as_str().unwrap();
        let from = event["from_s"].as_f64().unwrap();
        let to = event["to_s"].as_f64().unwrap();
        let alerts = seen
            .get(&(object.to_string(), "alert".to_string()))
            .cloned()
            .unwrap_or_default();
        let normals = seen
            .get(&(object.to_string(), "normal".to_string()))
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            alerts.len(),
            1,
            "{object}: one alert expected (at {from} s ± 3):\n{summary}"
        );
        assert!(
            (alerts[0] - from).abs() <= 3.0,
            "{object}: alert at {:.1} s, the {object} arrives at {from} s:\n{summary}",
            alerts[0]
        );
        assert_eq!(
            normals.len(),
            1,
            "{object}: one return to normal expected (at {to} s ± 3):\n{summary}"
        );
        assert!(
            (normals[0] - to).abs() <= 3.0,
            "{object}: normal at {:.1} s, the {object} leaves at {to} s:\n{summary}",
            normals[0]
        );
    }
}

/// The demo scenario (real footage, a cat from 15 s to 40 s, a horse from
/// 50 s to 66 s) played as a live camera: the standing questions raise
/// their alerts within ±3 s of the known times and return to normal after.
#[test]
fn demo_scenario_alerts_at_the_known_times() {
    let _turn = CPU_HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let questions = object_question("cat") + &object_question("horse");
    assert_alerts_at_the_known_times(&play_scenario("demo-scenario.avi", &questions));
}

/// A still picture where a cat arrives at 8 s, keeps still, and leaves at
/// 20 s, with the default change gating: after each change the LM runs
/// once and the next ticks keep its answer, which must count towards
/// `consecutive = 2` both ways, or the alert (and later the return to
/// normal) would never come.
#[test]
fn an_object_that_arrives_and_keeps_still_on_a_still_scene_alerts() {
    let _turn = CPU_HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let scenario = play_scenario("still-scenario.avi", &object_question("cat"));
    // The scene is still between the changes: most ticks kept an answer.
    let cat = &scenario.questions[0];
    assert!(
        cat["gated"].as_u64().unwrap() >= 10,
        "change gating should keep most answers on a still scene: {cat}"
    );
    assert_alerts_at_the_known_times(&scenario);
}

fn eval_error(adapter: &Path, resampler: &Path, encoder: &Path) -> String {
    let dataset = repo("target/eval-subset");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["eval", "--limit", "1", "--dataset"])
        .arg(&dataset)
        .arg("--lm")
        .arg(model_file("smollm2-135m-instruct-q4_1.gguf"))
        .arg("--adapter")
        .arg(adapter)
        .arg("--resampler")
        .arg(resampler)
        .arg("--encoder")
        .arg(encoder)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn truncated_or_mismatched_demo_model_gives_a_clear_error() {
    let dir = TempDir::new("demo-broken");
    let adapter = demo_file("xattn-smollm2-demo.gguf");
    let bytes = std::fs::read(&adapter).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let resampler = demo_file("resampler-demo.onnx");
    let encoder = model_file("efficientnet-lite0-wide.onnx");

    let err = eval_error(&truncated, &resampler, &encoder);
    assert!(
        err.contains("truncated.gguf"),
        "the error names the file: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // The demo resampler was trained on the wide encoder's 1952-wide
    // features (EfficientNet-Lite0's head and block 11's expansion); the
    // plain graph gives 1280, NFNet-F0 3072.
    for other in ["efficientnet-lite0.onnx", "nfnet-f0.onnx"] {
        let err = eval_error(&adapter, &resampler, &model_file(other));
        assert!(err.contains("resampler-demo"), "{err}");
        assert!(err.contains("1952"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// README.md and EVAL.md describe the committed model: the blocks' count
/// and layers and the resampler's shape as `training.json` records them,
/// and every accuracy README quotes is one of EVAL.md's table.
#[test]
fn readme_and_eval_agree_with_the_committed_model() {
    let read = |path: &str| std::fs::read_to_string(repo(path)).unwrap();
    let training: serde_json::Value =
        serde_json::from_str(&read("models/demo/training.json")).unwrap();
    let readme = read("README.md");
    let eval = read("models/demo/EVAL.md");
    let layers: Vec<u64> = training["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect();
    let (last, rest) = layers.split_last().unwrap();
    let list = format!(
        "{}, {last}",
        rest.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let blocks = format!("{} gated cross-attention blocks", layers.len());
    for (name, text) in [("README.md", &readme), ("EVAL.md", &eval)] {
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(&blocks), "{name} should say \"{blocks}\"");
        assert!(
            flat.contains(&format!("before layers {list}"))
                || flat.contains(&format!("before LM layers {list}")),
            "{name} should list the blocks' layers: {list}"
        );
    }
    let r = &training["resampler"];
    let shape = format!(
        "width {}, {} layers, {} heads × {}, {} latents, up to {} frames",
        r["width"], r["depth"], r["heads"], r["head_dim"], r["n_latents"], r["max_frames"]
    );
    assert!(
        eval.contains(&shape),
        "EVAL.md should describe the resampler as \"{shape}\""
    );

    // The figures README quotes, each in EVAL.md's table.
    let table: Vec<&str> = eval.lines().filter(|l| l.starts_with('|')).collect();
    let figure = regex::Regex::new(r"\b0\.\d\d\b|\b\d+ points\b").unwrap();
    let quoted: Vec<&str> = figure.find_iter(&readme).map(|m| m.as_str()).collect();
    assert!(!quoted.is_empty(), "README quotes the demo model's figures");
    for q in quoted {
        assert!(
            table.iter().any(|row| row.contains(q)),
            "README quotes {q}, which is not in EVAL.md's table"
        );
    }
}
