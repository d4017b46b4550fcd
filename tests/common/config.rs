//! The `[model]` blocks of test configs, so that every daemon test names
//! its models the same way (and a renamed file breaks one place).

use super::model_file;

/// The LM with a random adapter and the plain encoder: answers are
/// well-formed, not right. For tests of where answers and events go.
pub fn random_model() -> String {
    model_block(
        "efficientnet-lite0.onnx",
        "resampler.onnx",
        "xattn-smollm2-random.gguf",
    )
}

/// The trained demo model (models/demo/) on its wide encoder: answers
/// about the demo's ten objects are right.
pub fn demo_model() -> String {
    model_block(
        "efficientnet-lite0-wide.onnx",
        "demo/resampler-demo.onnx",
        "demo/xattn-smollm2-demo.gguf",
    )
}

fn model_block(encoder: &str, resampler: &str, adapter: &str) -> String {
    format!(
        "[model]\nlm = \"{}\"\nencoder = \"{}\"\nresampler = \"{}\"\nadapter = \"{}\"\nthreads = 2\n",
        model_file("smollm2-135m-instruct-q4_1.gguf").display(),
        model_file(encoder).display(),
        model_file(resampler).display(),
        model_file(adapter).display(),
    )
}
