"""The Perceiver Resampler (Flamingo; OpenFlamingo's layout) → ONNX.

Input: the cached encoder features of T frames, [T, tokens, feature_dim].
They are projected to the resampler width (Flamingo keeps the encoder width;
a projection lets a small resampler sit on a wide encoder), given a learned
embedding per frame position, and flattened to T·tokens media tokens.
Optionally (weights with `diff_mix.weight`, the demo model's
`--frame-diffs`) each projected token first gets `diff_mix` times its change
since the previous frame at the same grid place, so that what moved,
appeared or left is in the tokens themselves; a still (T = 1) is unchanged
by it. A set
of learned latents (optionally, weights with `place_latents.norm.*`, the
demo model's `--place-latents`: latent i < tokens first gets grid place i's
projected feature, averaged over the frames and layer-normed) then goes
through `depth` layers of

    latents += Attn(q = LN(latents), kv = concat(LN(media), LN(latents)))
    latents += FFW(LN(latents))          (Linear, GELU, Linear; no biases)

and a final LayerNorm. Output: [n_latents, width] visual tokens.
Optionally (config `where_width`, weights under `where.`, the demo model's
`--where`) a second resampler of the same form reads the same features and
its tokens are concatenated channel-wise: [n_latents, width + where_width].

The frame count T is a symbolic input dimension: the runtime fixes it per
plan. Weights are random here (fixed seed); the demo-model issue trains them.
"""

import numpy as np

from .graph import Graph


def random_weights(feature_dim, width=384, depth=2, heads=6, head_dim=64, n_latents=64, max_frames=16, ff_mult=4, seed=0):
    rng = np.random.default_rng(seed)

    def lin(out, inp, std=None):
        std = std if std is not None else inp**-0.5
        return (rng.standard_normal((out, inp)) * std).astype(np.float32)

    inner = heads * head_dim
    w = {
        "config": dict(feature_dim=feature_dim, width=width, depth=depth, heads=heads, head_dim=head_dim,
                       n_latents=n_latents, max_frames=max_frames, ff_mult=ff_mult),
        "proj_in.weight": lin(width, feature_dim),
        "proj_in.bias": np.zeros(width, np.float32),
        "latents": rng.standard_normal((n_latents, width)).astype(np.float32),
        "frame_embs": (rng.standard_normal((max_frames, 1, width)) * 0.5).astype(np.float32),
        "norm.weight": np.ones(width, np.float32),
        "norm.bias": np.zeros(width, np.float32),
    }
    for i in range(depth):
        p = f"layers.{i}."
        for n in ("norm_media", "norm_latents", "ff_norm"):
            w[p + n + ".weight"] = np.ones(width, np.float32)
            w[p + n + ".bias"] = np.zeros(width, np.float32)
        w[p + "to_q.weight"] = lin(inner, width)
        w[p + "to_k.weight"] = lin(inner, width)
        w[p + "to_v.weight"] = lin(inner, width)
        w[p + "to_out.weight"] = lin(width, inner)
        w[p + "ff1.weight"] = lin(width * ff_mult, width)
        w[p + "ff2.weight"] = lin(width, width * ff_mult)
    return w


def build(w, tokens_per_frame, half_weights=False):
    """The ONNX graph; `half_weights`: its matrices stored as float16
    (Graph.half_weights)."""
    c = w["config"]
    g = Graph("perceiver_resampler")
    g.half_weights = half_weights
    feats = g.input("features", ["T", tokens_per_frame, c["feature_dim"]])
    out = _read(g, feats, w, "", tokens_per_frame)
    if c.get("where_width"):
        # A second resampler on the same features (the demo model's
        # `--where`), its tokens beside the first's channel-wise: token i
        # is [first's latent i, second's latent i]. Still n_latents tokens;
        # a block reads either half by its key and value maps.
        where = {k[len("where."):]: v for k, v in w.items() if k.startswith("where.")}
        where["config"] = dict(c, width=c["where_width"])
        out = g.op("Concat", [out, _read(g, feats, where, "where_", tokens_per_frame)], "both_readers", axis=1)
    g.output(out, "visual_tokens", [c["n_latents"], visual_width(c)])
    return g.model("Perceiver Resampler: [T, tokens, feature_dim] → [n_latents, width]")


def _read(g, feats, w, prefix, tokens_per_frame):
    """One resampler's graph on `feats` → its [n_latents, width] tokens;
    `prefix` keeps its named constants apart from another's."""
    c = w["config"]
    width, heads, head_dim = c["width"], c["heads"], c["head_dim"]

    def const(name, array):
        return g.const(prefix + name, array)

    x = g.linear(feats, w["proj_in.weight"], w["proj_in.bias"], "proj_in")
    t = g.op("Slice", [g.op("Shape", [feats]), const("i0", np.array([0], np.int64)), const("i1", np.array([1], np.int64))], "t")
    if "diff_mix.weight" in w:
        # Optional: x += diff_mix @ (x - the same place one frame earlier);
        # the first frame's "earlier" is itself, so a still is unchanged.
        # The earlier frames are [x0, x0, x1, ...] cut to T rows, which
        # needs no empty tensor when T = 1.
        first = g.op("Slice", [x, const("d0", np.array([0], np.int64)), const("d1", np.array([1], np.int64))], "first_frame")
        shifted = g.op("Concat", [first, x], "shifted", axis=0)
        before = g.op("Slice", [shifted, const("d0b", np.array([0], np.int64)), t], "frame_before")
        change = g.op("Sub", [x, before], "change")
        x = g.op("Add", [x, g.linear(change, w["diff_mix.weight"], None, "diff_mix")], "with_change")
    latents = const("latents", w["latents"])
    if "place_latents.norm.weight" in w:
        # Place-anchored latents: latent i < tokens_per_frame starts as
        # itself plus place i's feature (mean over the frames, before the
        # frame embeddings), so that what each place holds reaches the
        # tokens whatever the attention reads.
        spare = c["n_latents"] - tokens_per_frame
        if spare < 0:
            raise ValueError(f"place latents need n_latents ({c['n_latents']}) >= tokens per frame ({tokens_per_frame})")
        places = g.op("ReduceMean", [x], "place_mean", axes=[0], keepdims=0)
        places = g.layer_norm(places, w["place_latents.norm.weight"], w["place_latents.norm.bias"])
        padded = g.op("Concat", [places, const("place_pad", np.zeros((spare, width), np.float32))], "places_padded", axis=0)
        latents = g.op("Add", [latents, padded], "anchored_latents")
    # Frame position embeddings: the first T rows of the table.
    embs = g.op("Slice", [const("frame_embs", w["frame_embs"]), const("zero", np.array([0], np.int64)), t], "embs")
    x = g.op("Add", [x, embs], "timed")
    media = g.op("Reshape", [x, const("flat", np.array([-1, width], np.int64))], "media")

    split_heads = const("split_heads", np.array([-1, heads, head_dim], np.int64))
    merge_heads = const("merge_heads", np.array([-1, heads * head_dim], np.int64))
    for i in range(c["depth"]):
        p = f"layers.{i}."
        m = g.layer_norm(media, w[p + "norm_media.weight"], w[p + "norm_media.bias"])
        lat = g.layer_norm(latents, w[p + "norm_latents.weight"], w[p + "norm_latents.bias"])
        q = g.linear(lat, w[p + "to_q.weight"] * head_dim**-0.5, None, "q")
        kv_in = g.op("Concat", [m, lat], "kv_in", axis=0)
        k = g.linear(kv_in, w[p + "to_k.weight"], None, "k")
        v = g.linear(kv_in, w[p + "to_v.weight"], None, "v")

        def heads_first(y):
            return g.op("Transpose", [g.op("Reshape", [y, split_heads])], "heads", perm=[1, 0, 2])

        qh, kh, vh = heads_first(q), heads_first(k), heads_first(v)
        kt = g.op("Transpose", [kh], "kt", perm=[0, 2, 1])
        sim = g.op("MatMul", [qh, kt], "sim")
        attn = g.op("Softmax", [sim], "attn", axis=-1)
        out = g.op("MatMul", [attn, vh], "attn_out")
        out = g.op("Reshape", [g.op("Transpose", [out], perm=[1, 0, 2]), merge_heads], "merged")
        out = g.linear(out, w[p + "to_out.weight"], None, "to_out")
        latents = g.op("Add", [latents, out], "lat_attn")

        h = g.layer_norm(latents, w[p + "ff_norm.weight"], w[p + "ff_norm.bias"])
        h = g.linear(h, w[p + "ff1.weight"], None, "ff1")
        h = g.gelu(h)
        h = g.linear(h, w[p + "ff2.weight"], None, "ff2")
        latents = g.op("Add", [latents, h], "lat_ff")
    return g.layer_norm(latents, w["norm.weight"], w["norm.bias"])


def visual_width(c):
    """The tokens' width: the resampler's, plus the second's (build)."""
    return c["width"] + c.get("where_width", 0)


def metadata(w, tokens_per_frame, trained=False):
    c = w["config"]
    return {
        "kind": "resampler",
        "name": "perceiver-resampler",
        "input": {"name": "features", "shape": ["T", tokens_per_frame, c["feature_dim"]]},
        "output": {"name": "visual_tokens", "shape": [c["n_latents"], visual_width(c)]},
        "feature_dim": c["feature_dim"],
        "tokens_per_frame": tokens_per_frame,
        "n_latents": c["n_latents"],
        "d_visual": visual_width(c),
        "max_frames": c["max_frames"],
        "config": c,
        "weights": "trained" if trained else "random (seed 0)",
    }
