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
    Hook(String),
    #[error(
        "the prompt needs {need} positions but the context holds {n_ctx}\nhelp: shorten the prompt or few-shot examples, or raise the context size"
    )]
    ContextFull { need: usize, n_ctx: usize },
    #[error("adapter {}: {message}", path.display())]
    Adapter { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}
