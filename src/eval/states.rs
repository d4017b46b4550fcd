//! `vigil lm-states`: the hidden states the runtime's LM (the quantized
//! GGUF on llama.cpp, no adapter) computes at one layer's output, for the
//! model kit. The demo model's blocks train on these instead of the f32
//! states of the dequantized weights: the quantization moves the state
//! entering the first block by ~3 % of its norm (up to 6 %), in directions that
//! isotropic training noise did not cover (models/demo/HISTORY.md).

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use crate::lm::{Context, ContextOptions, HookError, Model, ResidualHook, Token};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    /// Token id sequences, each decoded from an empty context (BOS
    /// included where the caller wants it: nothing is prepended).
    sequences: Vec<Vec<Token>>,
}

#[derive(Serialize)]
struct Reply {
    n_embd: usize,
    /// Rows written: one per token of every sequence, in order.
    rows: usize,
}

/// Copies every row of one layer's output, changing nothing.
struct Recorder {
    layer: usize,
    rows: Rc<RefCell<Vec<f32>>>,
}

impl ResidualHook for Recorder {
    fn layers(&self) -> Vec<usize> {
        vec![self.layer]
    }

    fn edit(&mut self, _: usize, rows: &mut [f32], _: usize) -> Result<(), HookError> {
        self.rows.borrow_mut().extend_from_slice(rows);
        Ok(())
    }
}

/// Reads a JSON request, writes the states of layer `layer`'s output
/// (`l_out-<layer>`, the input of layer `layer + 1`) to `out` as
/// little-endian f32, `[rows, n_embd]`; returns the JSON reply.
pub fn lm_states(
    lm: &Path,
    layer: usize,
    threads: u32,
    request: &str,
    out: &Path,
) -> Result<String, String> {
    let request: Request = serde_json::from_str(request)
        .map_err(|e| format!("request: {e} (expected {{\"sequences\": [[token ids], ...]}})"))?;
    let model = Model::load(lm).map_err(|e| e.to_string())?;
    let (n_layer, n_vocab, n_embd) = (model.n_layer(), model.n_vocab(), model.n_embd());
    // llama.cpp computes the last layer for the output rows only.
    if layer + 1 >= n_layer {
        return Err(format!(
            "--layer {layer}: the states of every token exist only below the last layer; \
             {} has {n_layer} layers, so use 0..={}",
            lm.display(),
            n_layer.saturating_sub(2)
        ));
    }
    for (i, sequence) in request.sequences.iter().enumerate() {
        if sequence.is_empty() {
            return Err(format!("sequence {i} is empty"));
        }
        if let Some((j, t)) = sequence
            .iter()
            .enumerate()
            .find(|&(_, &t)| t.0 < 0 || t.index() >= n_vocab)
        {
            return Err(format!(
                "sequence {i}, token {j}: id {t} is outside the vocabulary (0..{n_vocab})"
            ));
        }
    }
    let longest = request.sequences.iter().map(Vec::len).max().unwrap_or(1);
    // One micro-batch per sequence: the hook sees all its rows at once.
    let size = longest.next_multiple_of(64) as u32;
    let options = ContextOptions {
        n_ctx: size,
        n_batch: size,
        threads: threads.max(1) as i32,
    };
    let rows = Rc::new(RefCell::new(Vec::new()));
    let hook = Box::new(Recorder {
        layer,
        rows: Rc::clone(&rows),
    });
    let mut ctx = Context::new(&model, &options, Some(hook)).map_err(|e| e.to_string())?;
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let mut written = 0;
    for (i, sequence) in request.sequences.iter().enumerate() {
        ctx.clear();
        rows.borrow_mut().clear();
        ctx.decode(sequence)
            .map_err(|e| format!("sequence {i}: {e}"))?;
        let values = rows.borrow();
        if values.len() != sequence.len() * n_embd {
            return Err(format!(
                "sequence {i}: l_out-{layer} gave {} values for {} tokens of {n_embd}: llama.cpp's graph changed",
                values.len(),
                sequence.len()
            ));
        }
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        writer
            .write_all(&bytes)
            .map_err(|e| format!("{}: {e}", out.display()))?;
        written += sequence.len();
    }
    writer
        .flush()
        .map_err(|e| format!("{}: {e}", out.display()))?;
    serde_json::to_string(&Reply {
        n_embd,
        rows: written,
    })
    .map_err(|e| e.to_string())
}
