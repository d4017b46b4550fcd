"""Stage 2: the blocks, started by init_blocks, trained on the answer
tokens (gates from 0 as in Flamingo) with the every-object loss kept on,
half the rows on the runtime's own hidden states; validation as the
runtime chooses."""

import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..frozen_lm import FrozenLM
from . import recipe
from .blocks import init_blocks
from .data import Data
from .modules import Model, ObjectHead
from .naming import naming_codes
from .recipe import BLOCK_ROLES, CHOICES, FITTED_LR_MULT, GATE_LR_MULT, KINDS, LAYERS, NAMING_RAMP, log
from .stage1 import stage_one
from .weights import mix, save


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
    return model.object_head.loss(media, targets)


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
    names' token accuracy hid what place embeddings cost naming)."""
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


def train(args):
    torch.manual_seed(args.seed)
    # Matmuls run on OpenBLAS's own threads (OPENBLAS_NUM_THREADS, set by
    # scripts/demo-model.sh); torch's OpenMP threads on top of them only
    # fight over the 2 cores (measured: 2.3 s/step vs 1.4 s/step).
    torch.set_num_threads(1)
    recipe.use_feature_width(args.prep)
    log(f"feature width {recipe.FEATURE_DIM}")
    tok = json.load(open(f"{args.prep}/tokens.json"))
    lm = FrozenLM(f"{args.prep}/lm.npz", tok["lm"])
    if args.vigil:
        lm.use_runtime(args.vigil, args.lm, args.threads)
    model = Model(lm, args.seed, places=True, diffs=True, state_noise=args.state_noise,
                  runtime_share=args.runtime_share if args.vigil else 0.0,
                  layers=LAYERS + ([args.naming_layer] if args.naming_layer is not None else []))
    data = Data(args.prep, "train", args.seed)
    val = Data(args.prep, "val", args.seed + 1)
    model.object_head = ObjectHead(len(data.objects), torch.Generator().manual_seed(args.seed + 2),
                                   null_weight=args.null_weight)
    stage_one(model, data, val, args)
    if args.stage1_only:
        log(f"stage 1 written to {args.stage1} (--stage1-only): stage 2 runs in a process that loads it")
        return None
    codes = None
    if args.naming_layer is not None:
        codes = naming_codes(lm, data, val, args.naming_layer, args.naming_codes, seed=args.seed)
    init_blocks(model, data, val, scale=args.init_scale, noise=args.state_noise,
                count_read_steps=args.count_read_steps, naming_codes=codes)
    if args.naming_layer is not None:
        model.freeze_naming(args.naming_layer)
        below = (f"; layers {args.naming_layer}-{model.frozen_below - 1} run forward only"
                 if model.frozen_below is not None else "")
        log(f"block before layer {args.naming_layer}: frozen as started, attention gate opened over the first "
            f"{NAMING_RAMP} steps{below}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    is_gate = lambda n: n.endswith("_gate")  # noqa: E731
    is_matrix = lambda n, p: p.ndim >= 2 and "latents" not in n and "frame_embs" not in n  # noqa: E731
    # Blocks started by init_blocks: their fitted query/key/value maps have
    # entries of 0.002-0.07, which Adam's ~lr-sized steps (taken at full
    # size even while the gates, and so the gradients, are near 0) turned
    # to noise within a few dozen steps (measured: the gates, though their
    # gradient pointed open at the start, stayed at 0 for 200 steps).
    # (The ObjectHead's keys and values too. Of --naming-layer's block
    # only the value map is fitted, and it is frozen.)
    unfitted = {f"blocks.{layer}.{m}" for layer in model.layers if layer not in BLOCK_ROLES for m in "qk"}
    is_fitted = lambda n: n.split(".")[-1] in ("q", "k", "v") and n not in unfitted  # noqa: E731
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
    kinds, probs = list(KINDS), mix(args.naming_share)
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
