//! What runs inside llama.cpp's graph: edits of the residual stream after
//! chosen layers. A block "before layer N" edits the output of layer N-1,
//! the tensor llama.cpp names `l_out-(N-1)`.

use super::error::HookError;

/// Edits the residual stream. Called on the decoding thread, between graph
/// splits, with the rows (one per token of the batch that the layer still
/// computes) of a layer's output. A context and its hook stay on the thread
/// that made them, so a hook need not be `Send`.
pub trait ResidualHook {
    /// Layers whose output this hook edits.
    fn layers(&self) -> Vec<usize>;

    /// `rows` holds `rows.len() / n_embd` rows of `n_embd` values; edit them
    /// in place. An error cancels the decode.
    fn edit(&mut self, layer: usize, rows: &mut [f32], n_embd: usize) -> Result<(), HookError>;
}

/// Parses llama.cpp's name for a layer output, `l_out-12` → 12.
pub fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("l_out-")?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn layer_names_parse() {
        assert_eq!(super::layer_of("l_out-0"), Some(0));
        assert_eq!(super::layer_of("l_out-29"), Some(29));
        assert_eq!(super::layer_of("ffn_out-3"), None);
        assert_eq!(super::layer_of("l_out-x"), None);
    }
}
