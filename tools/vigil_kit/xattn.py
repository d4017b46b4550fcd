"""Flamingo's tanh-gated cross-attention blocks: the adapter file and the
block math (the source of truth the Rust runtime is tested against).

The adapter is a GGUF file of its own (docs/adapter-format.md). A block
"before LM layer N" edits the residual stream y after layer N-1, for each
token that has a media chunk before it (tokens before any media are left
untouched):

    y += tanh(attn_gate) · Wo · Attn(q = Wq · LN1(y), k = Wk · m, v = Wv · m)
    y += tanh(ffn_gate)  · Wdown · GELU(Wup · LN2(y))

where m are the visual tokens ([n_visual, visual_dim]) of the latest media
before the token. Linear layers have no biases; LayerNorms have both; GELU is
the exact (erf) one.
"""

import math

import numpy as np

from . import gguf_lm

ARCH = "vigil-xattn"
VERSION = 1
MEDIA_MARKER = "<image>"
END_OF_CHUNK = "<|endofchunk|>"

K = "vigil.xattn."
LM = "vigil.lm."


def default_layers(n_layer, blocks):
    """`blocks` LM layers, evenly spaced, that get a block before them."""
    return [round((i + 1) * n_layer / (blocks + 1)) for i in range(blocks)]


def random_adapter(lm, layers, visual_dim=384, heads=4, head_dim=64, ff_length=None, gate=0.1, seed=0):
    """A random adapter for `lm` (a gguf_lm.LM): fixed seed, gates = `gate`
    (the raw value fed through tanh)."""
    rng = np.random.default_rng(seed)
    d = lm.n_embd
    inner = heads * head_dim
    ff_length = ff_length or 2 * d

    def lin(out, inp):
        return (rng.standard_normal((out, inp)) * inp**-0.5).astype(np.float16)

    blocks = {}
    for layer in layers:
        blocks[layer] = {
            "attn_norm.weight": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32),
            "attn_norm.bias": (0.1 * rng.standard_normal(d)).astype(np.float32),
            "attn_q.weight": lin(inner, d),
            "attn_k.weight": lin(inner, visual_dim),
            "attn_v.weight": lin(inner, visual_dim),
            "attn_output.weight": lin(d, inner),
            "attn_gate": np.array([gate], np.float32),
            "ffn_norm.weight": (1 + 0.1 * rng.standard_normal(d)).astype(np.float32),
            "ffn_norm.bias": (0.1 * rng.standard_normal(d)).astype(np.float32),
            "ffn_up.weight": lin(ff_length, d),
            "ffn_down.weight": lin(d, ff_length),
            "ffn_gate": np.array([gate], np.float32),
        }
    config = dict(layers=list(layers), heads=heads, head_dim=head_dim, ff_length=ff_length,
                  visual_dim=visual_dim, eps=1e-5)
    return Adapter(config, blocks, lm.identity())


class Adapter:
    def __init__(self, config, blocks, identity, trained=None):
        self.config = config
        self.blocks = blocks
        self.identity = identity
        # What the blocks were trained on: {"objects": [...], "families":
        # [...]}, written as vigil.trained.* (docs/adapter-format.md).
        self.trained = trained or {}

    def round_matrices(self, matrix_type):
        """Replaces every matrix by its values after a round trip through
        `matrix_type` (q8_0): written as f32, the file then holds exactly
        what the quantized file decodes to."""
        import gguf

        kind = {"q8_0": gguf.GGMLQuantizationType.Q8_0}[matrix_type]
        for tensors in self.blocks.values():
            for name, array in tensors.items():
                if array.ndim == 2:
                    q = gguf.quants.quantize(array.astype(np.float32), kind)
                    tensors[name] = gguf.quants.dequantize(q, kind).reshape(array.shape).astype(np.float32)

    def write(self, path, matrix_type="f16", drop=(), lie=None):
        """Writes the GGUF, matrices as `matrix_type` (f16, f32 or q8_0).
        `drop` (tensor names) and `lie` (metadata overrides) make
        deliberately broken files for the error tests."""
        import gguf

        c = self.config
        meta = {
            K + "version": VERSION,
            K + "layers": [int(x) for x in c["layers"]],
            K + "head_count": c["heads"],
            K + "head_dim": c["head_dim"],
            K + "feed_forward_length": c["ff_length"],
            K + "visual_dim": c["visual_dim"],
            K + "layer_norm_epsilon": float(c["eps"]),
            K + "media_marker": MEDIA_MARKER,
            K + "end_of_chunk": END_OF_CHUNK,
        }
        meta.update({LM + k: v for k, v in self.identity.items()})
        for what, names in self.trained.items():
            meta[f"vigil.trained.{what}"] = ",".join(names)
        for key, value in (lie or {}).items():
            old = meta.get(key)
            if isinstance(old, int) and not isinstance(old, bool):
                value = int(value)
            elif isinstance(old, float):
                value = float(value)
            elif isinstance(old, list):
                value = [int(x) for x in str(value).split(",")]
            meta[key] = value

        w = gguf.GGUFWriter(path, ARCH)
        for key, value in meta.items():
            if isinstance(value, str):
                w.add_string(key, value)
            elif isinstance(value, float):
                w.add_float32(key, value)
            elif isinstance(value, list):
                w.add_array(key, value)
            else:
                w.add_uint32(key, int(value))
        for layer, tensors in self.blocks.items():
            for name, array in tensors.items():
                full = f"xattn.{layer}.{name}"
                if full in drop:
                    continue
                if array.ndim == 2 and matrix_type == "q8_0":
                    q = gguf.quants.quantize(array.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
                    w.add_tensor(full, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
                elif array.ndim == 2:
                    dtype = {"f16": np.float16, "f32": np.float32}[matrix_type]
                    w.add_tensor(full, np.ascontiguousarray(array, dtype=dtype))
                else:
                    w.add_tensor(full, np.ascontiguousarray(array))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    @staticmethod
    def read(path):
        import gguf

        r = gguf.GGUFReader(path)
        f = {k: v.contents() for k, v in r.fields.items() if k.startswith(("vigil.", "general."))}
        config = dict(layers=list(f[K + "layers"]), heads=f[K + "head_count"], head_dim=f[K + "head_dim"],
                      ff_length=f[K + "feed_forward_length"], visual_dim=f[K + "visual_dim"],
                      eps=f[K + "layer_norm_epsilon"])
        identity = {k[len(LM):]: v for k, v in f.items() if k.startswith(LM)}
        blocks = {layer: {} for layer in config["layers"]}
        for t in r.tensors:
            _, layer, name = t.name.split(".", 2)
            blocks[int(layer)][name] = gguf_lm.dequantize(t)
        return Adapter(config, blocks, identity)

    def media_kv(self, layer, visual):
        """K and V of one media chunk for the block before `layer`:
        [heads, n_visual, head_dim] each."""
        b, c = self.blocks[layer], self.config
        h, hd = c["heads"], c["head_dim"]
        k = visual @ b["attn_k.weight"].astype(np.float32).T
        v = visual @ b["attn_v.weight"].astype(np.float32).T
        n = visual.shape[0]
        return k.reshape(n, h, hd).transpose(1, 0, 2), v.reshape(n, h, hd).transpose(1, 0, 2)

    def apply(self, layer, y, kv):
        """The block before `layer` on rows `y` [n, n_embd] that all attend to
        the media whose (K, V) is `kv`. Returns the new rows."""
        b, c = self.blocks[layer], self.config
        h, hd, eps = c["heads"], c["head_dim"], c["eps"]
        f32 = lambda name: b[name].astype(np.float32)  # noqa: E731
        k, v = kv
        x = layer_norm(y, f32("attn_norm.weight"), f32("attn_norm.bias"), eps)
        q = (x @ f32("attn_q.weight").T).reshape(len(y), h, hd).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        att = softmax(scores) @ v  # [h, n, hd]
        o = att.transpose(1, 0, 2).reshape(len(y), h * hd) @ f32("attn_output.weight").T
        y = y + math.tanh(float(b["attn_gate"][0])) * o
        x = layer_norm(y, f32("ffn_norm.weight"), f32("ffn_norm.bias"), eps)
        f = gelu(x @ f32("ffn_up.weight").T) @ f32("ffn_down.weight").T
        return y + math.tanh(float(b["ffn_gate"][0])) * f


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def gelu(x):
    from math import erf

    return 0.5 * x * (1 + np.vectorize(erf, otypes=[np.float64])(x / math.sqrt(2))).astype(x.dtype)
