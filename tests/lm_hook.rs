//! The residual hook inside llama.cpp, on the real SmolLM2-135M GGUF that
//! setup fetches. If a llama.cpp update renames `l_out-N` or changes when
//! the scheduler hands tensors to the eval callback, these tests fail.

use std::path::{Path, PathBuf};

use vigil::lm::{Context, ContextOptions, HookError, LmError, Model, ResidualHook, Token};

/// One thread per context: the tests run side by side on 2 cores, and
/// llama.cpp's spinning threads would otherwise fight each other.
fn options() -> ContextOptions {
    ContextOptions {
        threads: 1,
        ..ContextOptions::default()
    }
}

fn smollm2() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/smollm2-135m-instruct-q4_1.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh",
        path.display()
    );
    path
}

/// Adds a fixed direction to every row of one layer's output.
struct AddDirection {
    layer: usize,
    direction: Vec<f32>,
}

impl ResidualHook for AddDirection {
    fn layers(&self) -> Vec<usize> {
        vec![self.layer]
    }
    fn edit(&mut self, layer: usize, rows: &mut [f32], n_embd: usize) -> Result<(), HookError> {
        assert_eq!(layer, self.layer);
        for row in rows.chunks_exact_mut(n_embd) {
            for (v, d) in row.iter_mut().zip(&self.direction) {
                *v += d;
            }
        }
        Ok(())
    }
}

/// Watches every layer without changing anything.
struct Observe(usize);

impl ResidualHook for Observe {
    fn layers(&self) -> Vec<usize> {
        (0..self.0).collect()
    }
    fn edit(&mut self, _: usize, _: &mut [f32], _: usize) -> Result<(), HookError> {
        Ok(())
    }
}

/// Greedy decoding: the logits after the prompt and after each new token.
fn run(ctx: &mut Context, prompt: &[Token], steps: usize) -> Vec<Vec<f32>> {
    let mut all = Vec::new();
    ctx.decode(prompt).unwrap();
    for _ in 0..steps {
        let logits = ctx.last_logits().to_vec();
        let next = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| Token(i as i32))
            .unwrap();
        all.push(logits);
        ctx.decode(&[next]).unwrap();
    }
    all.push(ctx.last_logits().to_vec());
    all
}

fn bits(logits: &[Vec<f32>]) -> Vec<Vec<u32>> {
    logits
        .iter()
        .map(|l| l.iter().map(|v| v.to_bits()).collect())
        .collect()
}

/// The hook adding a direction to `l_out-layer` must give bit-identical
/// logits to llama.cpp's own control vector on that layer.
fn hook_equals_control_vector(path: &Path, layer: usize) {
    let model = Model::load(path).unwrap();
    let prompt = model
        .tokenize("Is anyone on the path? Answer yes or no.", true)
        .unwrap();
    let direction: Vec<f32> = (0..model.n_embd())
        .map(|i| 0.05 * (i as f32 * 0.37).sin())
        .collect();
    let options = options();

    let mut plain = Context::new(&model, &options, None).unwrap();
    let plain_logits = run(&mut plain, &prompt, 8);

    let mut cvec = Context::new(&model, &options, None).unwrap();
    cvec.set_control_vector(layer, &direction).unwrap();
    let cvec_logits = run(&mut cvec, &prompt, 8);

    let hook = AddDirection { layer, direction };
    let mut hooked = Context::new(&model, &options, Some(Box::new(hook))).unwrap();
    let hooked_logits = run(&mut hooked, &prompt, 8);

    assert_ne!(
        bits(&plain_logits),
        bits(&cvec_logits),
        "the direction must change the logits"
    );
    assert_eq!(
        bits(&hooked_logits),
        bits(&cvec_logits),
        "{}: hook and control vector differ: llama.cpp's graph or scheduler changed",
        path.display()
    );
    // One edit per decode call: the prompt, then each of the 8 new tokens.
    assert_eq!(hooked.hook_edits()[layer], 9);
}

#[test]
fn editing_l_out_through_the_callback_equals_llama_cpps_control_vector() {
    let model = Model::load(&smollm2()).unwrap();
    assert_eq!(
        (model.n_layer(), model.n_embd(), model.n_vocab()),
        (30, 576, 49152)
    );
    hook_equals_control_vector(&smollm2(), 6);
}

fn extra_lm(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-lms.sh (make test-all does)",
        path.display()
    );
    path
}

#[test]
#[ignore = "make test-all: needs the qwen2 GGUF from scripts/fetch-lms.sh"]
fn qwen2_hook_equals_control_vector() {
    hook_equals_control_vector(&extra_lm("qwen2.5-coder-0.5b-instruct.gguf"), 12);
}

#[test]
#[ignore = "make test-all: needs the gemma3 GGUF from scripts/fetch-lms.sh"]
fn gemma3_hook_equals_control_vector() {
    hook_equals_control_vector(&extra_lm("gemma-3-270m-q4_k_m.gguf"), 9);
}

#[test]
fn the_callback_sees_every_layer_output_and_an_observer_changes_nothing() {
    let model = Model::load(&smollm2()).unwrap();
    let prompt = model
        .tokenize("How many cyclists are there?", true)
        .unwrap();
    let options = options();
    let mut plain = Context::new(&model, &options, None).unwrap();
    let plain_logits = run(&mut plain, &prompt, 4);
    let mut observed = Context::new(&model, &options, Some(Box::new(Observe(30)))).unwrap();
    let observed_logits = run(&mut observed, &prompt, 4);
    assert_eq!(bits(&plain_logits), bits(&observed_logits));
    assert_eq!(
        observed.hook_edits(),
        vec![5; 30],
        "every l_out-N, once per decode"
    );
}

struct Failing;

impl ResidualHook for Failing {
    fn layers(&self) -> Vec<usize> {
        vec![3]
    }
    fn edit(&mut self, _: usize, _: &mut [f32], _: usize) -> Result<(), HookError> {
        Err(HookError::NoBlock(7))
    }
}

#[test]
fn bad_inputs_are_errors_not_aborts() {
    let model = Model::load(&smollm2()).unwrap();
    // A failing hook cancels the decode and says why.
    let mut ctx = Context::new(&model, &options(), Some(Box::new(Failing))).unwrap();
    let tokens = model.tokenize("hello", true).unwrap();
    match ctx.decode(&tokens) {
        Err(e @ LmError::Hook(HookError::NoBlock(7))) => {
            assert_eq!(e.to_string(), "the residual hook failed: no block 7");
        }
        other => panic!("{other:?}"),
    }
    // A hook on a layer the model does not have.
    let err = Context::new(&model, &options(), Some(Box::new(Observe(31))))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("layer 30 is out of range") && err.contains("30 layers"),
        "{err}"
    );

    // Missing and truncated GGUF files.
    let dir = std::env::temp_dir().join(format!("vigil-lm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    assert!(matches!(
        Model::load(&dir.join("none.gguf")),
        Err(LmError::Missing(_))
    ));
    let truncated = dir.join("truncated.gguf");
    let head = std::fs::read(smollm2()).unwrap()[..1 << 20].to_vec();
    std::fs::write(&truncated, head).unwrap();
    let err = Model::load(&truncated).err().unwrap().to_string();
    assert!(
        err.contains("could not load") && err.contains("truncated.gguf"),
        "{err}"
    );
    std::fs::write(&truncated, b"not a model").unwrap();
    assert!(matches!(Model::load(&truncated), Err(LmError::Load(_))));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `vigil lm-states`, which the model kit trains the demo blocks on: one
/// row per token, a prefix's rows are the longer sequence's first rows
/// (causal: what the kit's cache relies on), and bad requests say what is
/// wrong.
#[test]
fn lm_states_are_per_token_causal_and_check_their_input() {
    let dir = std::env::temp_dir().join(format!("vigil-states-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("states.f32");
    let model = Model::load(&smollm2()).unwrap();
    let long = model
        .tokenize("Question: Is there a cat? Answer: yes", true)
        .unwrap();
    let short = &long[..5];
    let request = serde_json::json!({"sequences": [long, short]}).to_string();
    let reply = vigil::eval::lm_states(&smollm2(), 22, 1, &request, &out).unwrap();
    let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["n_embd"], 576);
    assert_eq!(reply["rows"], (long.len() + 5) as u64);
    let values: Vec<f32> = std::fs::read(&out)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(values.len(), (long.len() + 5) * 576);
    let row = |i: usize| &values[i * 576..(i + 1) * 576];
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    for i in 0..5 {
        let (a, b) = (row(i), row(long.len() + i));
        let diff: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        assert!(
            norm(&diff) <= 1e-4 * norm(a),
            "row {i}: {} vs {}",
            norm(&diff),
            norm(a)
        );
    }
    // Different tokens, different states (not a constant or a copy).
    let (a, b) = (row(3), row(4));
    let diff: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    assert!(norm(&diff) > 0.1 * norm(a));

    let err = |layer: usize, request: &str| {
        vigil::eval::lm_states(&smollm2(), layer, 1, request, &out).unwrap_err()
    };
    let e = err(22, r#"{"sequences": [[1, 99999]]}"#);
    assert!(
        e.contains("sequence 0, token 1: id 99999 is outside the vocabulary"),
        "{e}"
    );
    let e = err(29, r#"{"sequences": [[1]]}"#);
    assert!(e.contains("--layer 29") && e.contains("0..=28"), "{e}");
    let e = err(22, r#"{"sequences": [[1], []]}"#);
    assert!(e.contains("sequence 1 is empty"), "{e}");
    let e = err(22, r#"{"tokens": [[1]]}"#);
    assert!(e.contains("unknown field `tokens`"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
