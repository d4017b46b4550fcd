"""Trains the demo model: the Perceiver Resampler and Flamingo's tanh-gated
cross-attention blocks on a frozen SmolLM2 and a frozen EfficientNet-Lite0.

Runs under Debian's python3-torch (CPU; `python3 -m vigil_kit.demo.train`):
torch 1.13 with numpy 1.24, so this file imports nothing from the kit that
needs the kit's virtualenv. Inputs come from `vigil_kit.demo prepare`
(features, token ids, the dequantized LM); the output is an .npz of the
trained weights that `vigil_kit.demo export` turns into the runtime's files.

Two stages (f13e865:models/demo/EVAL.md, "Training"). Stage 1 (`--pretrain-steps`)
trains the resampler alone, with a training-only ObjectHead that must read
every object's count (and, in clips, which objects move, appear or leave)
off the 64 visual tokens through one learned query per object: dense, exact
labels from the generator (`labels.py`), ~0.75 s a step with no LM in the
loop. The gated blocks then start from that head (`init_blocks`: one block
per question role, reading the head's evidence and writing it towards the
answer tokens) and train on the answer tokens, gates from 0 as in Flamingo,
with the object loss kept on (`--object-weight`). Trained end to end from
random blocks instead (`--pretrain-steps 0`), a run of the same length
learnt mostly the answer priors (f13e865:models/demo/EVAL.md).

The math is the kit's reference (gguf_lm.py for the LM, xattn.py for the
blocks, resampler.py for the resampler), written in torch; `--check` compares
this forward pass with the numpy reference on the same weights.

The runtime's LM is not that f32 pass: Q4_1 weights times 8-bit
activations move the hidden state entering the first block by ~3 % of
its norm, in structured directions that the blocks turned into flipped
answers. With `--vigil` and `--lm`, stage 2 also trains on the runtime's
own states (`vigil lm-states`), half the rows each way (`--runtime-share`),
and the blocks' query maps are fitted on both: the same prompt with the
same target either way, so the blocks learn to ignore where the two differ.

Speed: everything below the first block depends only on the text, so the
hidden states entering the first block are computed once per distinct token
sequence (without autograd) and cached; the backward pass covers only the
upper layers. Matmuls are fp32 on OpenBLAS (Debian's torch links the
reference BLAS through libblas.so.3: `scripts/demo-model.sh train` makes
sure libopenblas0 provides it, ~15x faster here). bf16 autocast is faster
only on CPUs with AVX-512 BF16 (docs/building.md), which this 2-core AVX2
machine lacks (bf16 matmul 0.35 s vs fp32 OpenBLAS 0.012 s for 512×576×576).
"""

import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .frozen_lm import FrozenLM
from .naming_probe import Prompts, word_states
from .scenes import NAMING  # what a naming episode asks, as the held-out set asks it

# The demo model's shape (docs/adapter-format.md, resampler.py).
# One block per question role, started by init_blocks (BLOCK_ROLES).
LAYERS = [23, 24, 25, 27, 29]
# SmolLM2-135M's layers (to check --naming-layer before the LM is loaded).
N_LM_LAYERS = 30
HEADS, HEAD_DIM, FF = 4, 64, 576
R_WIDTH, R_DEPTH, R_HEADS, R_HEAD_DIM, R_LATENTS, R_FRAMES, R_FF_MULT = 384, 2, 6, 64, 64, 8, 2
# The encoder's channels per grid place: the prepared features' (1952 for
# the demo's encoder, build.ENCODER); use_feature_width sets it from them.
FEATURE_DIM = 1952
N_PLACES = 49  # the encoder's 7×7 grid of features per frame
GATE_LR_MULT = 10.0
FITTED_LR_MULT = 0.02

KINDS = {  # batch kind → share of the steps (naming2's is then set by --naming-share; mix)
    "presence0": 0.22, "count0": 0.24, "motion0": 0.17, "change0": 0.17, "naming2": 0.14, "presence2": 0.06,
}
# Stage 2's share of 2-shot naming episodes. Without a naming block, naming
# was learnt only here: with the null query (--null-weight) the few-shot
# gain held out was +5 at 0.14 and +29 at 0.26. With the naming codes
# (NAMING_LAYER) the block carries it: +40 at 0.26, +34 at 0.14, which
# leaves the other kinds more steps and, naming episodes being the longest
# sequences, makes a step 1.4 s instead of 2.4 (f13e865:models/demo/EVAL.md).
NAMING_SHARE = 0.14
# The recipe's naming block (--naming-layer, --naming-codes, --naming-frozen):
# before layer 28, writing per-object codes learnt 100 steps for the frozen
# layers above it (validation naming, text only, 0.49 → 0.95 in ~7 min).
NAMING_LAYER = 28
NAMING_CODE_STEPS = 100
# --count-read-steps: the count block starts from stage 1's head refitted on
# counts alone (validation count stills 0.825 → 0.833; over 400 held-out
# count questions worth ~3-4 points; f13e865:models/demo/EVAL.md).
COUNT_READ_STEPS = 600
# --naming-frozen: steps over which the naming block's attention gate opens
# (tanh 0 → 1; Model.open_naming), about stage 2's first validation.
NAMING_RAMP = 200
# --naming-codes: a code's norm, at most, as a multiple of the median norm of
# the LM's states where it is written (0.25 before layer 28: text-only
# naming with held-out names 0.56 → 0.98 after 100 steps; scratch run).
NAMING_CODE_CAP = 0.25
# --naming-codes: how many other questions the codes are kept from moving.
KEEP_POOL = 512


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- trained parts


class XAttn(nn.Module):
    """One gated cross-attention block (xattn.Adapter.apply)."""

    def __init__(self, d, visual_dim, gen):
        super().__init__()
        inner = HEADS * HEAD_DIM

        def lin(out, inp):
            return nn.Parameter(torch.randn(out, inp, generator=gen) * inp**-0.5)

        self.attn_norm_w, self.attn_norm_b = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))
        self.q, self.k, self.v, self.o = lin(inner, d), lin(inner, visual_dim), lin(inner, visual_dim), lin(d, inner)
        self.ffn_norm_w, self.ffn_norm_b = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))
        self.up, self.down = lin(FF, d), lin(d, FF)
        # Flamingo: gates start at 0, so training starts from the frozen LM.
        self.attn_gate, self.ffn_gate = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))

    def forward(self, y, media, media_of):
        """y [B, S, d]; media [B, M, n, Dv]; media_of [B, S] (-1: none)."""
        B, S, d = y.shape
        M, n = media.shape[1], media.shape[2]
        x = F.layer_norm(y.float(), (d,), self.attn_norm_w, self.attn_norm_b, 1e-5)
        q = F.linear(x, self.q).view(B, S, HEADS, HEAD_DIM)
        k = F.linear(media, self.k).view(B, M, n, HEADS, HEAD_DIM)
        v = F.linear(media, self.v).view(B, M, n, HEADS, HEAD_DIM)
        # Per token, only the latest media before it: attend to each media
        # and keep the one the token belongs to.
        att = torch.zeros(B, S, HEADS, HEAD_DIM)
        for m in range(M):
            s = torch.einsum("bqhd,bkhd->bhqk", q, k[:, m]) / math.sqrt(HEAD_DIM)
            a = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(s.float(), -1), v[:, m].float())
            att = att + a * (media_of == m).float()[:, :, None, None]
        has = (media_of >= 0).float()[:, :, None]
        y = y + torch.tanh(self.attn_gate) * has * F.linear(att.reshape(B, S, -1), self.o).float()
        x = F.layer_norm(y.float(), (d,), self.ffn_norm_w, self.ffn_norm_b, 1e-5)
        f = F.linear(F.gelu(F.linear(x, self.up).float()), self.down).float()
        return y + torch.tanh(self.ffn_gate) * has * f

    # Each parameter's name in the adapter file (xattn.py); export and
    # load_weights both go by it.
    FILE_NAMES = {
        "attn_norm_w": "attn_norm.weight", "attn_norm_b": "attn_norm.bias", "q": "attn_q.weight",
        "k": "attn_k.weight", "v": "attn_v.weight", "o": "attn_output.weight", "attn_gate": "attn_gate",
        "ffn_norm_w": "ffn_norm.weight", "ffn_norm_b": "ffn_norm.bias", "up": "ffn_up.weight",
        "down": "ffn_down.weight", "ffn_gate": "ffn_gate",
    }

    def export(self):
        return {name: getattr(self, attr).detach().float().numpy().copy() for attr, name in self.FILE_NAMES.items()}


class Resampler(nn.Module):
    """The Perceiver Resampler of resampler.py: [N, T, 49, F] → [N, 64, W]."""

    def __init__(self, gen, places=False, diffs=False, late_places=False, place_latents=False):
        super().__init__()
        W, inner = R_WIDTH, R_HEADS * R_HEAD_DIM

        def lin(out, inp):
            return nn.Parameter(torch.randn(out, inp, generator=gen) * inp**-0.5)

        self.proj_w, self.proj_b = lin(W, FEATURE_DIM), nn.Parameter(torch.zeros(W))
        self.latents = nn.Parameter(torch.randn(R_LATENTS, W, generator=gen))
        self.frame_embs = nn.Parameter(torch.randn(R_FRAMES, 1, W, generator=gen) * 0.5)
        # Optional (--place-embeddings): where in the 7×7 grid a feature
        # sits. Flamingo adds only temporal embeddings (its NFNet features
        # carry place channel-wise). Without them, after stage 1 the
        # ObjectHead's "is it moving?" read-out of the asked object was at
        # chance on validation clips (0.50), with them (and --balance-steps)
        # 0.64; but the model trained with them was no better held out
        # (f13e865:models/demo/EVAL.md), so they are off by default. Exported added into
        # frame_embs ([frames, 49, W]):
        # the ONNX graph and the runtime are the same either way. Created
        # only when asked, so that the default draws the same initial
        # weights from `gen` as before they existed.
        self.place_embs = nn.Parameter(torch.randn(1, N_PLACES, W, generator=gen) * 0.5) if places else None
        if places and late_places:
            # --late-places: 0 and frozen until `train` lets stage 2 learn
            # them, so that stage 1 organises the tokens as without them
            # (drawing nothing from `gen`: stage 1 starts as the default's).
            self.place_embs = nn.Parameter(torch.zeros(1, N_PLACES, W), requires_grad=False)
        # With --frame-diffs (the default): each projected feature also gets
        # diff_mix @ (itself - the same grid place one frame earlier).
        # Whether an object moved, appeared or left is a change at a place
        # between frames; without place embeddings the resampler sees each
        # frame as a bag of features, in which a moved object looks the same
        # as one that stayed. The difference is 0 for a still and for a
        # clip's first frame, so stills are resampled exactly as without
        # it; starts at 0 (no effect) and draws nothing from `gen`.
        self.diff_mix = nn.Parameter(torch.zeros(W, W)) if diffs else None
        # With --place-latents (off: held out it answered count 0.71
        # against 0.74 without; f13e865:models/demo/EVAL.md, PL): latent i < 49 starts as its
        # learned vector plus grid place i's projected feature (averaged
        # over the frames, layer-normed), and only then reads the media by
        # attention. Without it, each latent is a softmax average over all
        # 49·T media tokens, and count_probe measured that the first such
        # layer is where the count is lost: a summing probe reads 0.83-0.85
        # of held-out counts from the projected features, 0.71-0.76 after
        # that layer (f13e865:models/demo/EVAL.md). Anchored latents carry each place's object
        # on the residual stream whatever the attention does. Draws nothing
        # from `gen`.
        self.place_norm_w = nn.Parameter(torch.ones(W)) if place_latents else None
        self.place_norm_b = nn.Parameter(torch.zeros(W)) if place_latents else None
        self.layers = nn.ModuleList()
        for _ in range(R_DEPTH):
            layer = nn.ParameterDict({k.replace(".", "__"): v for k, v in {
                "norm_media.weight": nn.Parameter(torch.ones(W)), "norm_media.bias": nn.Parameter(torch.zeros(W)),
                "norm_latents.weight": nn.Parameter(torch.ones(W)), "norm_latents.bias": nn.Parameter(torch.zeros(W)),
                "ff_norm.weight": nn.Parameter(torch.ones(W)), "ff_norm.bias": nn.Parameter(torch.zeros(W)),
                "to_q.weight": lin(inner, W), "to_k.weight": lin(inner, W), "to_v.weight": lin(inner, W),
                "to_out.weight": lin(W, inner), "ff1.weight": lin(W * R_FF_MULT, W), "ff2.weight": lin(W, W * R_FF_MULT),
            }.items()})
            self.layers.append(layer)
        self.norm_w, self.norm_b = nn.Parameter(torch.ones(W)), nn.Parameter(torch.zeros(W))

    def forward(self, feats, keep_places=None, trace=None):
        """keep_places [N] (0 or 1), training only: whose place embeddings
        are added (--place-dropout); the runtime adds every media's.
        trace: a dict that gets the first layer's normalised media and
        each layer's latents (count_probe)."""
        N, T, n, _ = feats.shape
        W = R_WIDTH
        x = F.linear(feats, self.proj_w, self.proj_b).float()
        if self.diff_mix is not None:
            before = torch.cat([x[:, :1], x[:, :-1]], dim=1)
            x = x + F.linear(x - before, self.diff_mix)
        if self.place_norm_w is not None:
            # Before the frame (and place) embeddings: a place's content,
            # the same for a still and for a clip that stays still.
            anchored = F.layer_norm(x.mean(1), (W,), self.place_norm_w, self.place_norm_b, 1e-5)
            lat = self.latents[None] + F.pad(anchored, (0, 0, 0, R_LATENTS - n))
        else:
            lat = self.latents[None].expand(N, -1, -1)
        if keep_places is None:
            x = x + self.embeddings()[:T][None]
        else:
            x = x + self.frame_embs[:T][None] + keep_places.view(N, 1, 1, 1) * self.place_embs[None]
        media = x.reshape(N, T * n, W)
        ln = lambda t, p, name: F.layer_norm(t.float(), (W,), p[name + "__weight"], p[name + "__bias"], 1e-5)  # noqa: E731
        for i, p in enumerate(self.layers):
            m = ln(media, p, "norm_media")
            l_ = ln(lat, p, "norm_latents")
            q = F.linear(l_, p["to_q__weight"]) * R_HEAD_DIM**-0.5
            kv = torch.cat([m, l_], dim=1)
            k, v = F.linear(kv, p["to_k__weight"]), F.linear(kv, p["to_v__weight"])
            split = lambda t: t.reshape(N, -1, R_HEADS, R_HEAD_DIM).transpose(1, 2)  # noqa: E731
            att = torch.softmax((split(q) @ split(k).transpose(-1, -2)).float(), -1) @ split(v).float()
            out = F.linear(att.transpose(1, 2).reshape(N, R_LATENTS, -1), p["to_out__weight"]).float()
            lat = lat + out
            h = ln(lat, p, "ff_norm")
            lat = lat + F.linear(F.gelu(F.linear(h, p["ff1__weight"]).float()), p["ff2__weight"]).float()
            if trace is not None:
                trace.setdefault("media", m)
                trace[f"latents{i}"] = lat
        return F.layer_norm(lat, (W,), self.norm_w, self.norm_b, 1e-5)

    def embeddings(self):
        """[frames, 1 or 49, W]: when (and, with place embeddings, where) a
        feature is."""
        return self.frame_embs if self.place_embs is None else self.frame_embs + self.place_embs

    def export(self):
        g = lambda p: p.detach().float().numpy().copy()  # noqa: E731
        out = {"proj_in.weight": g(self.proj_w), "proj_in.bias": g(self.proj_b), "latents": g(self.latents),
               "frame_embs": g(self.embeddings()), "norm.weight": g(self.norm_w), "norm.bias": g(self.norm_b)}
        if self.diff_mix is not None:
            out["diff_mix.weight"] = g(self.diff_mix)
        if self.place_norm_w is not None:
            out["place_latents.norm.weight"], out["place_latents.norm.bias"] = g(self.place_norm_w), g(self.place_norm_b)
        for i, p in enumerate(self.layers):
            for name, value in p.items():
                out[f"layers.{i}." + name.replace("__", ".")] = g(value)
        return out


def state_noise(x, relative, generator=None):
    """Gaussian noise whose norm is `relative` × each row's norm.

    The runtime's LM (Q4_1 weights times 8-bit activations, f16 K/V) gives
    hidden states that differ from the f32 ones trained on by 2.6-5.0 % of
    their norm (measured at the input of the first block, `--state-noise`;
    the error is structured, not isotropic: f13e865:models/demo/EVAL.md); blocks
    trained on exact states only were seen to turn that into 2.5 nats of
    answer (a yes/no flipped). Trained under noise of that size, a block
    must decide by directions the quantization does not move."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return noise * (relative * x.norm(dim=-1, keepdim=True) / math.sqrt(x.shape[-1]))


class Model(nn.Module):
    def __init__(self, lm, seed, places=False, diffs=False, state_noise=0.0, runtime_share=0.0, late_places=False,
                 place_dropout=0.0, where=False, layers=LAYERS, place_latents=False):
        super().__init__()
        # The LM layers with a block before them: LAYERS, and with
        # --naming-layer one more, lower (init_naming_block, or random).
        self.layers = sorted(layers)
        gen = torch.Generator().manual_seed(seed)
        self.lm = lm
        self.state_noise = state_noise
        self.runtime_share = runtime_share
        self.place_dropout = place_dropout
        self.resampler = Resampler(gen, places, diffs, late_places, place_latents)
        # --where: a second resampler, with place embeddings, whose tokens
        # sit beside the first's channel-wise (resampler.build). With
        # places in every token, counts rose (0.70 → 0.81) but naming fell
        # (few-shot gain +29 → +4): the tokens said where an object was as
        # well as what it was, and a naming episode's examples and query
        # show it in different places. Here the count block reads the
        # second's half and every other block the first's (init_blocks:
        # WHERE_ROLES). Measured held out (f13e865:models/demo/EVAL.md, W): count 0.74, few-shot
        # gain +5, no better than either, so it stays off by default. Its
        # own generator, so that the rest draws the same initial weights as
        # without it.
        self.where = Resampler(torch.Generator().manual_seed(seed + 3), True, diffs) if where else None
        visual = R_WIDTH * (2 if where else 1)
        self.blocks = nn.ModuleDict({str(layer): XAttn(lm.c["n_embd"], visual, gen) for layer in self.layers})
        # freeze_naming: the naming block is not trained; when it is the
        # lowest, the layers below the second block run without gradients.
        self.frozen_below = None
        self.naming_layer = None

    def freeze_naming(self, layer):
        """--naming-frozen: --naming-layer's block keeps the maps it was
        started with and its FFN shut; its attention gate is not learnt but
        opened on a schedule (open_naming) up to tanh = 1, where it writes
        what init_naming_block fitted. Below the first block (a word-state
        block, layer 12) nothing is trained below the second block, so the
        LM layers between the two run forward only (the backward pass
        through them is what made a block before layer 12 cost 4.15 s a
        step against 2.4). Measured held out (f13e865:models/demo/EVAL.md, PNF: on P's stage 1,
        1,000 steps at 3.2-3.4 s): few-shot gain +28 but presence 0.90 and
        count 0.72. Above the first block (--naming-codes) it costs nothing
        a step."""
        self.naming_layer = layer
        block = self.blocks[str(layer)]
        with torch.no_grad():
            block.ffn_gate.zero_()
        block.requires_grad_(False)
        if layer == self.layers[0]:
            self.frozen_below = self.layers[1]
        self.open_naming(0.0)

    def open_naming(self, fraction):
        """Sets the frozen naming block's attention gate to tanh = fraction
        (0-1): the blocks around it were started on the LM's states without
        its write (init_blocks), so it comes in gradually while they adapt."""
        # tanh(10) is 1 in f32 (the runtime computes the same tanh).
        raw = 10.0 if fraction >= 1.0 else math.atanh(fraction)
        with torch.no_grad():
            self.blocks[str(self.naming_layer)].attn_gate.fill_(raw)

    def forward(self, tokens, lengths, media_of, feats):
        """tokens, media_of [B, S]; feats [B, M, T, 49, F] → final hidden [B, S, d]."""
        B, M = feats.shape[:2]
        keep = None
        if self.training and self.place_dropout > 0 and self.resampler.place_embs is not None:
            # Each media on its own: a naming episode's examples and query
            # then often differ in whether their tokens say where the
            # object is, so the name has to follow what it is.
            keep = (torch.rand(B * M) >= self.place_dropout).float()
        media = self.resampler(feats.flatten(0, 1), keep).view(B, M, R_LATENTS, R_WIDTH)
        if self.where is not None:
            media = torch.cat([media, self.where(feats.flatten(0, 1)).view(B, M, R_LATENTS, R_WIDTH)], -1)
        self.media = media  # for the auxiliary loss
        tables = self.lm.rope_tables(tokens.shape[1])
        first = self.layers[0]
        # Evaluated as the runtime answers: on its states, where it has them.
        share = self.runtime_share if self.training else 1.0
        x = self.lm.lower(tokens, lengths, first, share)
        for il in range(first, self.lm.c["n_layer"]):
            frozen = self.frozen_below is not None and il < self.frozen_below
            with torch.set_grad_enabled(torch.is_grad_enabled() and not frozen):
                if il in self.layers:
                    if self.training and self.state_noise > 0:
                        x = x + state_noise(x, self.state_noise)
                    x = self.blocks[str(il)](x, media, media_of)
                x = self.lm.layer(il, x, tables)
        return x


# ---------------------------------------------------------------- data


def use_feature_width(prep):
    """FEATURE_DIM from the features `prepare` wrote (the resampler's input
    width follows the encoder they came from)."""
    global FEATURE_DIM
    shape = np.load(f"{prep}/train_features.npy", mmap_mode="r").shape
    if len(shape) != 3 or shape[1] != N_PLACES:
        raise SystemExit(f"{prep}/train_features.npy: shape {shape}, expected [frames, {N_PLACES}, channels]: "
                         "prepare it again (scripts/demo-model.sh train)")
    FEATURE_DIM = int(shape[2])


class Data:
    """Episodes drawn from a pool prepared by `vigil_kit.demo prepare`."""

    def __init__(self, prep, split, seed):
        self.tok = json.load(open(f"{prep}/tokens.json"))
        self.feats = np.load(f"{prep}/{split}_features.npy", mmap_mode="r")
        meta = json.load(open(f"{prep}/{split}_items.json"))
        self.names = meta["names"]
        self.by_family = {}
        self.singles = {}
        self.presence_by = {}
        for it in meta["items"]:
            self.by_family.setdefault(it["family"], []).append(it)
            if it["family"] == "single":
                self.singles.setdefault(it["target"], []).append(it)
            if it["family"] == "presence":
                self.presence_by.setdefault((it["target"], it["answer"]), []).append(it)
        self.rng = np.random.default_rng(seed)
        self.objects = meta["objects"]
        self.prep, self.split, self._labels = prep, split, None

    @property
    def labels(self):
        """Each row's objects (only the two-stage options read them)."""
        if self._labels is None:
            self._labels = Labels(self.prep, self.split, self.objects)
        return self._labels

    def text(self, s):
        return self.tok["texts"][s]

    def plain(self, s):
        return self.tok["plain"][s]

    def sequence(self, shots, query_q, answer):
        """Token ids, media index per token, and the answer span, laid out
        exactly as the runtime's Session.feed lays out a prompt."""
        ids, media, m = [], [], 0
        if self.tok["bos"] is not None:
            ids.append(self.tok["bos"])
            media.append(-1)

        def put(tokens, mi):
            ids.extend(tokens)
            media.extend([mi] * len(tokens))

        for q, a in shots:
            put(self.plain("<image>"), m)
            put(self.text(f"Question: {q} Answer: {a}"), m)
            put(self.plain("<|endofchunk|>"), m)
            m += 1
        put(self.plain("<image>"), m)
        put(self.text(f"Question: {query_q} Answer:"), m)
        start = len(ids)
        put(self.plain(f" {answer}"), m)
        return ids, media, (start, len(ids))

    def episode(self, kind):
        """(media rows per media, [(q, a)] examples, query q, answer)."""
        r = self.rng
        if kind.endswith("0"):
            family = kind[:-1]
            it = self.by_family[family][r.integers(len(self.by_family[family]))]
            return [it["rows"]], [], it["question"], it["answer"]
        if kind == "naming2":
            objs = list(self.singles)
            a, b = r.choice(objs, size=2, replace=False)
            na, nb = r.choice(self.names, size=2, replace=False)
            pick = lambda o: self.singles[o][r.integers(len(self.singles[o]))]  # noqa: E731
            q = NAMING[r.integers(len(NAMING))]
            ex = [(pick(a)["rows"], na), (pick(b)["rows"], nb)]
            if r.integers(2):
                ex.reverse()
            query_obj, answer = (a, na) if r.integers(2) else (b, nb)
            return [e[0] for e in ex] + [pick(query_obj)["rows"]], [(q, e[1]) for e in ex], q, answer
        if kind == "presence2":
            it = self.by_family["presence"][r.integers(len(self.by_family["presence"]))]
            ex = []
            for ans in ("yes", "no"):
                pool = self.presence_by.get((it["target"], ans), [])
                e = pool[r.integers(len(pool))] if pool else it
                ex.append((e["rows"], e["answer"]))
            if r.integers(2):
                ex.reverse()
            return [e[0] for e in ex] + [it["rows"]], [(it["question"], e[1]) for e in ex], it["question"], it["answer"]
        raise ValueError(kind)

    def batch(self, kind, size):
        return self.collate([self.episode(kind) for _ in range(size)])

    def collate(self, eps):
        """Episodes (media rows per media, examples, query, answer) of one
        layout → padded tokens, lengths, media per token, targets (the
        answer's tokens), features, and the episodes."""
        size = len(eps)
        seqs = [self.sequence(shots, q, a) for _, shots, q, a in eps]
        S = max(len(s[0]) for s in seqs)
        tokens = torch.zeros(size, S, dtype=torch.long)
        lengths = [len(s[0]) for s in seqs]
        media_of = torch.full((size, S), -1, dtype=torch.long)
        target = torch.full((size, S), -100, dtype=torch.long)
        for i, (ids, media, (a, b)) in enumerate(seqs):
            tokens[i, : len(ids)] = torch.tensor(ids)
            media_of[i, : len(ids)] = torch.tensor(media)
            # position t predicts token t+1
            target[i, a - 1 : b - 1] = torch.tensor(ids[a:b])
        M = len(eps[0][0])
        T = len(eps[0][0][0])
        rows = np.array([r for e in eps for media in e[0] for r in media])
        feats = torch.from_numpy(self.feats[rows].astype(np.float32)).view(size, M, T, 49, FEATURE_DIM)
        return tokens, lengths, media_of, target, feats, eps



class Labels:
    """What each feature row holds, by construction (`vigil_kit.demo labels`
    writes {split}_objects.json): per row, every object's count and place."""

    def __init__(self, prep, split, objects):
        path = f"{prep}/{split}_objects.json"
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: run `python -m vigil_kit.demo labels --data data --prep {prep}` "
                             "(scripts/demo-model.sh train does)")
        rows = json.load(open(path))["rows"]
        self.counts = np.zeros((len(rows), len(objects)), np.int64)
        self.places = [{} for _ in rows]
        for r, placed in enumerate(rows):
            for name, x, y, _ in placed:
                self.counts[r, objects.index(name)] += 1
                self.places[r][objects.index(name)] = (x, y)

    def targets(self, rows):
        """Targets of one media (its frames' rows) for ObjectHead, one per
        query (each object, then "something"): count in the newest frame
        (0-3), moving, appeared, left; -100 where a target does not apply
        (motion and change only in clips: on stills they are trivially 0,
        and with them the count did not train, measured)."""
        K = self.counts.shape[1]
        first, last = self.counts[rows[0]], self.counts[rows[-1]]
        out = np.full((K + 1, 4), -100, np.int64)
        out[:K, 0] = np.minimum(last, 3)
        if len(rows) > 1:
            out[:K, 2] = (first == 0) & (last > 0)
            out[:K, 3] = (first > 0) & (last == 0)
            out[K, 2], out[K, 3] = out[:K, 2].max(), out[:K, 3].max()
            # Moving: a single instance, there all along, whose place changes.
            single = (self.counts[rows] == 1).all(0)
            for o in np.flatnonzero(single):
                out[o, 1] = len({self.places[r][o] for r in rows}) > 1
        return out


def attend(queries, k, v):
    """queries [K, inner] over keys and values [N, n, heads, head_dim]
    (ObjectHead.keys_values) → attended values [N, K, inner]."""
    K, N = queries.shape[0], k.shape[0]
    s = torch.einsum("ohd,nkhd->nohk", queries.view(K, HEADS, HEAD_DIM), k) / math.sqrt(HEAD_DIM)
    return torch.einsum("nohk,nkhd->nohd", torch.softmax(s, -1), v).reshape(N, K, -1)


class ObjectHead(nn.Module):
    """Training only: one learned query per object (and one for "something")
    attends over a media's 64 visual tokens, as a gated block's query will;
    linear read-outs give the object's count, whether it moves, appeared or
    left. Dense, exact supervision for the resampler (every object of every
    frame, not one question's bit), and keys/values/queries that the blocks
    start from (init_blocks)."""

    def __init__(self, n_objects, gen, null_weight=0.0):
        super().__init__()
        K, inner = n_objects + 1, HEADS * HEAD_DIM
        self.queries = nn.Parameter(torch.randn(K, inner, generator=gen) * 0.02)
        self.k = nn.Parameter(torch.randn(inner, R_WIDTH, generator=gen) * R_WIDTH**-0.5)
        self.v = nn.Parameter(torch.randn(inner, R_WIDTH, generator=gen) * R_WIDTH**-0.5)
        # --null-weight: one more learned query, trained to read a value of
        # (almost) 0 from every media (null_leak), so that the resampler
        # learns a sink among its 64 tokens. A block then has something to
        # ask for at the positions it does not answer that carries no
        # evidence at all; without it the best query found (null_query)
        # still read 0.2-0.65 of the evidence's spread, as a per-scene
        # bias (the presence block added -1.9 to every "Did something
        # appear?", whatever the answer; f13e865:models/demo/EVAL.md). Drawn last, and only
        # when asked, so that the other weights start as before.
        self.null_weight = null_weight
        self.null = nn.Parameter(torch.randn(inner, generator=gen) * 0.02) if null_weight > 0 else None
        # One read-out per target kind, shared by every object: "how many"
        # must come out of the retrieved value in the same code whichever
        # object was asked for, so that a block's output projection can map
        # it to the answer tokens without knowing the object. Measured after
        # 600 steps: count accuracy (every object of every frame) 0.87 with
        # shared read-outs, 0.97 with one per object — but blocks started
        # from per-object read-outs answered no better than from scratch.
        self.outs = nn.ParameterList([nn.Parameter(torch.zeros(inner, n)) for n in (4, 2, 2, 2)])
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(n)) for n in (4, 2, 2, 2)])
        # Weights of the count classes 0-3 in the loss; None (all equal)
        # until pretrain's balancing phase sets COUNT_WEIGHTS.
        self.count_weights = None

    def keys_values(self, media):
        """media [N, 64, W] → keys and values, each [N, 64, heads, head_dim]."""
        N = media.shape[0]
        return (F.linear(media, self.k).view(N, -1, HEADS, HEAD_DIM),
                F.linear(media, self.v).view(N, -1, HEADS, HEAD_DIM))

    def null_leak(self, k, v):
        """How much the null query reads from keys and values
        (keys_values): the mean squared norm of its attended value over
        that of a single token's value (scale-free, so that shrinking every
        value does not count as reading nothing)."""
        a = attend(self.null[None], k, v)
        return a.pow(2).sum(-1).mean() / v.pow(2).sum((-2, -1)).mean()

    def read_outs(self, values, kind):
        """Attended values [..., inner] → the read-out logits of one target kind."""
        return values @ self.outs[kind] + self.biases[kind]

    def forward(self, media):
        """media [N, 64, W] → logits per target kind, each [N, K, classes]."""
        return self.logits(*self.keys_values(media))

    def logits(self, k, v):
        """Keys and values (keys_values) → logits per target kind."""
        a = attend(self.queries, k, v)
        return [self.read_outs(a, kind) for kind in range(len(self.outs))]

    def accuracies(self, media, targets):
        """Accuracy per target kind over the (media, object) pairs where it
        applies; NaN where none does."""
        out = []
        for kind, logits in enumerate(self(media)):
            applies = targets[..., kind] != -100
            right = logits.argmax(-1) == targets[..., kind]
            out.append(right[applies].float().mean().item() if applies.any() else float("nan"))
        return out

    def loss(self, media, targets):
        """media [N, 64, W], targets [N, K, 4] → the count's cross-entropy
        plus half those of the other target kinds that apply, and the
        accuracy on counts."""
        k, v = self.keys_values(media)
        logits = self.logits(k, v)
        losses = [F.cross_entropy(lg.reshape(-1, lg.shape[-1]), targets[..., i].reshape(-1), ignore_index=-100,
                                  weight=self.count_weights if i == 0 else None)
                  for i, lg in enumerate(logits) if (targets[..., i] != -100).any()]  # the count always applies
        counted = targets[..., 0] != -100
        acc = (logits[0].argmax(-1) == targets[..., 0])[counted].float().mean()
        # The count first: it carries presence and identity, what most
        # questions ask; motion and change add to it.
        loss = losses[0] + 0.5 * sum(losses[1:])
        if self.null is not None:
            loss = loss + self.null_weight * self.null_leak(k, v)
        return loss, acc


class TokenCounter(nn.Module):
    """Training only (--token-count-weight): every object's count read off a
    media's 64 visual tokens by a per-token MLP summed over the tokens (a
    deep-sets reader), trained beside ObjectHead in stage 1 so that the
    resampler keeps how many there are. ObjectHead reads through one
    softmax average, which any aggregate of the tokens satisfies; the
    resampler trained by it alone lost the count at its first attention
    layer: a summing probe read the asked object's count of fresh held-out
    count stills right 0.83-0.85 from its projected features but 0.75-0.77
    from its tokens (f13e865:models/demo/EVAL.md, "Where count is lost"). With this reader at
    weight 1 the tokens read validation stills +4 points better but the
    held-out backgrounds only +1: off by default."""

    def __init__(self, n_objects, gen, hidden=256):
        super().__init__()

        def lin(out, inp):
            return nn.Parameter(torch.randn(out, inp, generator=gen) * inp**-0.5)

        self.w1, self.b1 = lin(hidden, R_WIDTH), nn.Parameter(torch.zeros(hidden))
        self.w2, self.b2 = lin(hidden, hidden), nn.Parameter(torch.zeros(hidden))
        self.out, self.bias = nn.Parameter(torch.zeros(n_objects * 4, hidden)), nn.Parameter(torch.zeros(n_objects * 4))
        self.n_objects = n_objects

    def forward(self, media):
        """media [N, 64, W] → count logits [N, objects, 4]."""
        h = F.relu(F.linear(F.relu(F.linear(media, self.w1, self.b1)), self.w2, self.b2)).sum(1) / 10
        return F.linear(h, self.out, self.bias).view(-1, self.n_objects, 4)

    def loss(self, media, targets, weights=None):
        """Cross-entropy of every object's count (targets [N, K, 4] as
        ObjectHead's; its "something" row has no count) and its accuracy."""
        logits, counts = self(media), targets[:, : self.n_objects, 0]
        loss = F.cross_entropy(logits.reshape(-1, 4), counts.reshape(-1), weight=weights)
        return loss, (logits.argmax(-1) == counts).float().mean()


# ---------------------------------------------------------------- training


def loss_and_accuracy(model, tokens, lengths, media_of, target, feats):
    hidden = model(tokens, lengths, media_of, feats)
    rows = target != -100
    logits = model.lm.logits(hidden[rows])
    loss = F.cross_entropy(logits, target[rows])
    return loss, (logits.argmax(-1) == target[rows]).float()


def object_loss(model, data, eps):
    """ObjectHead's loss on every media of a batch (model.media, from the
    forward pass just run)."""
    media = model.media.flatten(0, 1)
    targets = torch.from_numpy(np.stack([data.labels.targets(rows) for e in eps for rows in e[0]]))
    loss, acc = model.object_head.loss(media[..., :R_WIDTH], targets)
    if model.where is not None:
        loss = loss + model.where_head.loss(media[..., R_WIDTH:], targets)[0]
    return loss, acc


def media_batch(data, family, size):
    """Features [size, T, 49, F] and ObjectHead targets of random scenes of
    one family (stills or clips)."""
    items = [data.by_family[family][i] for i in data.rng.integers(len(data.by_family[family]), size=size)]
    rows = np.array([r for it in items for r in it["rows"]])
    feats = torch.from_numpy(data.feats[rows].astype(np.float32)).view(size, len(items[0]["rows"]), 49, FEATURE_DIM)
    return feats, torch.from_numpy(np.stack([data.labels.targets(it["rows"]) for it in items]))


# The count classes 0-3 as weighed in pretrain's optional balancing phase
# (--balance-steps). Over every (object, frame) pair 83 % of counts are 0
# and only 2.6 % are 2, 2.5 % are 3, so the plain loss learnt "0 or 1":
# after 1,200 steps the head read the asked object's count right on 53 %
# of count stills (0 % of the 2s). 400 more steps with these weights: 75 %
# (2s: 41 %, 3s: 70 %; with 1, 2, 5, 5: 69 %). Measured on validation.
# With the decaying stage 1 (--pretrain-decay, 2,000 + 400 steps) the head
# read the asked object's count right on 74 % of count stills, 65 % without
# the balancing phase (2,400 plain steps), and the model's held-out counts
# were 0.72 either way, presence 0.92 vs 0.90 (f13e865:models/demo/EVAL.md): on by default.
COUNT_WEIGHTS = (1.0, 3.0, 10.0, 10.0)

PRETRAIN_FAMILIES = {"presence": 32, "count": 32, "single": 32, "motion": 12, "change": 12}  # family → scenes per step


def pretrain(model, data, val, args):
    """Stage 1: the resampler and ObjectHead alone, on every object of every
    frame (no LM: ~0.75 s a step). The logged accuracy is over every
    (object, frame) pair, most of them absent: 0.83 is "nothing anywhere"."""
    opt = torch.optim.AdamW(model.parameters(), lr=args.pretrain_lr, betas=(0.9, 0.98), weight_decay=0.01)
    families = list(PRETRAIN_FAMILIES)
    started, history = time.time(), []
    total = args.pretrain_steps + args.balance_steps
    for step in range(1, total + 1):
        lr = args.pretrain_lr * min(1.0, step / args.warmup)
        if step == args.pretrain_steps + 1:
            # Balancing phase: first what is where, then how many.
            model.object_head.count_weights = torch.tensor(COUNT_WEIGHTS)
            log(f"pretrain: count classes weighted {COUNT_WEIGHTS} from here on")
        if step > args.pretrain_steps:
            lr = args.balance_lr
        if args.pretrain_decay:
            # Cosine to a tenth over the whole stage, as in stage 2: at a
            # constant rate the every-object loss was still falling at the
            # end (validation count accuracy 0.908 → 0.923 over the last
            # 200 of 1,200 steps).
            lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / total))
        for g in opt.param_groups:
            g["lr"] = lr
        family = families[step % len(families)]
        feats, targets = media_batch(data, family, PRETRAIN_FAMILIES[family])
        media = model.resampler(feats)
        loss, acc = model.object_head.loss(media, targets)
        loss = model.counted(loss, media, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append((loss.item(), acc.item()))
        if step % args.log_every == 0 or step == total:
            spent = time.time() - started
            recent = history[-args.log_every:]
            with torch.no_grad():
                accs = [model.object_head.loss(model.resampler(f), t)[1].item()
                        for f, t in (media_batch(val, fam, 32) for fam in ("presence", "count"))]
                notes = ""
                if model.token_counter is not None:
                    f, t = media_batch(val, "count", 32)
                    right = model.token_counter.loss(model.resampler(f), t)[1].item()
                    notes = f"; token counter {right:.3f}"
                if model.object_head.null is not None:
                    f, _ = media_batch(val, "change", 32)
                    leak = model.object_head.null_leak(*model.object_head.keys_values(model.resampler(f)))
                    notes += f"; null leak {leak.item():.4f}"
                if step % (4 * args.log_every) == 0 or step == total:
                    acc = [model.object_head.accuracies(model.resampler(f), t)
                           for f, t in (media_batch(val, fam, 32) for fam in ("motion", "change"))]
                    moving, appeared, left = (np.nanmean([a[kind] for a in acc]) for kind in (1, 2, 3))
                    notes += f"; clips: moving {moving:.3f} appeared {appeared:.3f} left {left:.3f}"
            log(f"pretrain {step}/{total} loss {np.mean([h[0] for h in recent]):.3f} "
                f"count acc {np.mean([h[1] for h in recent]):.3f} (validation {np.mean(accs):.3f}{notes}) "
                f"{spent / step:.2f} s/step, ETA {spent / step * (total - step) / 60:.1f} min")
    log(f"pretrain done: {something_report(model, val)}")


# Stage 1's last phase (--change-steps). Change questions ask about
# "something" ("Did something appear?"), which ObjectHead reads through its
# one extra query; in the every-object loss that query is 1 of 11 and a
# change happens in a third of the clips, so it learnt little: after the
# 2,400 steps of the two phases before, it read "something appeared" right
# on 80 % of validation change clips and "left" on 78 % (always "no":
# 74 %, 63 %; the logged clip figures, 0.96-0.99, average over every
# object, most never there). This phase weighs that query's two read-outs
# by SOMETHING_WEIGHT, their positive class by SOMETHING_POSITIVE, and
# draws change clips three times in seven steps: 400 steps (4.5 min) →
# 0.91 / 0.91, the head's answers to the change questions 0.75 → 0.89,
# presence, counts and motion no worse (validation; without the weighting,
# the same steps: 0.85 / 0.83, answers 0.78); on the held-out clips its
# answers 0.78 → 0.87. The two models first trained on it did not carry
# that into their answers (held-out change 0.77 and 0.75 vs 0.73): the
# other blocks' null queries wrote their own evidence at the change
# positions. With the null query of --null-weight they do not: with both,
# held out, change 0.90, presence 0.97, motion 0.94, count 0.75 (the
# few-shot gain, +5, came back with NAMING_SHARE; f13e865:models/demo/EVAL.md).
SOMETHING_WEIGHT, SOMETHING_POSITIVE = 2.0, 2.0
CHANGE_PHASE = [("change", 24), ("presence", 32), ("change", 24), ("count", 32), ("change", 24), ("motion", 12),
                ("single", 32)]


def something_loss(head, media, targets):
    """Cross-entropy of the "something" query's appeared and left
    read-outs, positives weighed SOMETHING_POSITIVE (clips only)."""
    logits, weight = head(media), torch.tensor([1.0, SOMETHING_POSITIVE])
    return sum(F.cross_entropy(logits[kind][:, -1], targets[:, -1, kind], weight=weight) for kind in (2, 3))


def something_report(model, val):
    """On every validation change clip: how often the "something" query
    reads appeared and left right, and how often those read-outs answer
    the clip's change question right."""
    items = val.by_family["change"]
    rows = [it["rows"] for it in items]
    feats = torch.from_numpy(val.feats[np.array(sum(rows, []))].astype(np.float32)).view(
        len(items), len(rows[0]), 49, FEATURE_DIM)
    targets = torch.from_numpy(np.stack([val.labels.targets(r) for r in rows]))[:, -1]
    with torch.no_grad():
        logits = model.object_head(model.resampler(feats))
    said = {kind: logits[kind][:, -1].argmax(-1) for kind in (2, 3)}
    answers = [(said[2 if _role(it) == "appear" else 3][i] == 1).item() == (it["answer"] == "yes")
               for i, it in enumerate(items)]
    appeared, left = ((said[k] == targets[:, k]).float().mean().item() for k in (2, 3))
    return (f"'something' on {len(items)} validation change clips: appeared {appeared:.3f}, left {left:.3f}; "
            f"its answers to their questions {np.mean(answers):.3f}")


def change_phase(model, data, val, args):
    """Stage 1's last phase (CHANGE_PHASE), its own AdamW at --change-lr,
    cosine to a tenth."""
    head = model.object_head
    opt = torch.optim.AdamW(model.parameters(), lr=args.change_lr, betas=(0.9, 0.98), weight_decay=0.01)
    log(f"change phase: {args.change_steps} steps; before: {something_report(model, val)}")
    started, history = time.time(), []
    for step in range(1, args.change_steps + 1):
        for g in opt.param_groups:
            g["lr"] = args.change_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.change_steps)))
        family, size = CHANGE_PHASE[step % len(CHANGE_PHASE)]
        feats, targets = media_batch(data, family, size)
        media = model.resampler(feats)
        loss, _ = head.loss(media, targets)
        loss = model.counted(loss, media, targets)
        if family in ("change", "motion"):
            loss = loss + SOMETHING_WEIGHT * something_loss(head, media, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
        if step % args.log_every == 0 or step == args.change_steps:
            spent = time.time() - started
            report = f"; {something_report(model, val)}" if step % (4 * args.log_every) == 0 else ""
            log(f"change phase {step}/{args.change_steps} loss {np.mean(history[-args.log_every:]):.3f}{report} "
                f"{spent / step:.2f} s/step, ETA {spent / step * (args.change_steps - step) / 60:.1f} min")
    log(f"change phase done: {something_report(model, val)}")


# What each block starts out reading (init_blocks): the question role whose
# answer position it serves, the ObjectHead read-out (target kind) whose
# evidence it writes, and which answer tokens it writes towards. Presence
# and count get a block each: a count's digit is decided one token later
# than a yes/no (" 2" is " " then "2"), and one output projection writing
# both yes/no and digits pushed " yes" where a count's " " belongs.
BLOCK_ROLES = {
    23: ("presence", 0, "any"), 24: ("count", 0, "digits"),
    25: ("motion", 1, "yes"), 27: ("appear", 2, "yes"), 29: ("leave", 3, "yes"),
}
# With --where, the roles whose block reads the second resampler (the one
# with place embeddings).
WHERE_ROLES = ("count",)


def _role(it):
    """presence, count, motion; appear or leave for change questions."""
    if it["family"] != "change":
        return it["family"]
    q = it["question"].lower()
    return "leave" if "leave" in q or "disappear" in q else "appear"


def decision_prefixes(data):
    """Each distinct prompt prefix whose last position decides an answer,
    → (its role, the object it names; "something" is the last). For a
    count that is the " " before the digit, for the rest "Answer:"."""
    out = {}
    for family in ("presence", "count", "motion", "change"):
        for it in data.by_family[family]:
            ids, _, (start, _) = data.sequence([], it["question"], it["answer"])
            cut = start + 1 if family == "count" else start
            out[tuple(ids[:cut])] = (_role(it), data.objects.index(it["target"]) if it["target"] else len(data.objects))
    return out


FAMILY_OF_READOUT = {0: ("presence", "count"), 1: ("motion",), 2: ("change",), 3: ("change",)}


def evidence(head, readout, writes, resampler, data, n=256):
    """[classes, inner]: a linear map, no intercept, from a value that
    ObjectHead's attention returns to the evidence the block writes: the
    log-odds of "any" (count 1-3 vs 0), the count's centred logits, or the
    read-out's log-odds. Fitted by ridge regression on values attended with
    the head's own queries (random objects) over scenes of the families the
    read-out serves."""
    values, targets, samples = [], [], []
    with torch.no_grad():
        for family in FAMILY_OF_READOUT[readout]:
            feats, _ = media_batch(data, family, n // len(FAMILY_OF_READOUT[readout]))
            media = resampler(feats)
            a = attend(head.queries, *head.keys_values(media)).flatten(0, 1)
            t = head.read_outs(a, readout)
            if writes == "any":
                t = (torch.logsumexp(t[:, 1:], -1) - t[:, 0])[:, None]
            elif writes == "digits":
                t = t - t.mean(-1, keepdim=True)
            else:
                t = (t[:, 1] - t[:, 0])[:, None]
            values.append(a)
            targets.append(t)
            samples.append(media)
    a, t = torch.cat(values).double(), torch.cat(targets).double()
    m = torch.linalg.solve(a.T @ a + 1e-3 * len(a) * torch.eye(a.shape[1], dtype=torch.float64), a.T @ t).T
    fit = 1 - ((a @ m.T - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum()
    log(f"  evidence ({writes}, read-out {readout}) as a map of the value: R² {fit.item():.3f}")
    m = m.float()
    return m, null_query(head, m, torch.cat(samples), t.float().std())


def null_query(head, m, media, spread, steps=300):
    """A query that reads (almost) no evidence from any scene: what the
    positions a block does not answer ask for, so that it writes nothing
    there. (A zero query averages every token's value, which is evidence
    of one sign: every block then pushed yes or no everywhere and they
    fought each other, measured.) Fitted by gradient descent."""
    with torch.no_grad():
        k, v = head.keys_values(media)
    # From the head's own null query where stage 1 trained one (the sink's
    # key), else from 0.
    start = head.null.detach()[None] if head.null is not None else torch.zeros(1, HEADS * HEAD_DIM)
    q = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([q], lr=0.05)
    for _ in range(steps):
        loss = (attend(q, k, v)[:, 0] @ m.T).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    log(f"  null query: evidence RMS {loss.sqrt().item() / spread.item():.2f} of the evidence's spread")
    return q.detach()[0]


NOISY_COPIES = 15


def count_reader(head, resampler, data, val, steps, lr=1e-3, batch=128):
    """A copy of `head` refitted on counts alone, for the count block to
    start from: its queries, keys, values and count read-out, trained on the
    asked object's count of count stills (COUNT_WEIGHTS) over the frozen
    resampler's tokens. Stage 1's head shares its attention with motion
    and change and reads every object of every frame, mostly zeros: it read
    the asked object's count of validation count stills right 0.775 of
    the time (twos 0.60 on training) where a count-only read of the same
    tokens reached 0.80-0.83 after 500-1,500 steps (f13e865:models/demo/EVAL.md)."""
    def tokens(d):
        items = d.by_family["count"]
        media = []
        with torch.no_grad():
            for i in range(0, len(items), 128):
                part = items[i:i + 128]
                rows = np.array([r for it in part for r in it["rows"]])
                feats = torch.from_numpy(d.feats[rows].astype(np.float32))
                media.append(resampler(feats.view(len(part), len(part[0]["rows"]), N_PLACES, FEATURE_DIM)))
        answers = torch.tensor([min(int(it["answer"]), 3) for it in items])
        return torch.cat(media), answers, torch.tensor([d.objects.index(it["target"]) for it in items])

    def accuracy(h, media, answers, objects):
        with torch.no_grad():
            logits = h(media)[0]
            return (logits[torch.arange(len(objects)), objects].argmax(-1) == answers).float().mean().item()

    media, answers, objects = tokens(data)
    val_media, val_answers, val_objects = tokens(val)
    reader = copy.deepcopy(head)
    before = accuracy(reader, val_media, val_answers, val_objects)
    params = [reader.queries, reader.k, reader.v, reader.outs[0], reader.biases[0]]
    if reader.null is not None:
        params.append(reader.null)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    weights = torch.tensor(COUNT_WEIGHTS)
    # Its own generator, not torch's: stage 2 then draws what it would
    # without the refit, and one stage 1 gives one count reader.
    gen = torch.Generator().manual_seed(len(media))
    for _ in range(steps):
        idx = torch.randint(len(media), (batch,), generator=gen)
        k, v = reader.keys_values(media[idx])
        logits = reader.logits(k, v)[0]
        loss = F.cross_entropy(logits[torch.arange(batch), objects[idx]], answers[idx], weight=weights)
        if reader.null is not None:
            # The null query must still read nothing through the new keys
            # and values (null_query starts from it).
            loss = loss + reader.null_weight * reader.null_leak(k, v)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy(reader, val_media, val_answers, val_objects)
    log(f"count reader: {steps} steps on counts alone; the asked object's count of validation count stills "
        f"{before:.3f} → {after:.3f}")
    return reader


def init_blocks(model, data, val, scale=30.0, noise=0.0, count_read_steps=0, naming_words=None,
                naming_scale=0.5, naming_codes=False):
    """Each block starts as a reader of ObjectHead's evidence:

    * keys and values: ObjectHead's;
    * query map: fitted (ridge regression) so that the deciding position of
      the block's role asks for the object the question names ("something"
      for change questions) and every other deciding position asks for the
      null query (null_query); the hidden state there names the object
      linearly (a probe on it is 100 % right);
    * output projection: rank-few, writing the read-out's evidence along
      the directions that raise the answer tokens' logits (the LM head's
      rows through the final norm): yes/no from "any" (count 1-3 vs 0) for
      presence, the digits 0-3 for count, yes/no for motion, appear, leave.

    Gates still start at 0, so training still starts from the frozen LM;
    once a gate opens, its block already points the right way."""
    head, lm = model.object_head, model.lm
    d_of = lambda text: lm.head[data.plain(text)[-1]].float() * lm.out_norm  # noqa: E731
    yes_no = d_of(" yes") - d_of(" no")
    digits = torch.stack([d_of(f" {c}") for c in range(4)])
    digits = digits - digits.mean(0)
    prompts = decision_prefixes(data)
    for layer, block in model.blocks.items():
        if int(layer) not in BLOCK_ROLES:
            # --naming-layer's block: no ObjectHead read-out to start it
            # from (what a naming episode needs is which object, not a
            # count or a yes).
            if naming_words is None:
                log(f"block before layer {layer}: random start (--naming-layer)")
            else:
                init_naming_block(model, block, int(layer), data, val, naming_words, naming_scale, naming_codes)
            continue
        role, readout, writes = BLOCK_ROLES[int(layer)]
        # With --where, which reader (resampler and head) the block reads,
        # and where that reader's half of the tokens sits.
        half = 1 if model.where is not None and role in WHERE_ROLES else 0
        head, resampler = (model.where_head, model.where) if half else (model.object_head, model.resampler)
        if role == "count" and count_read_steps:
            head = count_reader(head, resampler, data, val, count_read_steps)
        queries = head.queries.detach()
        ev, null = evidence(head, readout, writes, resampler, data)
        q_target = torch.stack([queries[o] if r == role else null for r, o in prompts.values()])
        x = torch.stack([h[-1] for h in lm.states(list(prompts), int(layer))])
        if lm.runtime:
            # Fitted on the runtime's states beside the f32 ones: the same
            # prompts, the same targets, so the map learns to ignore where
            # the two differ.
            x = torch.cat([x, torch.stack([h[-1] for h in lm.runtime_states(list(prompts), int(layer))])])
            q_target = q_target.repeat(2, 1)
        if noise > 0:
            # Fitted on noisy copies too: a few hundred prompts in 576
            # dimensions, fitted exactly, leave a map that magnifies the
            # runtime's quantization error (state_noise).
            gen = torch.Generator().manual_seed(int(layer))
            x = torch.cat([x] + [x + state_noise(x, noise, gen) for _ in range(NOISY_COPIES)])
            q_target = q_target.repeat(NOISY_COPIES + 1, 1)
        x = F.layer_norm(x, (x.shape[-1],), block.attn_norm_w.detach(), block.attn_norm_b.detach(), 1e-5).double()
        ridge = 1e-3 * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
        w = torch.linalg.solve(x.T @ x + ridge, x.T @ q_target.double()).T.float()
        fit = 1 - ((x.float() @ w.T - q_target) ** 2).sum() / ((q_target - q_target.mean(0)) ** 2).sum()
        if writes == "digits":  # count logits → the digits' logit directions
            o = digits.T @ ev * (yes_no.norm() / digits.norm(dim=1).mean())
        else:  # P(yes) evidence → yes/no
            o = torch.outer(yes_no, ev[0])
        # Scale: one unit of evidence moves the residual by `scale` along
        # the answer direction (its typical per-token RMS here is 12-28).
        o = o * (scale / yes_no.norm())
        with torch.no_grad():
            block.q.copy_(w)
            # Zeros on the other reader's half: the block reads exactly
            # what its head read.
            block.k.zero_()
            block.v.zero_()
            block.k[:, half * R_WIDTH:(half + 1) * R_WIDTH] = head.k
            block.v[:, half * R_WIDTH:(half + 1) * R_WIDTH] = head.v
            block.o.copy_(o)
        log(f"block before layer {layer}: reads {role}{' (--where)' if half else ''}; query map R² {fit.item():.3f}")


def single_media_means(model, data, per_object):
    """The mean of the resampler's 64 tokens of up to `per_object` stills of
    each object alone (the pictures of naming episodes) → [n, W], and
    each still's object index."""
    means, objects = [], []
    with torch.no_grad():
        for o, items in data.singles.items():
            items = items[:per_object]
            rows = np.array([r for it in items for r in it["rows"]])
            feats = torch.from_numpy(data.feats[rows].astype(np.float32))
            media = model.resampler(feats.view(len(items), len(items[0]["rows"]), N_PLACES, FEATURE_DIM))
            means.append(media.mean(1))
            objects += [data.objects.index(o)] * len(items)
    return torch.cat(means), torch.tensor(objects)


def init_naming_block(model, block, layer, data, val, words, scale, codes=False):
    """--naming-layer's block, started so that every token of a picture's
    chunk gets `scale` × the state the picture's object word has at that
    layer (`words`: naming_probe.word_states; the probe measured that
    identity entering there is what the frozen LM's own layers match
    between a query and its examples: 0.68 right at layer 12, and 0.70
    with scale 0.5 × the per-object mean written into this layout); with
    `codes` (--naming-codes), `words` are naming_codes' learnt vectors
    instead, written as they are (scale 1):

    * query map 0: uniform attention, so each head returns the value of
      the mean visual token;
    * value and output maps: a ridge map from the mean visual token to
      the word state, fitted on the training stills of one object
      (`single`) and split by SVD into value [inner, W] × output
      [d, inner] (rank inner).

    Its gates start at 0 as every block's."""
    x, objs = single_media_means(model, data, 200)
    table = torch.stack([words[o] for o in data.objects]) * scale
    y = table[objs]
    x64 = x.double()
    m = torch.linalg.solve(x64.T @ x64 + 1e-3 * len(x) * torch.eye(x.shape[1], dtype=torch.float64),
                           x64.T @ y.double()).T
    u, sv, vt = torch.linalg.svd(m, full_matrices=False)
    inner = block.v.shape[0]
    vx, vo = single_media_means(model, val, 40)

    def right(mm):  # the nearest object's written state is the still's own
        return ((vx.double() @ mm.T)[:, None] - table[None].double()).norm(dim=-1).argmin(-1).eq(vo).float().mean()

    low = (u[:, :inner] * sv[:inner]) @ vt[:inner]
    log(f"block before layer {layer}: writes the picture's object's {'code (--naming-codes)' if codes else 'word state'} "
        "(--naming-layer); "
        f"nearest object right on validation stills {right(m).item():.3f} (rank {inner}: {right(low).item():.3f}), "
        f"{len(x)} training stills")
    with torch.no_grad():
        block.q.zero_()
        block.v.copy_(vt[:inner].float())
        block.o.copy_((u[:, :inner] * sv[:inner]).float())


def naming_codes(lm, data, val, layer, steps, cap=NAMING_CODE_CAP, keep_weight=1.0, batch=32, seed=0):
    """--naming-codes: per object, the vector --naming-layer's block is
    started to write at every token of a picture's chunk
    (init_naming_block), learnt (Adam, `steps` steps) so that the frozen
    LM layers from `layer` up answer 2-shot naming episodes: the episodes'
    text laid out as the runtime lays it out, each chunk given its
    object's code in place of its picture (its object is known here),
    loss on the answer's tokens. The word states (naming_probe) do not do
    this above layer 20 (0.45-0.50 right: the LM's layers there do not
    match them); learnt codes do, because they are made for what those
    layers match on. Each code's norm is at most `cap` × the median norm
    of the LM's states entering `layer`; `keep_weight`: the codes, written
    into a presence, count, motion or change question's chunk, should
    leave that question's answer distribution where it was (KL), since
    the block writes them into every question → {object: [d]}."""
    gen = np.random.default_rng(seed + 5)
    objects, cache = data.objects, {}

    def naming_episode(names):
        a, b = gen.choice(len(objects), size=2, replace=False)
        na, nb = gen.choice(names, size=2, replace=False)
        q = NAMING[gen.integers(len(NAMING))]
        shots = [(a, na), (b, nb)]
        if gen.integers(2):
            shots.reverse()
        query, answer = (a, na) if gen.integers(2) else (b, nb)
        return [(q, n) for _, n in shots], q, answer, [o for o, _ in shots] + [query]

    def forward(d, rows, codes):
        """rows: (shots, question, answer, object per chunk), their states
        below `layer` cached beforehand → final hidden states, sequences."""
        seqs = [d.sequence(shots, q, a) for shots, q, a, _ in rows]
        S = max(len(ids) for ids, _, _ in seqs)
        x, which = torch.zeros(len(rows), S, lm.c["n_embd"]), torch.zeros(len(rows), S, len(objects))
        for b, ((ids, media, _), row) in enumerate(zip(seqs, rows)):
            x[b, : len(ids)] = cache[tuple(ids)]
            for t, m in enumerate(media):
                if m >= 0:
                    which[b, t, row[3][m]] = 1
        if codes is not None:
            x = x + which @ codes
        tables = lm.rope_tables(S)
        for il in range(layer, lm.c["n_layer"]):
            x = lm.layer(il, x, tables)
        return x, seqs

    def answer_logp(x, seqs):
        """Per row, log-softmax at the positions that predict its answer's tokens, and those tokens."""
        out = []
        for b, (ids, _, (a0, a1)) in enumerate(seqs):
            out.append((torch.log_softmax(lm.logits(x[b, a0 - 1 : a1 - 1]), -1), torch.tensor(ids[a0:a1])))
        return out

    def accuracy(d, codes, n=96):
        right = 0
        with torch.no_grad():
            for _ in range(n // batch):
                rows = [naming_episode(d.names) for _ in range(batch)]
                others = [(s, q, next(nm for _, nm in s if nm != a), o) for s, q, a, o in rows]
                scores = []
                for rs in (rows, others):
                    x, seqs = forward(d, rs, codes)
                    scores.append(torch.stack([lp[torch.arange(len(t)), t].sum() for lp, t in answer_logp(x, seqs)]))
                right += (scores[0] > scores[1]).sum().item()
        return right / (n // batch * batch)

    # The LM's states entering `layer` of every token sequence drawn below,
    # in one batched pass: every naming episode's text (which names, in which
    # order, which question and answer: the objects change no token) and a
    # fixed pool of the other families' questions.
    pool = []
    for _ in range(KEEP_POOL):
        kind = ("presence0", "count0", "motion0", "change0")[gen.integers(4)]
        _, shots, q, a = data.episode(kind)
        pool.append((shots, q, a, [int(gen.integers(len(objects)))]))
    texts = [d.sequence([(q, n1), (q, n2)], q, a)[0] for d in (data, val) for q in NAMING
             for n1 in d.names for n2 in d.names if n1 != n2 for a in (n1, n2)]
    texts += [data.sequence(shots, q, a)[0] for shots, q, a, _ in pool]
    todo = sorted({tuple(t) for t in texts}, key=len)
    cache.update(zip(todo, lm.states([list(t) for t in todo], layer)))

    def other_rows(n):
        rows = [pool[i] for i in gen.choice(len(pool), size=n, replace=False)]
        # Each written with some object's code (the picture's, to the block).
        return [(shots, q, a, [int(gen.integers(len(objects)))]) for shots, q, a, _ in rows]

    probe = [naming_episode(data.names) for _ in range(batch)]
    norm = torch.cat([cache[tuple(data.sequence(s, q, a)[0])][1:] for s, q, a, _ in probe])
    limit = cap * norm.norm(dim=-1).median().item()
    free = torch.nn.Parameter(torch.randn(len(objects), lm.c["n_embd"], generator=torch.Generator().manual_seed(seed))
                              * 1e-3 * limit)

    def codes():
        n = free.norm(dim=-1, keepdim=True)
        return free * torch.clamp(limit / n, max=1.0)

    before = accuracy(val, None)
    opt = torch.optim.Adam([free], lr=0.05 * limit)
    started = time.time()
    for step in range(1, steps + 1):
        x, seqs = forward(data, [naming_episode(data.names) for _ in range(batch)], codes())
        loss = torch.stack([-lp[torch.arange(len(t)), t].mean() for lp, t in answer_logp(x, seqs)]).mean()
        rows = other_rows(batch)
        with torch.no_grad():
            plain = [lp for lp, _ in answer_logp(*forward(data, rows, None))]
        written = [lp for lp, _ in answer_logp(*forward(data, rows, codes()))]
        keep = torch.stack([(p.exp() * (p - w)).sum(-1).mean() for p, w in zip(plain, written)]).mean()
        opt.zero_grad()
        (loss + keep_weight * keep).backward()
        opt.step()
        if step % 25 == 0 or step == steps:
            log(f"naming codes before layer {layer}: step {step}/{steps} naming loss {loss.item():.3f} "
                f"other answers' KL {keep.item():.4f} ({time.time() - started:.0f} s)")
    after = accuracy(val, codes().detach())
    log(f"naming codes before layer {layer}: text-only 2-shot naming episodes with the validation names right "
        f"{before:.3f} without codes → {after:.3f} with them (norm ≤ {cap} × the states' median, {limit:.0f})")
    table = codes().detach()
    return {o: table[i] for i, o in enumerate(objects)}


# The answers the runtime chooses between, per kind; it decides on the first
# token where they differ: the only one of " yes"/" no", a count's digit.
CHOICES = {"presence0": (" yes", " no"), "count0": tuple(f" {c}" for c in range(4)), "motion0": (" yes", " no"),
           "change0": (" yes", " no"), "presence2": (" yes", " no")}


def answer_log_likelihood(model, tokens, lengths, media_of, target, feats):
    """Per row, the log-likelihood of its answer's tokens (as the runtime
    scores a choice: the whole continuation)."""
    hidden = model(tokens, lengths, media_of, feats)
    out = []
    for i in range(tokens.shape[0]):
        rows = (target[i] != -100).nonzero()[:, 0]
        logp = torch.log_softmax(model.lm.logits(hidden[i, rows]).float(), -1)
        out.append(logp[torch.arange(len(rows)), target[i, rows]].sum().item())
    return np.array(out)


def evaluate(model, data, batches=3, size=16):
    """Per kind, the share of answers whose deciding token scores highest
    among the kind's choices (as the runtime scores them); naming episodes,
    whose choices are their examples' two names: the share whose right
    name's tokens are likelier than the other's (the runtime's choice; the
    names' token accuracy hid what place embeddings cost naming, f13e865:models/demo/EVAL.md)."""
    out = {}
    with torch.no_grad():
        for kind in KINDS:
            accs = []
            for _ in range(batches):
                tokens, lengths, media_of, target, feats, eps = data.batch(kind, size)
                if kind == "naming2":
                    right = answer_log_likelihood(model, tokens, lengths, media_of, target, feats)
                    other = [(m, shots, q, next(n for _, n in shots if n != a)) for m, shots, q, a in eps]
                    batch = data.collate(other)[:5]
                    # Their states below the blocks in one batched call, not one `vigil lm-states` per row.
                    model.lm.warm([batch[0][i, :n].tolist() for i, n in enumerate(batch[1])], model.layers[0])
                    wrong = answer_log_likelihood(model, *batch)
                    accs.append(float(np.mean(right > wrong)))
                    continue
                if kind not in CHOICES:
                    accs.append(loss_and_accuracy(model, tokens, lengths, media_of, target, feats)[1].mean().item())
                    continue
                choices = torch.tensor([data.plain(c)[-1] for c in CHOICES[kind]])
                hidden = model(tokens, lengths, media_of, feats)
                last = torch.tensor([(t != -100).nonzero()[-1].item() for t in target])
                logits = model.lm.logits(hidden[torch.arange(size), last])[:, choices]
                accs.append((choices[logits.argmax(-1)] == target[torch.arange(size), last]).float().mean().item())
            out[kind] = float(np.mean(accs))
    return out


def mix(naming_share, shares=None):
    """Each kind's share of the steps: KINDS (with `shares`, a
    --shares override, in their place), the 2-shot naming episodes given
    `naming_share` and the other kinds scaled to the rest."""
    base = {**KINDS, **(shares or {})}
    rest = sum(v for k, v in base.items() if k != "naming2")
    return np.array([naming_share if k == "naming2" else v * (1.0 - naming_share) / rest for k, v in base.items()])


def parse_shares(spec):
    """--shares KIND=SHARE,...: the kinds' shares that replace KINDS' (the
    others keep theirs; all but naming2, which --naming-share sets, are then
    scaled to what naming leaves). Raises ValueError saying what is wrong."""
    shares = {}
    for part in filter(None, (x.strip() for x in spec.split(","))):
        kind, sep, value = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in KINDS or kind == "naming2":
            raise ValueError(f"{part!r}: expected KIND=SHARE with KIND one of "
                             f"{', '.join(k for k in KINDS if k != 'naming2')} (naming2's is --naming-share)")
        try:
            share = float(value)
        except ValueError:
            raise ValueError(f"{part!r}: {value.strip()!r} is not a number") from None
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{part!r}: a share from 0 to 1")
        shares[kind] = share
    if not shares:
        raise ValueError("no KIND=SHARE given")
    if sum({**KINDS, **shares}[k] for k in KINDS if k != "naming2") <= 0:
        raise ValueError("every kind but naming2 at 0: nothing left to train the blocks on")
    return shares


class Reader:
    """A resampler and the ObjectHead trained on its tokens: what stage 1
    (pretrain, change_phase) trains."""

    def __init__(self, resampler, object_head, token_counter=None, token_count_weight=0.0):
        self.resampler, self.object_head = resampler, object_head
        self.token_counter, self.token_count_weight = token_counter, token_count_weight

    def parameters(self):
        """What stage 1 trains."""
        out = list(self.resampler.parameters()) + list(self.object_head.parameters())
        return out + (list(self.token_counter.parameters()) if self.token_counter is not None else [])

    def counted(self, loss, media, targets):
        """`loss` plus the token counter's, weighed (nothing without one)."""
        if self.token_counter is None:
            return loss
        return loss + self.token_count_weight * self.token_counter.loss(media, targets,
                                                                        self.object_head.count_weights)[0]


def stage_one(reader, option, places, data, val, args):
    """Stage 1 of one reader: loaded from the file of `option` (--stage1,
    --where-stage1) when it exists, else trained (and written there if
    given)."""
    path = getattr(args, option[2:].replace("-", "_"))
    if path and os.path.exists(path):
        state = torch.load(path)
        trained_with = state.get("null_weight", 0.0)
        if trained_with != args.null_weight:
            raise SystemExit(f"{option} {path} was trained with --null-weight {trained_with}, this run asks for "
                             f"{args.null_weight}: pass the same, or another stage-1 file")
        if not places and "place_embs" in state["resampler"] and not state["resampler"]["place_embs"].any():
            # A --late-places stage 1: its place embeddings were 0 and
            # frozen throughout, so it is a stage 1 without them (and
            # still one for another --late-places run).
            del state["resampler"]["place_embs"]
        has_places = "place_embs" in state["resampler"]
        if has_places != places:
            fix = ("--where-stage1 takes a stage 1 trained with --place-embeddings" if option == "--where-stage1"
                   else "pass the same --place-embeddings as when it was trained, or another file")
            raise SystemExit(f"{option} {path} was trained {'with' if has_places else 'without'} place "
                             f"embeddings, this run needs one {'with' if places else 'without'}: {fix}")
        reader.resampler.load_state_dict(state["resampler"])
        reader.object_head.load_state_dict(state["head"])
        # Files written before the change phase existed hold the first
        # two phases only: the change phase then runs on top.
        done = state.get("change_steps", 0)
        log(f"stage 1 loaded from {path}" + ("" if done else " (without a change phase)"))
    else:
        pretrain(reader, data, val, args)
        done = 0
    if args.balance_steps:
        # The change phase and stage 2's every-object loss weigh counts
        # as the balancing phase did.
        reader.object_head.count_weights = torch.tensor(COUNT_WEIGHTS)
    if args.change_steps and not done:
        change_phase(reader, data, val, args)
    if path and not os.path.exists(path):
        torch.save({"resampler": reader.resampler.state_dict(), "head": reader.object_head.state_dict(),
                    "change_steps": args.change_steps, "null_weight": args.null_weight,
                    "token_count_weight": args.token_count_weight}, path)


def train(args):
    torch.manual_seed(args.seed)
    # Matmuls run on OpenBLAS's own threads (OPENBLAS_NUM_THREADS, set by
    # scripts/demo-model.sh); torch's OpenMP threads on top of them only
    # fight over the 2 cores (measured: 2.3 s/step vs 1.4 s/step).
    torch.set_num_threads(1)
    use_feature_width(args.prep)
    log(f"feature width {FEATURE_DIM}")
    tok = json.load(open(f"{args.prep}/tokens.json"))
    lm = FrozenLM(f"{args.prep}/lm.npz", tok["lm"])
    if args.vigil:
        lm.use_runtime(args.vigil, args.lm, args.threads)
    model = Model(lm, args.seed, places=args.place_embeddings, diffs=args.frame_diffs, state_noise=args.state_noise,
                  runtime_share=args.runtime_share if args.vigil else 0.0, late_places=args.late_places,
                  place_dropout=args.place_dropout, where=args.where,
                  layers=LAYERS + ([args.naming_layer] if args.naming_layer is not None else []),
                  place_latents=args.place_latents)
    data = Data(args.prep, "train", args.seed)
    val = Data(args.prep, "val", args.seed + 1)
    if args.pretrain_steps or args.object_weight:
        model.object_head = ObjectHead(len(data.objects), torch.Generator().manual_seed(args.seed + 2),
                                       null_weight=args.null_weight)
        if model.where is not None:
            model.where_head = ObjectHead(len(data.objects), torch.Generator().manual_seed(args.seed + 4),
                                          null_weight=args.null_weight)
    if args.pretrain_steps:
        counter = None
        if args.token_count_weight:
            # Its own generator, drawn from nothing else: the other weights
            # start as without it.
            counter = TokenCounter(len(data.objects), torch.Generator().manual_seed(args.seed + 6))
        stage_one(Reader(model.resampler, model.object_head, counter, args.token_count_weight), "--stage1",
                  args.place_embeddings, data, val, args)
        if model.where is not None:
            log("--where: stage 1 of the second resampler (place embeddings)")
            stage_one(Reader(model.where, model.where_head), "--where-stage1", True, data, val, args)
        if args.stage1_only:
            log(f"stage 1 written to {args.stage1} (--stage1-only): stage 2 runs in a process that loads it")
            return None
        words, scale = None, args.naming_scale
        if args.naming_codes:
            words, scale = naming_codes(lm, data, val, args.naming_layer, args.naming_codes, seed=args.seed), 1.0
        elif args.naming_init:
            words = word_states(lm, Prompts(args.vigil, args.lm), args.naming_layer)
        init_blocks(model, data, val, scale=args.init_scale, noise=args.state_noise,
                    count_read_steps=args.count_read_steps, naming_words=words, naming_scale=scale,
                    naming_codes=bool(args.naming_codes))
        if args.naming_frozen:
            model.freeze_naming(args.naming_layer)
            below = (f"; layers {args.naming_layer}-{model.frozen_below - 1} run forward only"
                     if model.frozen_below is not None else "")
            log(f"block before layer {args.naming_layer}: frozen as started, attention gate opened over the first "
                f"{NAMING_RAMP} steps (--naming-frozen){below}")
    if args.late_places:
        model.resampler.place_embs.requires_grad_(True)
        log("place embeddings: learnt from here on (--late-places)")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    is_gate = lambda n: n.endswith("_gate")  # noqa: E731
    is_matrix = lambda n, p: p.ndim >= 2 and "latents" not in n and "frame_embs" not in n  # noqa: E731
    # Blocks started by init_blocks: their fitted query/key/value maps have
    # entries of 0.002-0.07, which Adam's ~lr-sized steps (taken at full
    # size even while the gates, and so the gradients, are near 0) turned
    # to noise within a few dozen steps (measured: the gates, though their
    # gradient pointed open at the start, stayed at 0 for 200 steps).
    # (The ObjectHead's keys and values too. Of --naming-layer's block
    # only the value map is fitted, by --naming-init; without it, none.)
    unfitted = {f"blocks.{layer}.{m}" for layer in model.layers if layer not in BLOCK_ROLES
                for m in ("qk" if args.naming_init else "qkv")}
    is_fitted = lambda n: (bool(args.pretrain_steps) and n.split(".")[-1] in ("q", "k", "v")  # noqa: E731
                           and n not in unfitted)
    groups = [
        {"params": [p for n, p in named if is_matrix(n, p) and not is_fitted(n)], "weight_decay": 0.01, "lr_mult": 1.0},
        {"params": [p for n, p in named if is_fitted(n)], "weight_decay": 0.0, "lr_mult": FITTED_LR_MULT},
        {"params": [p for n, p in named if not is_matrix(n, p) and not is_gate(n)], "weight_decay": 0.0, "lr_mult": 1.0},
        # The gates start at 0 (Flamingo) and everything behind them learns
        # only as fast as they open: a 10x rate lets a short CPU run open them.
        {"params": [p for n, p in named if is_gate(n)], "weight_decay": 0.0, "lr_mult": GATE_LR_MULT},
    ]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98))
    started = time.time()
    sequences = []
    for kind in KINDS:
        for _ in range(3000 if kind.endswith("2") else 600):
            _, shots, q, a = data.episode(kind)
            sequences.append(data.sequence(shots, q, a)[0])
    n = lm.warm(sequences, model.layers[0])
    log(f"cached the hidden states below layer {model.layers[0]} of {n} token sequences in {time.time() - started:.0f} s")
    if lm.runtime:
        mean, worst = lm.runtime_gap(model.layers[0])
        log(f"the runtime's states differ from the f32 pass's by {mean:.1%} of their norm (largest {worst:.1%})")
        if mean > 0.2:
            # Quantization moves them by a few percent; this much means
            # another model (or another tokenizer's ids).
            raise SystemExit(f"--lm {args.lm}: its hidden states are {mean:.0%} away from those of the LM "
                             f"`prepare` dequantized into {args.prep}/lm.npz: pass the same GGUF")
    kinds, probs = list(KINDS), mix(args.naming_share, args.shares)
    rng = np.random.default_rng(args.seed)
    started, history = time.time(), []
    n_params = sum(p.numel() for p in model.parameters())
    log(f"training {n_params / 1e6:.1f}M parameters (blocks before layers {model.layers}), {args.steps} steps × {args.batch}")
    for step in range(1, args.steps + 1):
        warm = min(1.0, step / args.warmup)
        lr = args.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_mult"]
        if model.naming_layer is not None:
            model.open_naming(min(1.0, step / NAMING_RAMP))
        kind = kinds[rng.choice(len(kinds), p=probs)]
        batch = data.batch(kind, args.batch)
        loss, acc = loss_and_accuracy(model, *batch[:5])
        aux_value = float("nan")
        if args.object_weight > 0:
            aux, _ = object_loss(model, data, batch[5])
            aux_value = aux.item()
            loss = loss + args.object_weight * aux
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append((kind, loss.item(), acc.mean().item(), aux_value))
        if step % args.log_every == 0 or step == args.steps:
            spent = time.time() - started
            recent = history[-args.log_every:]
            gates = " ".join(f"{torch.tanh(b.attn_gate).item():+.2f}/{torch.tanh(b.ffn_gate).item():+.2f}"
                             for b in model.blocks.values())
            aux_note = f"objects {np.nanmean([h[3] for h in recent]):.3f} " if args.object_weight > 0 else ""
            log(f"step {step}/{args.steps} loss {np.mean([h[1] for h in recent]):.3f} {aux_note}"
                f"acc {np.mean([h[2] for h in recent]):.3f} lr {lr:.2e} gates {gates} "
                f"{spent / step:.2f} s/step, ETA {spent / step * (args.steps - step) / 60:.1f} min")
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            accuracy = ", ".join(f"{k} {v:.3f}" for k, v in evaluate(model, val).items())
            log(f"validation accuracy (the runtime's choice): {accuracy}")
            model.train()
            save(model, args, step, time.time() - started)
    return model


def save(model, args, step, seconds):
    weights = {f"resampler.{k}": v for k, v in model.resampler.export().items()}
    if model.where is not None:
        weights.update({f"resampler.where.{k}": v for k, v in model.where.export().items()})
    for layer, block in model.blocks.items():
        weights.update({f"xattn.{layer}.{k}": v for k, v in block.export().items()})
    config = {
        "layers": model.layers, "heads": HEADS, "head_dim": HEAD_DIM, "ff_length": FF,
        "resampler": {"feature_dim": FEATURE_DIM, "width": R_WIDTH, "depth": R_DEPTH, "heads": R_HEADS,
                      "head_dim": R_HEAD_DIM, "n_latents": R_LATENTS, "max_frames": R_FRAMES, "ff_mult": R_FF_MULT,
                      **({"where_width": R_WIDTH} if model.where is not None else {})},
        "training": {"steps": step, "batch": args.batch, "lr": args.lr, "warmup": args.warmup, "seed": args.seed,
                     "threads": args.threads, "seconds": round(seconds),
                     "kinds": dict(zip(KINDS, mix(args.naming_share, args.shares).round(4).tolist())),
                     "gate_lr_mult": GATE_LR_MULT,
                     "pretrain_steps": args.pretrain_steps, "pretrain_lr": args.pretrain_lr,
                     "pretrain_decay": args.pretrain_decay,
                     "balance_steps": args.balance_steps, "balance_lr": args.balance_lr,
                     "change_steps": args.change_steps, "change_lr": args.change_lr,
                     "null_weight": args.null_weight,
                     "place_embeddings": args.place_embeddings, "late_places": args.late_places,
                     "place_dropout": args.place_dropout, "where": args.where, "frame_diffs": args.frame_diffs,
                     "place_latents": args.place_latents,
                     "state_noise": args.state_noise,
                     "runtime_share": args.runtime_share if args.vigil else 0.0,
                     "count_weights": COUNT_WEIGHTS if args.balance_steps else None,
                     "object_weight": args.object_weight,
                     "naming_layer": args.naming_layer, "naming_init": args.naming_init,
                     "naming_scale": args.naming_scale if args.naming_init else None,
                     "naming_frozen": args.naming_frozen, "naming_codes": args.naming_codes,
                     "count_read_steps": args.count_read_steps,
                     "torch": torch.__version__},
    }
    tmp = args.out + ".part.npz"
    np.savez(tmp, config=np.array(json.dumps(config)), **weights)
    os.replace(tmp, args.out)


def read_weights(path):
    """An .npz that `save` wrote, or a clear exit."""
    try:
        w = np.load(path)
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: not an .npz of trained weights ({e})")
    if not hasattr(w, "files"):
        raise SystemExit(f"{path}: not an .npz of trained weights (a single array)")
    return w


def load_weights(model, w, path):
    """The trained parts of `model` from weights `save` wrote (read_weights;
    the inverse of the exports; place embeddings come back added into the
    frame embeddings, as exported)."""
    missing = [n for n in ("resampler.latents", f"xattn.{LAYERS[0]}.attn_q.weight") if n not in w]
    if missing:
        raise SystemExit(f"{path}: not weights train.py saved (no {', '.join(missing)})")
    put = lambda param, name: param.data.copy_(torch.from_numpy(w[name]).reshape(param.shape))  # noqa: E731
    for r, prefix in ((model.resampler, "resampler."), (model.where, "resampler.where.")):
        if r is None:
            continue
        r.frame_embs = nn.Parameter(torch.from_numpy(w[prefix + "frame_embs"]))
        r.place_embs = None
        for param, name in ((r.proj_w, "proj_in.weight"), (r.proj_b, "proj_in.bias"), (r.latents, "latents"),
                            (r.norm_w, "norm.weight"), (r.norm_b, "norm.bias")):
            put(param, prefix + name)
        if r.diff_mix is not None:
            put(r.diff_mix, prefix + "diff_mix.weight")
        if r.place_norm_w is not None:
            put(r.place_norm_w, prefix + "place_latents.norm.weight")
            put(r.place_norm_b, prefix + "place_latents.norm.bias")
        for i, layer in enumerate(r.layers):
            for name, param in layer.items():
                put(param, f"{prefix}layers.{i}." + name.replace("__", "."))
    for layer, block in model.blocks.items():
        for attr, name in XAttn.FILE_NAMES.items():
            put(getattr(block, attr), f"xattn.{layer}.{name}")


def decide(model, data, items, muted=None):
    """Per item, the deciding logits (yes − no, or the digits 0-3) of a
    family's questions asked of their own media, 16 at a time; `muted`: a
    block whose gates are held at 0 meanwhile."""
    yes, no = data.plain(" yes")[-1], data.plain(" no")[-1]
    digits = [data.plain(f" {c}")[-1] for c in range(4)]
    block = model.blocks[muted] if muted else None
    gates = (block.attn_gate.data.clone(), block.ffn_gate.data.clone()) if block else None
    out = []
    try:
        if block:
            block.attn_gate.data.zero_()
            block.ffn_gate.data.zero_()
        for i in range(0, len(items), 16):
            group = items[i : i + 16]
            tokens, lengths, media_of, target, feats, _ = data.collate(
                [([it["rows"]], [], it["question"], it["answer"]) for it in group])
            with torch.no_grad():
                hidden = model(tokens, lengths, media_of, feats)
            for j, it in enumerate(group):
                # The answer's last token is the deciding one (a count's
                # digit comes after " "), as `evaluate` reads it.
                last = (target[j] != -100).nonzero()[-1].item()
                logits = model.lm.logits(hidden[j, last][None])[0]
                out.append(logits[digits].numpy() if it["family"] == "count" else (logits[yes] - logits[no]).item())
    finally:
        if block:
            block.attn_gate.data.copy_(gates[0])
            block.ffn_gate.data.copy_(gates[1])
    return out


def validate(args):
    """Every validation question of the four families through trained
    weights (--validate): accuracy per family (change per question role),
    and with --contributions what each block adds to the yes − no logit of
    the items whose answer is yes and of those whose answer is no (its
    gates held at 0 vs open): a block that reads its evidence separates the
    two, one that only leaks moves both."""
    torch.set_num_threads(1)
    use_feature_width(args.prep)
    tok = json.load(open(f"{args.prep}/tokens.json"))
    lm = FrozenLM(f"{args.prep}/lm.npz", tok["lm"])
    if args.vigil:
        lm.use_runtime(args.vigil, args.lm, args.threads)
    weights = read_weights(args.validate)
    layers = sorted({int(n.split(".")[1]) for n in weights.files if n.startswith("xattn.")})
    model = Model(lm, args.seed, diffs="resampler.diff_mix.weight" in weights, where="resampler.where.latents" in weights,
                  layers=layers or LAYERS, place_latents="resampler.place_latents.norm.weight" in weights)
    load_weights(model, weights, args.validate)
    model.eval()
    val = Data(args.prep, "val", args.seed + 1)
    states = "the runtime's" if args.vigil else "f32"
    # Every prompt's states below the first block at once (one batched
    # pass, one `vigil lm-states` call), not one by one.
    lm.warm([val.sequence([], it["question"], it["answer"])[0]
             for family in ("presence", "count", "motion", "change") for it in val.by_family[family]], model.layers[0])
    for family in ("presence", "count", "motion", "change"):
        items = val.by_family[family]
        said = decide(model, val, items)
        if family == "count":
            right = np.array([int(np.argmax(s)) == int(it["answer"]) for s, it in zip(said, items)])
            log(f"{family}: {right.mean():.3f} of {len(items)} ({states} states)")
            continue
        said, yes = np.array(said), np.array([it["answer"] == "yes" for it in items])
        roles = np.array([_role(it) for it in items])
        by_role = "" if family != "change" else " (" + ", ".join(
            f"{r} {np.mean((said[roles == r] > 0) == yes[roles == r]):.3f}" for r in ("appear", "leave")) + ")"
        log(f"{family}: {np.mean((said > 0) == yes):.3f} of {len(items)}{by_role} ({states} states)")
        if args.contributions:
            # Change questions per role: a leave question is the appear
            # block's "not asked" position.
            groups = {r: roles == r for r in ("appear", "leave")} if family == "change" else {"": roles == roles}
            for layer in model.blocks:
                d = said - np.array(decide(model, val, items, muted=layer))
                adds = "; ".join(f"{r + ': ' if r else ''}{d[m & yes].mean():+.2f} on yes items, "
                                 f"{d[m & ~yes].mean():+.2f} on no" for r, m in groups.items())
                log(f"  block before layer {layer} adds {adds}")


def check(args):
    """This forward pass vs the numpy reference on random trained parts:
    prints the largest logit difference (fp32, no autocast)."""
    torch.set_num_threads(args.threads)
    use_feature_width(args.prep)
    tok = json.load(open(f"{args.prep}/tokens.json"))
    lm = FrozenLM(f"{args.prep}/lm.npz", tok["lm"])
    model = Model(lm, 0)
    for b in model.blocks.values():
        nn.init.constant_(b.attn_gate, 0.5)
        nn.init.constant_(b.ffn_gate, 0.5)
    data = Data(args.prep, "val", 0)
    tokens, _, media_of, target, feats, _ = data.batch("naming2", 1)
    with torch.no_grad():
        media = model.resampler(feats.flatten(0, 1))
        x = lm.embd[tokens]
        tables = lm.rope_tables(tokens.shape[1])
        for il in range(lm.c["n_layer"]):
            if il in LAYERS:
                x = model.blocks[str(il)](x, media[None], media_of)
            x = lm.layer(il, x, tables)
        logits = lm.logits(x)[0].numpy()
    np.savez(args.out, tokens=tokens[0].numpy(), media_of=media_of[0].numpy(), visual=media.numpy(),
             logits=logits, **{f"xattn.{layer}.{k}": v for layer, b in model.blocks.items() for k, v in b.export().items()})
    log(f"wrote {args.out}: compare with `vigil_kit.demo reference --check {args.out}`")


def main():
    p = argparse.ArgumentParser(prog="vigil_kit.demo.train")
    p.add_argument("--prep", required=True, help="the folder `vigil_kit.demo prepare` wrote")
    p.add_argument("--out", help="the trained weights (.npz; with --check, the check file)")
    p.add_argument("--steps", type=int, default=1400, help="steps of the second stage (the blocks on the answers)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--pretrain-steps", type=int, default=2000,
                   help="stage 1: steps of the resampler alone on every frame's objects (0: none, blocks start random); "
                        "--balance-steps follow them")
    p.add_argument("--pretrain-lr", type=float, default=1e-3)
    p.add_argument("--pretrain-decay", action=argparse.BooleanOptionalAction, default=True,
                   help="stage 1's rate falls (cosine) to a tenth by its end, as stage 2's does")
    p.add_argument("--place-embeddings", action=argparse.BooleanOptionalAction, default=True,
                   help="the resampler also learns where in the 7×7 grid each feature sits (Resampler)")
    p.add_argument("--late-places", action="store_true",
                   help="with --place-embeddings: they start at 0 and learn only in stage 2 (stage 1 as without them)")
    p.add_argument("--place-dropout", type=float, default=0.0,
                   help="with --place-embeddings: stage 2 leaves each media's out with this probability (Model)")
    p.add_argument("--where", action="store_true",
                   help="a second resampler, with place embeddings, beside the first (which has none); the count "
                        "block reads it (Model, WHERE_ROLES)")
    p.add_argument("--where-stage1", help="with --where: the second resampler's stage 1, as --stage1 is the first's")
    p.add_argument("--frame-diffs", action=argparse.BooleanOptionalAction, default=True,
                   help="the resampler also sees each grid place's change since the previous frame (Resampler)")
    p.add_argument("--place-latents", action="store_true",
                   help="latent i < 49 starts with grid place i's feature before reading the media (Resampler; "
                        "measured held out: count 0.71 against 0.74 without, not adopted; f13e865:models/demo/EVAL.md, PL)")
    p.add_argument("--state-noise", type=float, default=0.04,
                   help="relative noise on the hidden states entering each block while training, and on those the "
                        "blocks' query maps are fitted on (state_noise; the runtime's LM differs by ~0.03)")
    p.add_argument("--balance-steps", type=int, default=400,
                   help="stage 1's second phase: steps more with the count classes weighted (COUNT_WEIGHTS; 0: none)")
    p.add_argument("--balance-lr", type=float, default=5e-4)
    p.add_argument("--token-count-weight", type=float, default=0.0,
                   help="stage 1 also trains a summing count reader on the tokens, its loss weighed so "
                        "(TokenCounter; 0: none)")
    p.add_argument("--change-steps", type=int, default=400,
                   help="stage 1's last phase: steps more on the 'something appeared / left' read-outs that change "
                        "questions ask for (CHANGE_PHASE; 0: none)")
    p.add_argument("--change-lr", type=float, default=3e-4)
    p.add_argument("--null-weight", type=float, default=2.0,
                   help="stage 1 (and the every-object loss after it): weight of the loss that teaches ObjectHead's "
                        "null query to read nothing (ObjectHead.null_leak; 0: no null query)")
    p.add_argument("--naming-share", type=float, default=NAMING_SHARE,
                   help="share of stage 2's steps spent on 2-shot naming episodes (NAMING_SHARE; the other kinds "
                        "keep KINDS' ratios)")
    p.add_argument("--shares", metavar="KIND=SHARE,...",
                   help="stage 2's share of steps per kind in place of KINDS' (e.g. count0=0.3); the rest keep theirs")
    p.add_argument("--object-weight", type=float, default=0.5,
                   help="weight of the every-object loss on the resampler while the blocks train (0: off)")
    p.add_argument("--stage1", help="stage 1's result: loaded when the file exists, else written after stage 1 "
                                    "(to try second stages without redoing the first)")
    p.add_argument("--stage1-only", action="store_true",
                   help="train stage 1, write it to --stage1 FILE and stop; a later run with the same --stage1 FILE "
                        "runs stage 2 from its own seeds, as one loading that file always does (scripts/demo-model.sh "
                        "train: the committed model's stage 2 is reproducible from the saved stage 1)")
    p.add_argument("--naming-layer", type=int, default=None,
                   help="one more block, before this LM layer, that writes what the picture shows for the layers "
                        "above to name (NAMING_LAYER; with --naming-codes, codes learnt for those layers; without, "
                        "the object word's state, which only lower layers match: naming_probe; 0: none)")
    p.add_argument("--naming-init", action=argparse.BooleanOptionalAction, default=True,
                   help="with --naming-layer: start that block writing the state of the picture's object word at "
                        "its layer (init_naming_block; needs --vigil and --lm for the words' tokens); "
                        "--no-naming-init: at random")
    p.add_argument("--naming-scale", type=float, default=0.5,
                   help="with --naming-init: the written state as a multiple of the word's own")
    p.add_argument("--naming-frozen", action=argparse.BooleanOptionalAction, default=None,
                   help="with --naming-init: that block is not trained (its attention gate opened to tanh 1 over "
                        f"the first {NAMING_RAMP} steps, FFN shut); below the first block, no backward pass then runs "
                        "below the second (Model.freeze_naming)")
    p.add_argument("--naming-codes", type=int, default=None, metavar="STEPS",
                   help="with --naming-init: start --naming-layer's block writing per-object codes learnt this many "
                        "steps so that the frozen LM layers above it answer text-only naming episodes "
                        "(naming_codes; for a block above the first, e.g. --naming-layer 28); 0: the word states")
    p.add_argument("--count-read-steps", type=int, default=None,
                   help="the count block starts from a copy of stage 1's head refitted this many steps on counts "
                        "alone (count_reader; 0: from stage 1's head as it is)")
    p.add_argument("--init-scale", type=float, default=30.0,
                   help="how far one unit of a started block's evidence moves the residual (init_blocks)")
    p.add_argument("--vigil", help="the runtime's binary: with --lm, stage 2 also trains on the runtime's own hidden "
                                   "states entering the first block (`vigil lm-states`; --runtime-share)")
    p.add_argument("--lm", help="the GGUF the runtime answers with (the one `prepare` dequantized)")
    p.add_argument("--runtime-share", type=float, default=0.5,
                   help="with --vigil: share of stage 2's rows whose states come from the runtime (the rest: the "
                        "f32 pass); validation always uses the runtime's")
    p.add_argument("--check", action="store_true", help="write a forward-pass check file instead of training")
    p.add_argument("--validate", metavar="WEIGHTS",
                   help="instead of training: every validation question through these trained weights (.npz), "
                        "accuracy per family (with --vigil/--lm on the runtime's states, else f32)")
    p.add_argument("--contributions", action="store_true",
                   help="with --validate: what each block adds to the yes − no logit of yes and of no items")
    args = p.parse_args()
    if not 0.0 <= args.naming_share < 1.0:
        p.error(f"--naming-share {args.naming_share}: a share of the steps, from 0 up to (not including) 1")
    if args.shares is not None:
        try:
            args.shares = parse_shares(args.shares)
        except ValueError as e:
            p.error(f"--shares: {e}")
    if (args.late_places or args.place_dropout) and not args.place_embeddings:
        p.error("--late-places and --place-dropout go with --place-embeddings")
    if args.where and args.place_embeddings:
        p.error("--where gives place embeddings to a second resampler only: pass --no-place-embeddings")
    if args.where and not args.pretrain_steps:
        p.error("--where: the blocks start from stage 1's heads (init_blocks): --pretrain-steps must be > 0")
    # The recipe's naming block and count read start from stage 1
    # (init_blocks) and the naming block from the runtime's tokens
    # (--naming-init): on by default where those are there, off where
    # they are not; asked for explicitly without them, an error below.
    if args.naming_layer is None:
        args.naming_layer = NAMING_LAYER if args.pretrain_steps and args.naming_init else 0
    if args.naming_codes is None:
        args.naming_codes = NAMING_CODE_STEPS if args.naming_layer and args.naming_init else 0
    if args.naming_frozen is None:
        args.naming_frozen = bool(args.naming_layer and args.naming_init)
    if args.count_read_steps is None:
        args.count_read_steps = COUNT_READ_STEPS if args.pretrain_steps else 0
    if not 0 <= args.naming_layer < N_LM_LAYERS or args.naming_layer in LAYERS:
        p.error(f"--naming-layer {args.naming_layer}: an LM layer from 1 to {N_LM_LAYERS - 1} without a block "
                f"already (blocks: {LAYERS}); or 0 for none")
    if args.naming_codes < 0:
        p.error(f"--naming-codes {args.naming_codes}: a number of steps, 0 (the word states) or more")
    if args.naming_codes and not args.naming_layer:
        p.error("--naming-codes starts --naming-layer's block: pass --naming-layer N too (28 measured)")
    args.naming_layer = args.naming_layer or None
    args.naming_init = args.naming_init and args.naming_layer is not None
    if args.naming_init and not (args.vigil and args.lm) and not (args.check or args.validate):
        p.error("--naming-init starts --naming-layer's block from the object words' states, tokenized by the "
                "runtime: pass --vigil and --lm (or --no-naming-init, or --naming-layer 0)")
    if args.naming_init and not args.pretrain_steps:
        p.error("--naming-init fits on stage 1's resampler (init_blocks): --pretrain-steps must be > 0")
    if args.naming_frozen and not args.naming_init:
        p.error("--naming-frozen keeps --naming-layer's block as --naming-init starts it: pass --naming-layer N "
                "with --naming-init (a block frozen at random would write noise)")
    if args.naming_scale <= 0:
        p.error(f"--naming-scale {args.naming_scale}: a multiple of the word's state, above 0 (0.5 measured best)")
    if args.count_read_steps < 0:
        p.error(f"--count-read-steps {args.count_read_steps}: a number of steps, 0 (off) or more")
    if args.count_read_steps and not args.pretrain_steps:
        p.error("--count-read-steps refits stage 1's head (init_blocks): --pretrain-steps must be > 0")
    if args.where_stage1 and not args.where:
        p.error("--where-stage1 goes with --where")
    if not 0.0 <= args.place_dropout < 1.0:
        p.error(f"--place-dropout {args.place_dropout}: a probability, from 0 up to (not including) 1")
    if bool(args.vigil) != bool(args.lm):
        p.error("--vigil and --lm go together: the runtime's binary and the GGUF it answers with")
    if args.vigil and not (os.path.isfile(args.vigil) and os.access(args.vigil, os.X_OK)):
        p.error(f"--vigil {args.vigil}: not an executable file (build it: make release)")
    if args.lm and not os.path.isfile(args.lm):
        p.error(f"--lm {args.lm}: no such file (fetch it: make models)")
    if not 0.0 <= args.runtime_share <= 1.0:
        p.error(f"--runtime-share {args.runtime_share}: a share of the rows, from 0 to 1")
    if args.stage1_only:
        if not args.pretrain_steps:
            p.error("--stage1-only trains stage 1: --pretrain-steps must be > 0")
        if not args.stage1:
            p.error("--stage1-only writes stage 1 to --stage1 FILE: pass --stage1 FILE")
        for option, path in (("--stage1", args.stage1), ("--where-stage1", args.where_stage1)):
            if path and os.path.exists(path):
                p.error(f"--stage1-only: {option} {path} exists and would be loaded, not trained: remove it, "
                        "or drop --stage1-only to run stage 2 from it")
        if args.where and not args.where_stage1:
            p.error("--stage1-only with --where: pass --where-stage1 FILE for the second resampler's stage 1")
        if args.check or args.validate:
            p.error("--stage1-only trains: it does not go with --check or --validate")
    elif not args.out and not args.validate:
        p.error("--out is needed: the file to write the trained weights (or the check) to")
    if args.validate and not os.path.isfile(args.validate):
        p.error(f"--validate {args.validate}: no such file")
    if args.contributions and not args.validate:
        p.error("--contributions goes with --validate WEIGHTS")
    if args.check:
        check(args)
    elif args.validate:
        validate(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
