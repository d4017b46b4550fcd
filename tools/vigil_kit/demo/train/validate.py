"""Trained weights put to the question (--validate: every validation
question, and what each block adds), and the forward pass checked against
the numpy reference (--check)."""

import json

import numpy as np
import torch
import torch.nn as nn

from ..frozen_lm import FrozenLM
from . import recipe
from .data import Data, role
from .modules import Model
from .recipe import LAYERS, log
from .weights import load_weights, read_weights


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
    recipe.use_feature_width(args.prep)
    tok = json.load(open(f"{args.prep}/tokens.json"))
    lm = FrozenLM(f"{args.prep}/lm.npz", tok["lm"])
    if args.vigil:
        lm.use_runtime(args.vigil, args.lm, args.threads)
    weights = read_weights(args.validate)
    layers = sorted({int(n.split(".")[1]) for n in weights.files if n.startswith("xattn.")})
    model = Model(lm, args.seed, diffs="resampler.diff_mix.weight" in weights, layers=layers or LAYERS)
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
        roles = np.array([role(it) for it in items])
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
    recipe.use_feature_width(args.prep)
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
