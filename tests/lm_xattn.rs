//! Flamingo's gated cross-attention on llama.cpp, on the real SmolLM2-135M
//! GGUF: frozen-LM identity, parity with the numpy reference
//! (tools/vigil_kit), the media mask, prefix caching, answers, bad files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use vigil::lm::{
    Adapter, ContextOptions, GenerateOptions, LmError, Model, Prompt, Session, StopReason, Visual,
};

mod common;

use common::model_file;

const N_VISUAL: usize = 64;
const VISUAL_DIM: usize = 384;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn smollm2() -> Model {
    Model::load(&model_file("smollm2-135m-instruct-q4_1.gguf")).unwrap()
}

fn random_adapter() -> Arc<Adapter> {
    Arc::new(Adapter::load(&model_file("xattn-smollm2-random.gguf")).unwrap())
}

/// One thread per context: test binaries run side by side on 2 cores.
fn options() -> ContextOptions {
    ContextOptions {
        threads: 1,
        ..ContextOptions::default()
    }
}

/// The model kit's Python (the virtualenv scripts/models.sh made).
fn kit(args: &[&str]) -> std::process::Output {
    let python = Command::new(root().join("scripts/models.sh"))
        .arg("--python")
        .output()
        .expect("scripts/models.sh --python");
    let python = String::from_utf8(python.stdout).unwrap();
    Command::new(python.trim())
        .args(["-m", "vigil_kit"])
        .args(args)
        .current_dir(root().join("tools"))
        .output()
        .expect("run the model kit")
}

/// Writes a random SmolLM2 adapter with extra writer arguments.
fn write_adapter(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    write_adapter_for(
        &model_file("smollm2-135m-instruct-q4_1.gguf"),
        dir,
        name,
        extra,
    )
}

/// Deterministic visual tokens with unit variance (like the resampler's
/// LayerNorm output): uniform in [-√3, √3].
fn visual_tokens(seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..N_VISUAL * VISUAL_DIM)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * 3f32.sqrt()
        })
        .collect()
}

fn visual(data: &[f32]) -> Visual<'_> {
    Visual {
        data,
        n_tokens: N_VISUAL,
        dim: VISUAL_DIM,
    }
}

const QUESTIONS: [&str; 10] = [
    " Is anyone on the path? Answer:",
    " How many people are in the picture? Answer:",
    " What colour is the van?",
    " Question: is there a bicycle? Answer:",
    " Describe what you see.",
    " Is the door open or closed?",
    " Count the cars. Answer:",
    " What is the weather like?",
    " Is it day or night? Answer:",
    " Is there an animal on the road?",
];

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

#[test]
fn zero_gates_leave_the_lm_bit_identical() {
    let dir = common::TempDir::new("xattn-zero");
    let path = write_adapter(dir.path(), "zero.gguf", &["--gate", "0"]);
    let adapter = Arc::new(Adapter::load(&path).unwrap());
    let model = smollm2();
    let marker = adapter.config().media_marker.clone();
    let mut conditioned = Session::new(&model, Some(adapter), &options()).unwrap();
    let mut plain = Session::new(&model, None, &options()).unwrap();
    let pixels = visual_tokens(1);
    let media = conditioned.media(visual(&pixels)).unwrap();
    for question in QUESTIONS {
        conditioned.clear();
        plain.clear();
        // Same chunks (so the same batches) with and without the blocks.
        let a = conditioned
            .feed(&Prompt::new().text("Camera:").media(&media).text(question))
            .unwrap();
        let b = plain
            .feed(&Prompt::new().text("Camera:").text(&marker).text(question))
            .unwrap();
        assert_eq!(conditioned.tokens(), plain.tokens(), "{question}");
        // Text chunks: the plain prompt has the marker as a third one.
        assert_eq!((a.len(), b.len()), (2, 3));
        for (x, y) in [(&a[0], &b[0]), (&a[1], &b[2])] {
            assert!(
                x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{question}: logits differ by up to {}",
                max_abs_diff(x, y)
            );
        }
    }
}

#[test]
fn visual_tokens_change_the_logits_when_gates_are_open() {
    let model = smollm2();
    let mut session = Session::new(&model, Some(random_adapter()), &options()).unwrap();
    let (p1, p2) = (visual_tokens(1), visual_tokens(2));
    let (m1, m2) = (
        session.media(visual(&p1)).unwrap(),
        session.media(visual(&p2)).unwrap(),
    );
    let mut last = |media| {
        session.clear();
        session
            .feed(&Prompt::new().media(media).text(QUESTIONS[0]))
            .unwrap()
            .pop()
            .unwrap()
    };
    let (a, b, again) = (last(&m1), last(&m2), last(&m1));
    assert_eq!(a, again, "the same media must give the same logits");
    let diff = max_abs_diff(&a, &b);
    assert!(
        diff > 0.05,
        "other visual tokens moved logits by only {diff}"
    );
}

/// A Q8_0 adapter runs its blocks in f32: its logits equal, bit for bit,
/// those of an f32 file holding the values the Q8_0 one decodes to. (Had
/// ggml multiplied the Q8_0 matrices as stored, it would have quantized the
/// activations to 8 bits as well, and the two would differ.)
#[test]
fn a_q8_0_adapter_computes_like_its_f32_twin() {
    let dir = common::TempDir::new("xattn-q8-twin");
    let args = ["--gate", "1.0", "--seed", "3"];
    let quantized = write_adapter(
        dir.path(),
        "q8.gguf",
        &[&args[..], &["--type", "q8_0"]].concat(),
    );
    let twin = write_adapter(
        dir.path(),
        "f32.gguf",
        &[&args[..], &["--type", "f32", "--values-of", "q8_0"]].concat(),
    );
    let model = smollm2();
    let tokens = visual_tokens(5);
    let logits = |path: &Path| {
        let adapter = Arc::new(Adapter::load(path).unwrap());
        let mut session = Session::new(&model, Some(adapter), &options()).unwrap();
        let media = session.media(visual(&tokens)).unwrap();
        session
            .feed(&Prompt::new().media(&media).text(QUESTIONS[0]))
            .unwrap()
    };
    let (a, b) = (logits(&quantized), logits(&twin));
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| max_abs_diff(x, y))
        .fold(0f32, f32::max);
    assert_eq!(
        diff, 0.0,
        "the Q8_0 adapter strays {diff} from its f32 twin"
    );
}

/// llama.cpp's embedding batch: the LM's own token embeddings (dequantized
/// by the model kit) fed as embeddings give bit-identical logits to the
/// tokens themselves.
#[test]
fn embedding_batches_equal_the_token_path() {
    let model = smollm2();
    let tokens = model
        .tokenize_with("Is anyone on the path? Answer:", false, false)
        .unwrap();
    let dir = common::TempDir::new("xattn-embd");
    let out = dir.path().join("rows.f32");
    let ids: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
    let lm = model_file("smollm2-135m-instruct-q4_1.gguf");
    let output = kit(&[
        "token-embeddings",
        "--lm",
        lm.to_str().unwrap(),
        "--tokens",
        &ids.join(","),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let embeddings: Vec<f32> = std::fs::read(&out)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(embeddings.len(), tokens.len() * model.n_embd());
    let rows: Vec<usize> = (0..tokens.len()).collect();
    let mut a = vigil::lm::Context::new(&model, &options(), None).unwrap();
    let mut b = vigil::lm::Context::new(&model, &options(), None).unwrap();
    let by_token = a.decode_rows(&tokens, &rows).unwrap();
    let by_embedding = b.decode_embeddings(&embeddings, &rows).unwrap();
    assert_eq!(by_token.len(), tokens.len());
    for (x, y) in by_token.iter().zip(&by_embedding) {
        assert!(x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()));
    }
    // Continuing with tokens after embeddings works (positions carry on).
    a.decode(&tokens[..2]).unwrap();
    b.decode(&tokens[..2]).unwrap();
    assert_eq!(a.last_logits(), b.last_logits());
    assert_eq!(b.n_past(), tokens.len() + 2);
    assert!(matches!(
        b.decode_embeddings(&embeddings[..10], &[]),
        Err(LmError::RaggedEmbeddings { values: 10, .. })
    ));
}

/// A text token attends only to the latest media before it; tokens before
/// any media are left untouched. (Image 1 still reaches tokens after image
/// 2 through the frozen LM's own self-attention over the positions it
/// changed, as in Flamingo; that the blocks read image 2 there is checked
/// exactly against the reference in `runtime_matches_the_reference_implementation`.)
#[test]
fn media_mask_follows_the_latest_media() {
    let model = smollm2();
    let mut session = Session::new(&model, Some(random_adapter()), &options()).unwrap();
    let mut plain = Session::new(&model, None, &options()).unwrap();
    let images: Vec<Vec<f32>> = [1, 11, 2, 3].into_iter().map(visual_tokens).collect();
    let m: Vec<_> = images
        .iter()
        .map(|p| session.media(visual(p)).unwrap())
        .collect();
    let run = |session: &mut Session, first: usize, second: usize| {
        session.clear();
        session
            .feed(
                &Prompt::new()
                    .text("Before any image.")
                    .media(&m[first])
                    .text(" A: yes")
                    .end_of_chunk()
                    .media(&m[second])
                    .text(QUESTIONS[1]),
            )
            .unwrap()
    };
    let base = run(&mut session, 0, 2);
    let image1_changed = run(&mut session, 1, 2);
    let image2_changed = run(&mut session, 0, 3);
    let untouched = plain
        .feed(&Prompt::new().text("Before any image."))
        .unwrap();
    assert_eq!(
        base[0], untouched[0],
        "text before any media must be the frozen LM's"
    );
    assert_eq!(base[0], image1_changed[0]);
    assert_ne!(
        base[1], image1_changed[1],
        "text after image 1 must see image 1"
    );
    assert_eq!(
        base[1], image2_changed[1],
        "text before image 2 must not see image 2"
    );
    assert_ne!(
        base[2], image2_changed[2],
        "text after image 2 must see image 2"
    );
    let indices = session.media_indices();
    let before = model
        .tokenize_with("Before any image.", false, true)
        .unwrap()
        .len();
    assert!(indices[..before].iter().all(|&i| i == -1));
    let second = indices.iter().position(|&i| i == 1).unwrap();
    assert!(indices[before..second].iter().all(|&i| i == 0));
    assert!(indices[second..].iter().all(|&i| i == 1));
}

#[test]
fn restored_prefix_gives_the_same_logits_as_recomputing_it() {
    let model = smollm2();
    let mut session = Session::new(&model, Some(random_adapter()), &options()).unwrap();
    let (p1, p2, p3) = (visual_tokens(1), visual_tokens(2), visual_tokens(3));
    let (m1, m2, m3) = (
        session.media(visual(&p1)).unwrap(),
        session.media(visual(&p2)).unwrap(),
        session.media(visual(&p3)).unwrap(),
    );
    let examples = Prompt::new()
        .example(&m1, " Is anyone on the path? A: yes")
        .example(&m2, " Is anyone on the path? A: no");
    let query = Prompt::new().media(&m3).text(" Is anyone on the path? A:");
    session.feed(&examples).unwrap();
    let prefix = session.save().unwrap();
    let mut restored = Vec::new();
    for _ in 0..2 {
        session.restore(&prefix).unwrap();
        session.feed(&query).unwrap();
        restored.push(session.score(&[" yes", " no"]).unwrap());
    }
    session.clear();
    session.feed(&examples).unwrap();
    session.feed(&query).unwrap();
    let recomputed = session.score(&[" yes", " no"]).unwrap();
    assert_eq!(restored[0], recomputed);
    assert_eq!(restored[1], recomputed);
    assert!(prefix.n_tokens() > 20 && prefix.bytes() > 0);
}

#[test]
fn scoring_matches_the_logits_and_leaves_the_sequence_alone() {
    let model = smollm2();
    let mut session = Session::new(&model, None, &options()).unwrap();
    session
        .feed(&Prompt::new().text("The capital of France is"))
        .unwrap();
    let before = session.tokens().to_vec();
    let logits = session.last_logits().unwrap().to_vec();
    let choices = session
        .score(&[" Paris", " Berlin", " the city of Paris"])
        .unwrap();
    assert_eq!(session.tokens(), &before[..]);
    assert!(choices[0].prob > choices[1].prob && choices[0].prob > choices[2].prob);
    let total: f64 = choices.iter().map(|c| c.prob).sum();
    assert!((total - 1.0).abs() < 1e-9);
    // A single-token candidate is exactly its log-softmax entry.
    let paris = model.tokenize_with(" Paris", false, false).unwrap();
    assert_eq!(paris.len(), 1);
    let expected = vigil::lm::log_softmax(&logits)[paris[0].index()];
    assert_eq!(choices[0].log_prob, expected);
    // Candidates sharing leading tokens (" 2" is " " + "2" here) are
    // scored from one decode of the shared part, with the same result as
    // scoring each on its own.
    let counts = [" 2", " 3", " 12"];
    assert!(model.tokenize_with(" 2", false, false).unwrap().len() > 1);
    let shared = session.score(&counts).unwrap();
    assert_eq!(session.tokens(), &before[..]);
    for (i, c) in counts.iter().enumerate() {
        let alone = session.score(&[c, " Paris"]).unwrap()[0].log_prob;
        assert!(
            (shared[i].log_prob - alone).abs() < 1e-3,
            "{c}: {} shared vs {alone} alone",
            shared[i].log_prob
        );
    }
    // A multi-token candidate sums its tokens' log-probabilities: the
    // same as feeding it and reading the logits along the way.
    let tokens = model
        .tokenize_with(" the city of Paris", false, false)
        .unwrap();
    let mut by_hand = vigil::lm::log_softmax(&logits)[tokens[0].index()];
    for pair in tokens.windows(2) {
        session
            .feed(&Prompt::new().text(model.piece(pair[0])))
            .unwrap();
        by_hand += vigil::lm::log_softmax(session.last_logits().unwrap())[pair[1].index()];
    }
    assert!(
        (choices[2].log_prob - by_hand).abs() < 1e-3,
        "{} vs {by_hand}",
        choices[2].log_prob
    );
    // The sequence is usable after scoring: generation continues it.
    session.truncate(before.len());
    session.feed(&Prompt::new().text(" a city called")).unwrap();
    let generated = session.generate(&GenerateOptions::default()).unwrap();
    assert!(
        generated.text.contains("Paris"),
        "greedy continuation {:?}",
        generated.text
    );
}

#[test]
fn generation_stops_at_max_tokens_and_sampling_is_reproducible() {
    let model = smollm2();
    let mut session = Session::new(&model, Some(random_adapter()), &options()).unwrap();
    let p = visual_tokens(1);
    let media = session.media(visual(&p)).unwrap();
    session
        .feed(&Prompt::new().media(&media).text(" Describe the scene:"))
        .unwrap();
    let start = session.tokens().len();
    let limited = session
        .generate(&GenerateOptions {
            max_tokens: 3,
            stop_at_newline: false,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(limited.stop, StopReason::MaxTokens);
    assert_eq!(limited.tokens.len(), 3);
    assert_eq!(session.tokens().len(), start + 3);
    // Sampling with a seed is reproducible.
    let sample = |session: &mut Session| {
        session.truncate(start);
        session.feed(&Prompt::new().text(" It")).unwrap();
        session
            .generate(&GenerateOptions {
                max_tokens: 8,
                temperature: 0.8,
                top_k: 20,
                seed: 42,
                stop_at_newline: false,
            })
            .unwrap()
            .tokens
    };
    assert_eq!(sample(&mut session), sample(&mut session));
}

/// Prompts whose next token is clear (a wide top-1 margin), so that the
/// argmax comparison tests the math rather than a coin toss between two
/// near-equal tokens.
const DECISIVE: [&str; 10] = [
    " The capital of France is",
    " Monday, Tuesday, Wednesday,",
    " The quick brown fox jumps over the lazy",
    " January, February, March,",
    " 1, 2, 3, 4, 5,",
    " Red, orange, yellow, green,",
    " A, B, C, D,",
    " The sun rises in the",
    " Ten, twenty, thirty,",
    " The opposite of hot is",
];

#[test]
fn generation_stops_at_a_newline_or_the_end_of_the_turn() {
    let model = smollm2();
    let mut session = Session::new(&model, None, &options()).unwrap();
    session
        .feed(&Prompt::new().text("Q: What is 2+2?\nA: 4\nQ: What is 3+3?\nA:"))
        .unwrap();
    let line = session.generate(&GenerateOptions::default()).unwrap();
    assert_eq!(line.stop, StopReason::Newline, "{line:?}");
    // (SmolLM2-135M answers "5": the stop is what is tested, not its sums.)
    assert!(
        !line.text.trim().is_empty() && !line.text.contains('\n'),
        "{line:?}"
    );
    assert!(line.tokens.len() <= 3, "{line:?}");
    session.clear();
    session
        .feed(
            &Prompt::new()
                .text("<|im_start|>user\nSay the word hello.<|im_end|>\n<|im_start|>assistant\n"),
        )
        .unwrap();
    let turn = session
        .generate(&GenerateOptions {
            max_tokens: 48,
            stop_at_newline: false,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(turn.stop, StopReason::EndOfSequence, "{turn:?}");
    assert!(turn.text.to_lowercase().contains("hello"), "{turn:?}");
}

/// Runtime vs the numpy reference (tools/vigil_kit/gguf_lm.py) on 20
/// prompts, 8 of them with two images. Every prompt opens with text before
/// any media: those rows are the frozen LM alone and measure how far
/// llama.cpp's quantized arithmetic (8-bit activations in its Q4_1/Q8_0
/// matmuls, f16 KV cache) sits from the f32 reference. The conditioned
/// rows may not stray further than twice that (measured: 1.5 times).
#[test]
fn runtime_matches_the_reference_implementation() {
    let lm = model_file("smollm2-135m-instruct-q4_1.gguf");
    let (plain_worst, conditioned_worst) =
        reference_parity(&lm, &model_file("xattn-smollm2-random.gguf"), 20);
    assert!(
        plain_worst < 1.5,
        "the frozen LM itself strays {plain_worst} from the reference"
    );
    assert!(
        conditioned_worst <= 2.0 * plain_worst,
        "with blocks the runtime strays {conditioned_worst}, over 2 x the frozen LM's {plain_worst}"
    );
}

/// Runs `n_prompts` prompts through runtime and reference; asserts the same
/// argmax on every row and returns the max abs logit difference of the
/// frozen-LM rows and of the conditioned rows.
fn reference_parity(lm: &Path, adapter_path: &Path, n_prompts: usize) -> (f32, f32) {
    let model = Model::load(lm).unwrap();
    let adapter = Arc::new(Adapter::load(adapter_path).unwrap());
    let mut session = Session::new(&model, Some(adapter), &options()).unwrap();
    let images: Vec<Vec<f32>> = (1..=3).map(visual_tokens).collect();
    let media: Vec<_> = images
        .iter()
        .map(|p| session.media(visual(p)).unwrap())
        .collect();
    let dir = common::TempDir::new("xattn-reference");
    let mut raw = Vec::new();
    for v in images.iter().flatten() {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(dir.path().join("visual.f32"), raw).unwrap();

    let mut prompts = Vec::new();
    let mut runtime = Vec::new();
    let mut conditioned = Vec::new();
    for i in 0..n_prompts {
        let q = DECISIVE[i % DECISIVE.len()];
        let lead = Prompt::new().text("One, two, three,");
        let (chunks, order): (Vec<Prompt>, Vec<usize>) = match i % 5 {
            0 => (vec![lead, Prompt::new().text(q)], vec![]),
            1 | 2 => (
                vec![
                    lead,
                    Prompt::new().media(&media[i % 3]),
                    Prompt::new().text(q),
                ],
                vec![i % 3],
            ),
            _ => (
                vec![
                    lead,
                    Prompt::new().media(&media[i % 3]),
                    Prompt::new().text(DECISIVE[(i + 3) % DECISIVE.len()]),
                    Prompt::new().end_of_chunk(),
                    Prompt::new().media(&media[(i + 1) % 3]),
                    Prompt::new().text(q),
                ],
                vec![i % 3, (i + 1) % 3],
            ),
        };
        session.clear();
        let mut rows = Vec::new();
        for chunk in &chunks {
            let logits = session.feed(chunk).unwrap();
            if let Some(l) = logits.into_iter().last() {
                rows.push(session.tokens().len() - 1);
                conditioned.push(session.media_indices().last() != Some(&-1));
                runtime.push(l);
            }
        }
        // Media indices count per prompt; map them to the images used.
        let media_of: Vec<i64> = session
            .media_indices()
            .iter()
            .map(|&m| if m < 0 { -1 } else { order[m as usize] as i64 })
            .collect();
        prompts.push(serde_json::json!({
            "tokens": session.tokens(),
            "media": media_of,
            "rows": rows,
        }));
    }
    let out = dir.path().join("reference.f32");
    let request = serde_json::json!({
        "lm": lm,
        "adapter": adapter_path,
        "visual": {"path": dir.path().join("visual.f32"), "count": 3, "tokens": N_VISUAL, "dim": VISUAL_DIM},
        "prompts": prompts,
        "out": out,
    });
    let request_path = dir.path().join("request.json");
    std::fs::write(&request_path, request.to_string()).unwrap();
    let output = kit(&["lm-reference", request_path.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let reference: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let n_vocab = model.n_vocab();
    assert_eq!(reference.len(), runtime.len() * n_vocab);
    let (mut plain_worst, mut conditioned_worst, mut least_margin) = (0f32, 0f32, f32::MAX);
    for (k, (r, x)) in reference.chunks_exact(n_vocab).zip(&runtime).enumerate() {
        let diff = max_abs_diff(r, x);
        let mut sorted = r.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        least_margin = least_margin.min(sorted[0] - sorted[1]);
        assert_eq!(
            argmax(r),
            argmax(x),
            "row {k}: argmax differs (max abs diff {diff}, reference top-2 margin {})",
            sorted[0] - sorted[1]
        );
        if conditioned[k] {
            conditioned_worst = conditioned_worst.max(diff);
        } else {
            plain_worst = plain_worst.max(diff);
        }
    }
    let n_conditioned = conditioned.iter().filter(|&&c| c).count();
    eprintln!(
        "reference parity: {} rows ({n_conditioned} conditioned); max abs logit diff: frozen LM {plain_worst}, with blocks {conditioned_worst}; least top-2 margin {least_margin}",
        runtime.len()
    );
    assert!(n_conditioned >= n_prompts);
    (plain_worst, conditioned_worst)
}

fn extra_lm(name: &str) -> PathBuf {
    let path = root().join("models").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-lms.sh (make test-all does)",
        path.display()
    );
    path
}

/// The blocks find their layers in another architecture's graph and
/// change the logits only where media are present.
fn blocks_run_in(lm: &Path, dir: &Path) -> PathBuf {
    let model = Model::load(lm).unwrap();
    let adapter_path = write_adapter_for(lm, dir, "random.gguf", &[]);
    let adapter = Arc::new(Adapter::load(&adapter_path).unwrap());
    let layers = adapter.config().layers.clone();
    let mut session = Session::new(&model, Some(adapter), &options()).unwrap();
    let (p1, p2) = (visual_tokens(1), visual_tokens(2));
    let (m1, m2) = (
        session.media(visual(&p1)).unwrap(),
        session.media(visual(&p2)).unwrap(),
    );
    let mut answer = |media| {
        session.clear();
        session
            .feed(
                &Prompt::new()
                    .text("Camera:")
                    .media(media)
                    .text(QUESTIONS[0]),
            )
            .unwrap()
    };
    let (a, b) = (answer(&m1), answer(&m2));
    assert_eq!(a[0], b[0], "text before media must not see it");
    assert!(
        max_abs_diff(&a[1], &b[1]) > 0.01,
        "visual tokens do not reach the logits"
    );
    // Three decodes with media after the reset (marker, question): each
    // hooked layer edited once per decode that had media.
    let edits = session.hook_edits();
    for (layer, &count) in edits.iter().enumerate() {
        let hooked = layers.contains(&(layer + 1));
        assert_eq!(
            count > 0,
            hooked,
            "layer {layer} output edited {count} times"
        );
    }
    adapter_path
}

fn write_adapter_for(lm: &Path, dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec![
        "random-adapter",
        "--lm",
        lm.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let output = kit(&args);
    assert!(
        output.status.success(),
        "random-adapter failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    out
}

#[test]
#[ignore = "make test-all: needs the qwen2 GGUF from scripts/fetch-lms.sh"]
fn qwen2_runs_the_blocks_and_matches_the_reference() {
    let lm = extra_lm("qwen2.5-coder-0.5b-instruct.gguf");
    let dir = common::TempDir::new("xattn-qwen2");
    let adapter = blocks_run_in(&lm, dir.path());
    let (plain_worst, conditioned_worst) = reference_parity(&lm, &adapter, 5);
    assert!(
        plain_worst < 1.5,
        "qwen2 itself strays {plain_worst} from the reference"
    );
    assert!(
        conditioned_worst <= 2.0 * plain_worst.max(0.25),
        "with blocks qwen2 strays {conditioned_worst} (frozen LM {plain_worst})"
    );
}

#[test]
#[ignore = "make test-all: needs the gemma3 GGUF from scripts/fetch-lms.sh"]
fn gemma3_runs_the_blocks() {
    let dir = common::TempDir::new("xattn-gemma3");
    blocks_run_in(&extra_lm("gemma-3-270m-q4_k_m.gguf"), dir.path());
}

fn load_error(path: &Path) -> String {
    match Adapter::load(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_adapters_are_refused_with_a_clear_error() {
    let dir = common::TempDir::new("xattn-bad");
    let model = smollm2();

    let missing = load_error(&dir.path().join("nope.gguf"));
    assert!(missing.contains("does not exist"), "{missing}");

    let good = std::fs::read(model_file("xattn-smollm2-random.gguf")).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let e = load_error(&truncated);
    assert!(
        e.contains("truncated.gguf") && e.contains("not a readable GGUF"),
        "{e}"
    );

    let e = load_error(&model_file("smollm2-135m-instruct-q4_1.gguf"));
    assert!(
        e.contains("\"llama\"") && e.contains("not a vigil adapter"),
        "{e}"
    );

    let other = write_adapter(
        dir.path(),
        "other-lm.gguf",
        &[
            "--lie",
            "vigil.lm.architecture=qwen2",
            "--lie",
            "vigil.lm.tokenizer_fingerprint=0123456789abcdef",
        ],
    );
    let adapter = Arc::new(Adapter::load(&other).unwrap());
    let e = match Session::new(&model, Some(adapter), &options()) {
        Ok(_) => panic!("an adapter for another LM was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("architecture: adapter qwen2, LM llama")
            && e.contains("tokenizer fingerprint: adapter 0123456789abcdef, LM "),
        "{e}"
    );

    let out_of_range = write_adapter(
        dir.path(),
        "range.gguf",
        &["--layers", "6,30", "--unchecked"],
    );
    let e = load_error(&out_of_range);
    assert!(
        e.contains("layer 30 is out of range") && e.contains("1..29"),
        "{e}"
    );

    let incomplete = write_adapter(
        dir.path(),
        "drop.gguf",
        &["--drop", "xattn.12.ffn_up.weight"],
    );
    let e = load_error(&incomplete);
    assert!(e.contains("xattn.12.ffn_up.weight is missing"), "{e}");

    // Visual tokens of the wrong width are refused, not multiplied.
    let session = Session::new(&model, Some(random_adapter()), &options()).unwrap();
    let narrow = vec![0.5f32; 64 * 100];
    let e = session
        .media(Visual {
            data: &narrow,
            n_tokens: 64,
            dim: 100,
        })
        .err()
        .expect("narrow visual tokens accepted")
        .to_string();
    assert!(e.contains("[n x 384]"), "{e}");
    // Media without an adapter is an error, not a silent plain prompt.
    let mut plain = Session::new(&model, None, &options()).unwrap();
    let media = session.media(visual(&visual_tokens(1))).unwrap();
    assert!(matches!(
        plain.feed(&Prompt::new().media(&media)),
        Err(LmError::NoAdapter)
    ));
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error() {
    let model = smollm2();
    let small = ContextOptions {
        n_ctx: 256,
        n_batch: 64,
        threads: 1,
    };
    let mut session = Session::new(&model, None, &small).unwrap();
    let long = "one two three four ".repeat(200);
    let e = match session.feed(&Prompt::new().text(long)) {
        Ok(_) => panic!("an 800-token prompt fitted a 256-token context"),
        Err(e) => e,
    };
    assert!(matches!(e, LmError::ContextFull { n_ctx: 256, .. }), "{e}");
    assert!(e.to_string().contains("help: shorten the prompt"), "{e}");
    // Nothing was half-decoded: the session still works.
    assert!(session.tokens().is_empty());
    session.feed(&Prompt::new().text("Hello")).unwrap();
    assert_eq!(session.tokens().len(), 1);
}
