//! `vigil tokenize`: the LM's own tokenizer for the model kit, so training
//! sees exactly the token ids the runtime feeds (llama.cpp's pre-tokenizers
//! differ between models in ways a Python re-implementation would miss).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::lm::{LmError, Model, Token};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    /// Prompt text chunks: tokenized as `Prompt::text` is (specials parsed).
    #[serde(default)]
    texts: Vec<String>,
    /// Markers and answer candidates: tokenized as plain text.
    #[serde(default)]
    plain: Vec<String>,
}

#[derive(Serialize)]
struct Reply {
    /// Prepended at the start of every sequence when the model wants it.
    bos: Option<Token>,
    texts: Vec<Vec<Token>>,
    plain: Vec<Vec<Token>>,
}

/// Reads a JSON request, returns the JSON reply.
pub fn tokenize(lm: &Path, request: &str) -> Result<String, String> {
    let request: Request = serde_json::from_str(request)
        .map_err(|e| format!("request: {e} (expected {{\"texts\": [...], \"plain\": [...]}})"))?;
    let model = Model::load(lm).map_err(|e| e.to_string())?;
    let run = |items: &[String], special: bool| -> Result<Vec<Vec<Token>>, LmError> {
        items
            .iter()
            .map(|t| model.tokenize_with(t, false, special))
            .collect()
    };
    let reply = Reply {
        bos: model.bos(),
        texts: run(&request.texts, true).map_err(|e| e.to_string())?,
        plain: run(&request.plain, false).map_err(|e| e.to_string())?,
    };
    serde_json::to_string(&reply).map_err(|e| e.to_string())
}
