"""The frozen LM in torch, for training and the probes: SmolLM2's llama
layers over the dequantized GGUF weights that `prepare` writes (lm.npz).
A leaf: the trainer and the probes import it, it imports neither."""

import json
import math
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F


class FrozenLM:
    """llama-architecture forward pass (gguf_lm.LM._layer) over the
    dequantized GGUF weights (fp32 unless `dtype` says otherwise)."""

    def __init__(self, npz, config, dtype=torch.float32):
        w = np.load(npz)
        self.c = config
        t = lambda name: torch.from_numpy(np.ascontiguousarray(w[name])).to(dtype)  # noqa: E731
        self.embd = torch.from_numpy(np.ascontiguousarray(w["token_embd.weight"]))  # fp32 rows for lookup
        self.head = t("output.weight") if "output.weight" in w.files else self.embd.to(dtype)
        self.out_norm = torch.from_numpy(w["output_norm.weight"]).float()
        self.layers = []
        for il in range(config["n_layer"]):
            p = f"blk.{il}."
            self.layers.append({
                "attn_norm": torch.from_numpy(w[p + "attn_norm.weight"]).float(),
                "q": t(p + "attn_q.weight"), "k": t(p + "attn_k.weight"), "v": t(p + "attn_v.weight"),
                "o": t(p + "attn_output.weight"),
                "ffn_norm": torch.from_numpy(w[p + "ffn_norm.weight"]).float(),
                "gate": t(p + "ffn_gate.weight"), "up": t(p + "ffn_up.weight"), "down": t(p + "ffn_down.weight"),
            })
        self.head_dim = config["n_embd"] // config["n_head"]
        self.cache = {}
        self.runtime = None
        self.quantized = {}  # (token ids, layer) → the runtime's states entering that layer

    def warm(self, sequences, first):
        """Fills the cache for many sequences at once (batched: one padded
        forward per 64 sequences of similar length, ~20x faster than one
        by one); with a runtime, its states too."""
        todo = sorted({tuple(s) for s in sequences} - set(self.cache), key=len)
        self.cache.update(zip(todo, self.states(todo, first)))
        if self.runtime:
            self.runtime_states(todo, first)
        return len(todo)

    def use_runtime(self, vigil, gguf, threads):
        """States entering the first block may also come from the runtime
        itself (`vigil lm-states`: the quantized GGUF on llama.cpp), which
        differ from this f32 pass by ~3 % of their norm (up to 6 %) in structured
        directions (f13e865:models/demo/EVAL.md)."""
        self.runtime = (vigil, gguf, threads)

    def runtime_gap(self, first):
        """How far the runtime's states entering layer `first` are from
        this pass's, relative to their norm, over the cached sequences
        (every token but the first): (mean, largest)."""
        gaps = []
        for key, f32 in self.cache.items():
            q = self.quantized.get((key, first))
            if q is not None and len(key) > 1:
                gaps.append(((q[1:] - f32[1:]).norm(dim=-1) / f32[1:].norm(dim=-1)))
        gaps = torch.cat(gaps)
        return gaps.mean().item(), gaps.max().item()

    def runtime_states(self, sequences, first):
        """The runtime's hidden states entering layer `first`, one [len, d]
        per sequence; fetched once per distinct sequence."""
        vigil, gguf, threads = self.runtime
        todo = sorted({tuple(s) for s in sequences if (tuple(s), first) not in self.quantized}, key=len)
        if todo:
            with tempfile.TemporaryDirectory() as tmp:
                out = subprocess.run(
                    [vigil, "lm-states", "--lm", gguf, "--layer", str(first - 1), "--threads", str(threads),
                     "--out", f"{tmp}/states.f32"],
                    input=json.dumps({"sequences": [list(s) for s in todo]}), capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"{vigil} lm-states: {out.stderr.strip() or out.returncode}")
                rows = np.fromfile(f"{tmp}/states.f32", dtype="<f4").reshape(-1, self.c["n_embd"])
            at = 0
            for key in todo:
                self.quantized[(key, first)] = torch.from_numpy(rows[at : at + len(key)].copy())
                at += len(key)
        return [self.quantized[(tuple(s), first)] for s in sequences]

    def states(self, sequences, first, batch=64):
        """Hidden states entering layer `first`, one [len, d] per sequence
        (no media; not cached). Right padding: causal attention keeps it
        out of the real tokens."""
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        out = [None] * len(sequences)
        with torch.no_grad():
            for i in range(0, len(order), batch):
                group = order[i : i + batch]
                n = max(len(sequences[j]) for j in group)
                tokens = torch.zeros(len(group), n, dtype=torch.long)
                for b, j in enumerate(group):
                    tokens[b, : len(sequences[j])] = torch.tensor(sequences[j])
                h = self.embd[tokens]
                tables = self.rope_tables(n)
                for il in range(first):
                    h = self.layer(il, h, tables)
                for b, j in enumerate(group):
                    out[j] = h[b, : len(sequences[j])].clone()
        return out

    def lower(self, tokens, lengths, first, runtime_share=0.0):
        """Hidden states entering layer `first` for a padded batch, from a
        cache keyed by each row's token ids (no media reaches them): each
        row the runtime's with probability `runtime_share`, else this f32
        pass's."""
        B, S = tokens.shape
        x = torch.zeros(B, S, self.c["n_embd"])
        for b in range(B):
            key = tuple(tokens[b, : lengths[b]].tolist())
            if self.runtime and runtime_share > 0 and (runtime_share >= 1 or torch.rand(()) < runtime_share):
                x[b, : lengths[b]] = self.runtime_states([key], first)[0]
                continue
            if key not in self.cache:
                self.cache[key] = self.states([key], first)[0]
            x[b, : lengths[b]] = self.cache[key]
        return x

    def rope_tables(self, n):
        d = self.head_dim
        pos = torch.arange(n, dtype=torch.float64)[:, None]
        theta = pos * self.c["rope_base"] ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        return torch.cos(theta).float(), torch.sin(theta).float()

    def rms(self, x, w):
        x = x.float()
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.c["eps"]) * w

    def rope(self, x, cos, sin):
        # x [B, S, H, d]; llama GGUF pairs (2i, 2i+1)
        a, b = x[..., 0::2].float(), x[..., 1::2].float()
        c, s = cos[None, :, None, :], sin[None, :, None, :]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)

    def layer(self, il, x, tables):
        L, c = self.layers[il], self.c
        B, S, _ = x.shape
        hd = self.head_dim
        h = self.rms(x, L["attn_norm"])
        q = F.linear(h, L["q"]).view(B, S, c["n_head"], hd)
        k = F.linear(h, L["k"]).view(B, S, c["n_head_kv"], hd)
        v = F.linear(h, L["v"]).view(B, S, c["n_head_kv"], hd)
        q, k = self.rope(q, *tables), self.rope(k, *tables)
        group = c["n_head"] // c["n_head_kv"]
        k = k.repeat_interleave(group, dim=2)
        v = v.repeat_interleave(group, dim=2).float()
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
        mask = torch.full((S, S), float("-inf")).triu(1)
        att = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(scores.float() + mask, -1), v).reshape(B, S, -1)
        x = x + F.linear(att, L["o"]).float()
        h = self.rms(x, L["ffn_norm"])
        return x + F.linear(F.silu(F.linear(h, L["gate"])) * F.linear(h, L["up"]), L["down"]).float()

    def logits(self, x):
        return F.linear(self.rms(x, self.out_norm), self.head).float()
