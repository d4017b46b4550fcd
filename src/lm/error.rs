//! Why the language model could not be loaded or run.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("language model {} does not exist\nhelp: run scripts/setup.sh, or fix [model] lm", .0.display())]
    Missing(PathBuf),
    #[error("llama.cpp could not load {} (not a GGUF model, truncated, or an unsupported architecture)", .0.display())]
    Load(PathBuf),
    #[error("llama.cpp could not create a context: {0}")]
    Context(String),
    #[error("cannot tokenize: {0}")]
    Tokenize(String),
    #[error("llama_decode failed with code {0}")]
    Decode(i32),
    #[error("the residual hook failed: {0}")]
    Hook(#[from] HookError),
    #[error(
        "the prompt needs {need} positions but the context holds {n_ctx}\nhelp: shorten the prompt or few-shot examples, or raise the context size"
    )]
    ContextFull { need: usize, n_ctx: usize },
    #[error("adapter {}: {message}", path.display())]
    Adapter { path: PathBuf, message: String },
    #[error("{} contains a NUL byte", .0.display())]
    NulInPath(PathBuf),
    #[error(
        "visual tokens [{n_tokens} x {dim}] ({values} values) do not fit the adapter, which takes [n x {adapter_dim}]"
    )]
    VisualShape {
        n_tokens: usize,
        dim: usize,
        values: usize,
        adapter_dim: usize,
    },
    #[error("visual tokens contain NaN or infinity")]
    VisualNotFinite,
    #[error("media in a prompt needs an adapter (none is loaded)")]
    NoAdapter,
    #[error("hook layer {layer} is out of range: the model has {n_layer} layers (0..{})", .n_layer - 1)]
    HookLayer { layer: usize, n_layer: usize },
    #[error("{values} values are not whole rows of n_embd {n_embd}")]
    RaggedEmbeddings { values: usize, n_embd: usize },
    #[error("logit rows {rows:?} for {n} positions")]
    LogitRows { rows: Vec<usize>, n: usize },
    #[error("no logits for row {0}")]
    NoLogits(usize),
    #[error("no logits yet: feed a prompt (after any restore) first")]
    NoLogitsYet,
    #[error("no candidates to score")]
    NoCandidates,
    #[error("candidate {0:?} has no tokens")]
    EmptyCandidate(String),
    #[error("llama_state_seq_get_data wrote nothing")]
    StateNotSaved,
    #[error("llama.cpp rejected the saved sequence state (another model or context size?)")]
    StateRejected,
    #[error(
        "control vector for layer {layer} with {values} values: need layer 1..{} and {n_embd} values",
        .n_layer - 1
    )]
    ControlVector {
        layer: usize,
        values: usize,
        n_layer: usize,
        n_embd: usize,
    },
    #[error("llama_set_adapter_cvec returned {0}")]
    ControlVectorRejected(i32),
    #[error("cannot write the report: {0}")]
    Report(std::io::Error),
}

/// Why a residual hook could not edit a layer's rows (the decode is
/// cancelled).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("no block {0}")]
    NoBlock(usize),
    #[error("media K/V has no block {0}")]
    NoMediaBlock(usize),
    #[error("{values} values are not whole rows of {n_embd}")]
    RaggedRows { values: usize, n_embd: usize },
    #[error(
        "{name} is not a contiguous f32 [n_embd={n_embd}, rows] tensor (type {type_}, ne {ne:?}, nb {nb:?}): llama.cpp's graph changed"
    )]
    Layout {
        name: String,
        n_embd: usize,
        type_: i64,
        ne: [i64; 4],
        nb: [usize; 4],
    },
    #[error("the residual hook panicked")]
    Panicked,
    #[error(transparent)]
    Graph(#[from] GraphError),
}

/// Why a ggml graph of the blocks could not be built or computed. ggml
/// aborts the process on a bad shape, so each op checks first.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("ggml_init failed")]
    Init,
    #[error("ggml could not create {0} (scratch memory too small)")]
    Scratch(&'static str),
    #[error("input of {values} values does not fill shape {ne:?}")]
    InputSize { values: usize, ne: Vec<i64> },
    #[error("unsupported {op} rank {rank}")]
    Rank { op: &'static str, rank: usize },
    #[error("cannot multiply {a:?} by {b:?}")]
    MulMat { a: [i64; 4], b: [i64; 4] },
    #[error("layer norm of width {n} with weight {w:?} and bias {b:?}")]
    LayerNorm { n: i64, w: [i64; 4], b: [i64; 4] },
    #[error("cannot add {x:?} and {y:?}")]
    Add { x: [i64; 4], y: [i64; 4] },
    #[error("cannot reshape {from:?} to {to:?}")]
    Reshape { from: [i64; 4], to: Vec<i64> },
    #[error("bad permutation {0:?}")]
    Permute([i32; 3]),
    #[error("result of {values} values (type {type_}) for {places} places")]
    ResultSize {
        values: usize,
        type_: i64,
        places: usize,
    },
    #[error("ggml_new_graph failed (scratch memory too small)")]
    NewGraph,
    #[error("ggml_graph_compute failed with status {0}")]
    Compute(i64),
    #[error("xattn.{layer}.{name} vanished")]
    MissingWeight { layer: usize, name: String },
}
