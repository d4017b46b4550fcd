//! The adapter file: Flamingo's gated cross-attention blocks for one LM,
//! kept apart from the untouched LM file. Format: docs/adapter-format.md.

use std::path::{Path, PathBuf};

use super::error::{GraphError, LmError};
use super::ffi::gguf::{GgufFile, GgufValue, Tensor};
use super::ffi::{Model, Token};

pub const ARCHITECTURE: &str = "vigil-xattn";
pub const VERSION: i64 = 1;

/// Per-block tensors and whether each is a matrix [in, out] or a vector.
const TENSORS: &[(&str, Shape)] = &[
    ("attn_norm.weight", Shape::Embd),
    ("attn_norm.bias", Shape::Embd),
    ("attn_q.weight", Shape::Matrix(Dim::Embd, Dim::Inner)),
    ("attn_k.weight", Shape::Matrix(Dim::Visual, Dim::Inner)),
    ("attn_v.weight", Shape::Matrix(Dim::Visual, Dim::Inner)),
    ("attn_output.weight", Shape::Matrix(Dim::Inner, Dim::Embd)),
    ("attn_gate", Shape::Scalar),
    ("ffn_norm.weight", Shape::Embd),
    ("ffn_norm.bias", Shape::Embd),
    ("ffn_up.weight", Shape::Matrix(Dim::Embd, Dim::Ff)),
    ("ffn_down.weight", Shape::Matrix(Dim::Ff, Dim::Embd)),
    ("ffn_gate", Shape::Scalar),
];

#[derive(Clone, Copy)]
enum Dim {
    Embd,
    Inner,
    Visual,
    Ff,
}

#[derive(Clone, Copy)]
enum Shape {
    Embd,
    Scalar,
    Matrix(Dim, Dim),
}

/// Sizes of the blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    /// LM layers that get a block before them (ascending).
    pub layers: Vec<usize>,
    pub heads: usize,
    pub head_dim: usize,
    pub ff_length: usize,
    pub visual_dim: usize,
    pub eps: f32,
    pub n_embd: usize,
    /// Text that marks a media chunk in a prompt, and the end of a chunk.
    pub media_marker: String,
    pub end_of_chunk: String,
    /// What the adapter was trained to answer about (empty when the file
    /// does not say).
    pub trained_on: TrainedOn,
}

/// What an adapter was trained on: the objects its training data showed
/// and the question families it asked (docs/adapter-format.md,
/// `vigil.trained.*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainedOn {
    pub objects: Vec<String>,
    pub families: Vec<String>,
}

impl AdapterConfig {
    pub fn inner(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// The LM an adapter was trained for.
#[derive(Debug, Clone, PartialEq)]
pub struct LmIdentity {
    pub architecture: String,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_vocab: usize,
    pub tokenizer_fingerprint: String,
}

impl LmIdentity {
    pub fn of(model: &Model) -> LmIdentity {
        LmIdentity {
            architecture: model.meta("general.architecture").unwrap_or_default(),
            n_embd: model.n_embd(),
            n_layer: model.n_layer(),
            n_vocab: model.n_vocab(),
            tokenizer_fingerprint: tokenizer_fingerprint(model),
        }
    }
}

/// FNV-1a (64 bit) over every token's text followed by a 0 byte, in id
/// order (tools/vigil_kit/gguf_lm.py computes the same).
pub fn tokenizer_fingerprint(model: &Model) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for token in 0..model.n_vocab() as i32 {
        for byte in model.token_bytes(Token(token)).into_iter().chain([0]) {
            h = (h ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Gate values of one block (raw, before tanh).
#[derive(Debug, Clone, Copy)]
pub struct Gates {
    pub attn: f32,
    pub ffn: f32,
}

pub struct Adapter {
    path: PathBuf,
    file: GgufFile,
    config: AdapterConfig,
    identity: LmIdentity,
    gates: Vec<Gates>,
}

impl Adapter {
    /// Reads and checks an adapter file (not yet against an LM: see
    /// [`Adapter::check_lm`]).
    pub fn load(path: &Path) -> Result<Adapter, LmError> {
        let fail = |message: String| LmError::Adapter {
            path: path.to_path_buf(),
            message,
        };
        if !path.is_file() {
            return Err(fail(
                "does not exist\nhelp: write one with `python -m vigil_kit random-adapter`, or fix [model] adapter".into(),
            ));
        }
        let mut file = GgufFile::open(path).ok_or_else(|| {
            fail("is not a readable GGUF file (truncated, or not GGUF at all)".into())
        })?;
        let meta = Meta {
            file: &file,
            fail: &fail,
        };
        let arch = meta.string("general.architecture")?;
        if arch != ARCHITECTURE {
            return Err(fail(format!(
                "general.architecture is {arch:?}, not {ARCHITECTURE:?}: this is not a vigil adapter (an LM file given as adapter?)"
            )));
        }
        let version = meta.int("vigil.xattn.version")?;
        if version != VERSION {
            return Err(fail(format!(
                "format version {version}; this vigil reads version {VERSION}"
            )));
        }
        let identity = LmIdentity {
            architecture: meta.string("vigil.lm.architecture")?,
            n_embd: meta.size("vigil.lm.embedding_length")?,
            n_layer: meta.size("vigil.lm.block_count")?,
            n_vocab: meta.size("vigil.lm.vocab_size")?,
            tokenizer_fingerprint: meta.string("vigil.lm.tokenizer_fingerprint")?,
        };
        let mut layers = Vec::new();
        for layer in meta.int_array("vigil.xattn.layers")? {
            if layer < 1 || layer as usize >= identity.n_layer {
                return Err(fail(format!(
                    "block before LM layer {layer} is out of range: blocks go before layers 1..{} of a {}-layer LM",
                    identity.n_layer.saturating_sub(1),
                    identity.n_layer
                )));
            }
            layers.push(layer as usize);
        }
        if layers.is_empty() || !layers.windows(2).all(|w| w[0] < w[1]) {
            return Err(fail(format!(
                "vigil.xattn.layers must be ascending, distinct and not empty (found {layers:?})"
            )));
        }
        let config = AdapterConfig {
            layers,
            heads: meta.size("vigil.xattn.head_count")?,
            head_dim: meta.size("vigil.xattn.head_dim")?,
            ff_length: meta.size("vigil.xattn.feed_forward_length")?,
            visual_dim: meta.size("vigil.xattn.visual_dim")?,
            eps: meta.float("vigil.xattn.layer_norm_epsilon")? as f32,
            n_embd: identity.n_embd,
            media_marker: meta.string("vigil.xattn.media_marker")?,
            end_of_chunk: meta.string("vigil.xattn.end_of_chunk")?,
            trained_on: TrainedOn {
                objects: meta.optional_list("vigil.trained.objects")?,
                families: meta.optional_list("vigil.trained.families")?,
            },
        };
        if config.media_marker.is_empty() {
            return Err(fail("vigil.xattn.media_marker is empty".into()));
        }
        for name in file.tensor_names() {
            let layer = name
                .strip_prefix("xattn.")
                .and_then(|rest| rest.split('.').next())
                .and_then(|l| l.parse::<usize>().ok());
            if !layer.is_some_and(|l| config.layers.contains(&l)) {
                return Err(fail(format!(
                    "tensor {name} belongs to no block listed in vigil.xattn.layers {:?}",
                    config.layers
                )));
            }
        }
        let mut gates = Vec::new();
        for &layer in &config.layers {
            for (name, shape) in TENSORS {
                let full = format!("xattn.{layer}.{name}");
                let tensor = file.tensor(&full).ok_or_else(|| {
                    fail(format!(
                        "tensor {full} is missing (the block before layer {layer} is incomplete)"
                    ))
                })?;
                check_shape(&config, &full, tensor, *shape).map_err(fail)?;
            }
            let gate = |name: &str| -> Result<f32, LmError> {
                let full = format!("xattn.{layer}.{name}");
                let value = file.tensor(&full).and_then(|t| t.f32_values());
                match value.as_deref() {
                    Some([g]) if g.is_finite() => Ok(*g),
                    _ => Err(fail(format!("{full} must be one finite f32 value"))),
                }
            };
            gates.push(Gates {
                attn: gate("attn_gate")?,
                ffn: gate("ffn_gate")?,
            });
        }
        // Quantized matrices (the demo adapter's Q8_0) run in f32 (see
        // GgufFile::widen_quantized): the blocks' answers then match the
        // Python reference's, which reads the same file dequantized.
        let (widened, bytes) = file.widen_quantized().map_err(fail)?;
        if widened > 0 {
            tracing::debug!(
                adapter = %path.display(),
                tensors = widened,
                mib = bytes as f64 / (1 << 20) as f64,
                "quantized adapter tensors widened to f32"
            );
        }
        Ok(Adapter {
            path: path.to_path_buf(),
            file,
            config,
            identity,
            gates,
        })
    }

    /// Refuses an LM other than the one the adapter was trained for,
    /// naming both sides.
    pub fn check_lm(&self, model: &Model) -> Result<(), LmError> {
        let lm = LmIdentity::of(model);
        let a = &self.identity;
        let mut differences = Vec::new();
        let mut differ = |what: &str, adapter: String, model: String| {
            if adapter != model {
                differences.push(format!("{what}: adapter {adapter}, LM {model}"));
            }
        };
        differ(
            "architecture",
            a.architecture.clone(),
            lm.architecture.clone(),
        );
        differ("n_embd", a.n_embd.to_string(), lm.n_embd.to_string());
        differ("n_layer", a.n_layer.to_string(), lm.n_layer.to_string());
        differ("vocab size", a.n_vocab.to_string(), lm.n_vocab.to_string());
        differ(
            "tokenizer fingerprint",
            a.tokenizer_fingerprint.clone(),
            lm.tokenizer_fingerprint.clone(),
        );
        if differences.is_empty() {
            return Ok(());
        }
        Err(LmError::Adapter {
            path: self.path.clone(),
            message: format!(
                "was trained for another LM ({})\nhelp: use the adapter made for this LM, or the LM it was made for",
                differences.join("; ")
            ),
        })
    }

    pub fn config(&self) -> &AdapterConfig {
        &self.config
    }

    pub fn identity(&self) -> &LmIdentity {
        &self.identity
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn gates(&self, block: usize) -> Gates {
        self.gates[block]
    }

    /// A tensor of the block before `layer`; present (checked at load).
    pub(super) fn tensor(&self, layer: usize, name: &str) -> Result<Tensor<'_>, GraphError> {
        self.file
            .tensor(&format!("xattn.{layer}.{name}"))
            .ok_or_else(|| GraphError::MissingWeight {
                layer,
                name: name.to_string(),
            })
    }
}

fn check_shape(
    config: &AdapterConfig,
    name: &str,
    tensor: Tensor<'_>,
    shape: Shape,
) -> Result<(), String> {
    let size = |d: Dim| match d {
        Dim::Embd => config.n_embd,
        Dim::Inner => config.inner(),
        Dim::Visual => config.visual_dim,
        Dim::Ff => config.ff_length,
    } as i64;
    let (expected, vector) = match shape {
        Shape::Embd => (vec![config.n_embd as i64], true),
        Shape::Scalar => (vec![1], true),
        Shape::Matrix(a, b) => (vec![size(a), size(b)], false),
    };
    if tensor.shape() != expected {
        return Err(format!(
            "{name} has shape {:?}, expected {expected:?} (from the adapter's dims)",
            tensor.shape()
        ));
    }
    if vector && tensor.f32_values().is_none() {
        return Err(format!("{name} is {}, expected f32", tensor.type_name()));
    }
    if !vector && !tensor.is_matmul_weight() {
        return Err(format!(
            "{name} has type {}, which ggml cannot multiply",
            tensor.type_name()
        ));
    }
    Ok(())
}

/// Typed metadata reads with errors that name the key.
struct Meta<'a, F: Fn(String) -> LmError> {
    file: &'a GgufFile,
    fail: &'a F,
}

impl<F: Fn(String) -> LmError> Meta<'_, F> {
    fn get(&self, key: &str) -> Result<GgufValue, LmError> {
        self.file
            .value(key)
            .ok_or_else(|| (self.fail)(format!("metadata key {key} is missing")))
    }

    fn wrong(&self, key: &str, want: &str, got: &GgufValue) -> LmError {
        (self.fail)(format!(
            "metadata {key} is a {}, expected {want}",
            got.kind()
        ))
    }

    fn string(&self, key: &str) -> Result<String, LmError> {
        match self.get(key)? {
            GgufValue::Str(s) => Ok(s),
            other => Err(self.wrong(key, "a string", &other)),
        }
    }

    fn int(&self, key: &str) -> Result<i64, LmError> {
        match self.get(key)? {
            GgufValue::Int(v) => Ok(v),
            other => Err(self.wrong(key, "an integer", &other)),
        }
    }

    fn size(&self, key: &str) -> Result<usize, LmError> {
        let v = self.int(key)?;
        if !(1..=1 << 20).contains(&v) {
            return Err((self.fail)(format!(
                "metadata {key} = {v} is not a sane size"
            )));
        }
        Ok(v as usize)
    }

    fn float(&self, key: &str) -> Result<f64, LmError> {
        match self.get(key)? {
            GgufValue::Float(v) => Ok(v),
            other => Err(self.wrong(key, "a float", &other)),
        }
    }

    /// A comma-separated list, empty when the key is absent.
    fn optional_list(&self, key: &str) -> Result<Vec<String>, LmError> {
        match self.file.value(key) {
            None => Ok(Vec::new()),
            Some(GgufValue::Str(s)) => Ok(s
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map(String::from)
                .collect()),
            Some(other) => Err(self.wrong(key, "a comma-separated string", &other)),
        }
    }

    fn int_array(&self, key: &str) -> Result<Vec<i64>, LmError> {
        match self.get(key)? {
            GgufValue::IntArray(v) => Ok(v),
            other => Err(self.wrong(key, "an integer array", &other)),
        }
    }
}
