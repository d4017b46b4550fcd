"""The trained parts in torch (the kit's reference math: xattn.py for the
blocks, resampler.py for the resampler): the gated cross-attention block,
the Perceiver Resampler, the model that runs them with the frozen LM, and
stage 1's ObjectHead."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import recipe
from .recipe import (FF, HEAD_DIM, HEADS, LAYERS, N_PLACES, R_DEPTH, R_FF_MULT, R_FRAMES, R_HEAD_DIM, R_HEADS,
                     R_LATENTS, R_WIDTH)


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

    def __init__(self, gen, places=False, diffs=False):
        super().__init__()
        W, inner = R_WIDTH, R_HEADS * R_HEAD_DIM

        def lin(out, inp):
            return nn.Parameter(torch.randn(out, inp, generator=gen) * inp**-0.5)

        self.proj_w, self.proj_b = lin(W, recipe.FEATURE_DIM), nn.Parameter(torch.zeros(W))
        self.latents = nn.Parameter(torch.randn(R_LATENTS, W, generator=gen))
        self.frame_embs = nn.Parameter(torch.randn(R_FRAMES, 1, W, generator=gen) * 0.5)
        # With `places` (the recipe's): where in the 7×7 grid a feature
        # sits. Flamingo adds only temporal embeddings (its NFNet features
        # carry place channel-wise). Without them, after stage 1 the
        # ObjectHead's "is it moving?" read-out of the asked object was at
        # chance on validation clips (0.50), with them (and the balancing
        # phase) 0.64. Exported added into frame_embs ([frames, 49, W]): the
        # ONNX graph and the runtime are the same either way.
        self.place_embs = nn.Parameter(torch.randn(1, N_PLACES, W, generator=gen) * 0.5) if places else None
        # With `diffs` (the recipe's): each projected feature also gets
        # diff_mix @ (itself - the same grid place one frame earlier).
        # Whether an object moved, appeared or left is a change at a place
        # between frames; without place embeddings the resampler sees each
        # frame as a bag of features, in which a moved object looks the same
        # as one that stayed. The difference is 0 for a still and for a
        # clip's first frame, so stills are resampled exactly as without
        # it; starts at 0 (no effect) and draws nothing from `gen`.
        self.diff_mix = nn.Parameter(torch.zeros(W, W)) if diffs else None
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

    def forward(self, feats, trace=None):
        """feats [N, T, 49, F] → tokens [N, 64, W]. trace: a dict that gets
        the first layer's normalised media and each layer's latents
        (count_probe)."""
        N, T, n, _ = feats.shape
        W = R_WIDTH
        x = F.linear(feats, self.proj_w, self.proj_b).float()
        if self.diff_mix is not None:
            before = torch.cat([x[:, :1], x[:, :-1]], dim=1)
            x = x + F.linear(x - before, self.diff_mix)
        lat = self.latents[None].expand(N, -1, -1)
        x = x + self.embeddings()[:T][None]
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
    def __init__(self, lm, seed, places=False, diffs=False, state_noise=0.0, runtime_share=0.0, layers=LAYERS):
        super().__init__()
        # The LM layers with a block before them: LAYERS, and with
        # --naming-layer one more (init_naming_block).
        self.layers = sorted(layers)
        gen = torch.Generator().manual_seed(seed)
        self.lm = lm
        self.state_noise = state_noise
        self.runtime_share = runtime_share
        self.resampler = Resampler(gen, places, diffs)
        self.blocks = nn.ModuleDict({str(layer): XAttn(lm.c["n_embd"], R_WIDTH, gen) for layer in self.layers})
        # freeze_naming: the naming block is not trained; when it is the
        # lowest, the layers below the second block run without gradients.
        self.frozen_below = None
        self.naming_layer = None

    def freeze_naming(self, layer):
        """--naming-layer's block keeps the maps it was started with and
        its FFN shut; its attention gate is not learnt but opened on a
        schedule (open_naming) up to tanh = 1, where it writes what
        init_naming_block fitted. Were it the lowest block, the LM layers
        below the second block would then run forward only; above the
        first (layer 28) it costs nothing a step."""
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
        media = self.resampler(feats.flatten(0, 1)).view(B, M, R_LATENTS, R_WIDTH)
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
