"""vigil's model kit: exports the frozen encoders and the Perceiver Resampler
to ONNX with their metadata, and writes the golden fixtures the Rust tests
compare against. numpy + onnx only; onnxruntime for fixtures and benchmarks.
"""
