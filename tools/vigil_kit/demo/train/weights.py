"""The trained weights as an .npz (what `vigil_kit.demo export` turns into
the runtime's files, with the recipe that made them), and back."""

import json
import os

import numpy as np
import torch
import torch.nn as nn

from . import recipe
from .modules import XAttn
from .recipe import (COUNT_WEIGHTS, FF, GATE_LR_MULT, HEAD_DIM, HEADS, KINDS, LAYERS, R_DEPTH, R_FF_MULT,
                     R_FRAMES, R_HEAD_DIM, R_HEADS, R_LATENTS, R_WIDTH)


def mix(naming_share):
    """Each kind's share of the steps: the 2-shot naming episodes given
    `naming_share`, the other kinds KINDS' scaled to the rest."""
    rest = sum(v for k, v in KINDS.items() if k != "naming2")
    return np.array([naming_share if k == "naming2" else v * (1.0 - naming_share) / rest for k, v in KINDS.items()])


def save(model, args, step, seconds):
    weights = {f"resampler.{k}": v for k, v in model.resampler.export().items()}
    for layer, block in model.blocks.items():
        weights.update({f"xattn.{layer}.{k}": v for k, v in block.export().items()})
    config = {
        "layers": model.layers, "heads": HEADS, "head_dim": HEAD_DIM, "ff_length": FF,
        "resampler": {"feature_dim": recipe.FEATURE_DIM, "width": R_WIDTH, "depth": R_DEPTH, "heads": R_HEADS,
                      "head_dim": R_HEAD_DIM, "n_latents": R_LATENTS, "max_frames": R_FRAMES, "ff_mult": R_FF_MULT},
        "training": {"steps": step, "batch": args.batch, "lr": args.lr, "warmup": args.warmup, "seed": args.seed,
                     "threads": args.threads, "seconds": round(seconds),
                     "kinds": dict(zip(KINDS, mix(args.naming_share).round(4).tolist())),
                     "gate_lr_mult": GATE_LR_MULT,
                     "pretrain_steps": args.pretrain_steps, "pretrain_lr": args.pretrain_lr,
                     "balance_steps": args.balance_steps, "balance_lr": args.balance_lr,
                     "change_steps": args.change_steps, "change_lr": args.change_lr,
                     "null_weight": args.null_weight,
                     "place_embeddings": True, "frame_diffs": True,
                     "state_noise": args.state_noise,
                     "runtime_share": args.runtime_share if args.vigil else 0.0,
                     "count_weights": COUNT_WEIGHTS if args.balance_steps else None,
                     "object_weight": args.object_weight,
                     "naming_layer": args.naming_layer, "naming_codes": args.naming_codes,
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
        raise SystemExit(f"{path}: not weights the trainer saved (no {', '.join(missing)})")
    put = lambda param, name: param.data.copy_(torch.from_numpy(w[name]).reshape(param.shape))  # noqa: E731
    for r, prefix in ((model.resampler, "resampler."),):
        r.frame_embs = nn.Parameter(torch.from_numpy(w[prefix + "frame_embs"]))
        r.place_embs = None
        for param, name in ((r.proj_w, "proj_in.weight"), (r.proj_b, "proj_in.bias"), (r.latents, "latents"),
                            (r.norm_w, "norm.weight"), (r.norm_b, "norm.bias")):
            put(param, prefix + name)
        if r.diff_mix is not None:
            put(r.diff_mix, prefix + "diff_mix.weight")
        for i, layer in enumerate(r.layers):
            for name, param in layer.items():
                put(param, f"{prefix}layers.{i}." + name.replace("__", "."))
    for layer, block in model.blocks.items():
        for attr, name in XAttn.FILE_NAMES.items():
            put(getattr(block, attr), f"xattn.{layer}.{name}")
