"""A GGUF language model in numpy: the reference forward pass (float32 over
the dequantized weights) that the Rust runtime on llama.cpp is checked
against, with Flamingo's gated cross-attention blocks (xattn.py) run on the
residual stream between layers exactly where the runtime runs them.

Architectures: `llama` (SmolLM2) and `qwen2` (the same graph plus q/k/v
biases and NeoX rotary pairs).
"""

import numpy as np

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3


def dequantize(tensor):
    """A GGUF tensor as a float32 numpy array in torch layout ([out, in])."""
    import gguf

    return np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)


def tokenizer_fingerprint(tokens):
    """FNV-1a (64 bit) over every token's UTF-8 text followed by a 0 byte, in
    id order, as 16 hex digits. Not a security hash: it tells two vocabularies
    apart. The runtime computes the same from llama.cpp's vocabulary."""
    h = FNV_OFFSET
    for token in tokens:
        for byte in token.encode("utf-8") + b"\0":
            h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


class LM:
    def __init__(self, path):
        import gguf

        self.reader = r = gguf.GGUFReader(path)
        field = lambda key: r.fields[key].contents()  # noqa: E731
        self.path = path
        self.arch = arch = field("general.architecture")
        self.n_embd = field(f"{arch}.embedding_length")
        self.n_layer = field(f"{arch}.block_count")
        self.tokens = field("tokenizer.ggml.tokens")
        self.tensors = {t.name: t for t in r.tensors}
        self._cache = {}
        # Enough for the identity (any architecture); the rest only for the
        # architectures the forward pass implements.
        self.forward_supported = arch in ("llama", "qwen2")
        if not self.forward_supported:
            return
        self.n_head = field(f"{arch}.attention.head_count")
        self.n_head_kv = field(f"{arch}.attention.head_count_kv")
        self.eps = field(f"{arch}.attention.layer_norm_rms_epsilon")
        self.rope_base = field(f"{arch}.rope.freq_base") if f"{arch}.rope.freq_base" in r.fields else 10000.0
        self.head_dim = self.n_embd // self.n_head

    def identity(self):
        return {
            "architecture": self.arch,
            "embedding_length": self.n_embd,
            "block_count": self.n_layer,
            "vocab_size": len(self.tokens),
            "tokenizer_fingerprint": tokenizer_fingerprint(self.tokens),
        }

    def w(self, name):
        if name not in self._cache:
            self._cache[name] = dequantize(self.tensors[name])
        return self._cache[name]

    def has(self, name):
        return name in self.tensors

    def forward(self, tokens, media_of, adapter=None, media_kv=None):
        """Logits [len(tokens), vocab] for one sequence. `media_of[i]` is the
        media index token i attends to (-1: none); `media_kv[layer][m]` the
        K/V of media m for the block before `layer`."""
        if not self.forward_supported:
            raise SystemExit(f"{self.path}: architecture {self.arch!r} has no reference forward pass (llama, qwen2)")
        n = len(tokens)
        x = self.w("token_embd.weight")[np.asarray(tokens)]
        media_of = np.asarray(media_of)
        positions = np.arange(n)
        for layer in range(self.n_layer):
            if adapter is not None and layer in adapter.blocks:
                x = self._xattn(adapter, layer, x, media_of, media_kv[layer])
            x = self._layer(layer, x, positions)
        x = rms_norm(x, self.w("output_norm.weight"), self.eps)
        head = self.w("output.weight") if self.has("output.weight") else self.w("token_embd.weight")
        return x @ head.T

    @staticmethod
    def _xattn(adapter, layer, x, media_of, kvs):
        x = x.copy()
        for m in sorted(set(media_of.tolist()) - {-1}):
            rows = media_of == m
            x[rows] = adapter.apply(layer, x[rows], kvs[m])
        return x

    def _layer(self, il, x, positions):
        p = f"blk.{il}."
        n, hd = len(x), self.head_dim
        h = rms_norm(x, self.w(p + "attn_norm.weight"), self.eps)
        q, k, v = (h @ self.w(p + f"attn_{s}.weight").T for s in "qkv")
        if self.has(p + "attn_q.bias"):
            q, k, v = q + self.w(p + "attn_q.bias"), k + self.w(p + "attn_k.bias"), v + self.w(p + "attn_v.bias")
        q = rope(q.reshape(n, self.n_head, hd), positions, self.rope_base, neox=self.arch == "qwen2")
        k = rope(k.reshape(n, self.n_head_kv, hd), positions, self.rope_base, neox=self.arch == "qwen2")
        v = v.reshape(n, self.n_head_kv, hd)
        group = self.n_head // self.n_head_kv
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd)
        scores = scores + np.triu(np.full((n, n), -np.inf, np.float32), 1)
        att = np.einsum("hqk,khd->qhd", softmax(scores), v).reshape(n, self.n_embd)
        x = x + att @ self.w(p + "attn_output.weight").T
        h = rms_norm(x, self.w(p + "ffn_norm.weight"), self.eps)
        gate, up = h @ self.w(p + "ffn_gate.weight").T, h @ self.w(p + "ffn_up.weight").T
        return x + (silu(gate) * up) @ self.w(p + "ffn_down.weight").T


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def silu(x):
    return x / (1 + np.exp(-x))


def rope(x, positions, base, neox):
    """llama.cpp's rotary embedding: pairs (2i, 2i+1) for llama GGUFs (their
    q/k weights are permuted at conversion), (i, i + d/2) for NeoX models."""
    d = x.shape[-1]
    theta = positions[:, None] * base ** (-np.arange(0, d, 2, dtype=np.float64) / d)  # [n, d/2]
    cos, sin = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
    if neox:
        a, b = x[..., : d // 2], x[..., d // 2:]
    else:
        a, b = x[..., 0::2], x[..., 1::2]
    ra, rb = a * cos - b * sin, a * sin + b * cos
    out = np.empty_like(x)
    if neox:
        out[..., : d // 2], out[..., d // 2:] = ra, rb
    else:
        out[..., 0::2], out[..., 1::2] = ra, rb
    return out.astype(np.float32)
