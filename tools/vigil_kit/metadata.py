"""The JSON written next to each encoder: everything the runtime needs to
know about the model, so nothing about it is hard-coded in Rust."""


def encoder(name, size, spatial, feature_dim, preprocess, **extra):
    return {
        "kind": "encoder",
        "name": name,
        "input": {"name": "image", "size": [size, size], "layout": "NCHW"},
        "preprocess": preprocess,
        "output": {"name": "features", "layout": "NCHW", "feature_dim": feature_dim, "grid": [spatial, spatial]},
        "tokens_per_frame": spatial * spatial,
        "feature_dim": feature_dim,
        **extra,
    }
