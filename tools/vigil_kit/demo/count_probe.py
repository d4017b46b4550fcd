"""Where the count is lost: a summing probe on each stage of the path from
the frozen encoder to the visual tokens.

Fresh count stills ("How many cats are there?") are drawn on each split's
backgrounds (train 3,000, val 400, test 400: the held-out backgrounds), and
the probe, a deep-sets reader (a per-cell MLP 256-256, summed over the
cells, one 0-3 read-out per object; 800 steps of 128, two seeds), reads
the asked object's count off:

* the encoder's features (`[1280, 7, 7]`), alone and with the wider but
  shallower map of block 11's expansion (`[672, 14, 14]`, 2×2-averaged);
* with `--stage1 FILE`, that stage 1's resampler: its projected, normalised
  features (49 a frame), its latents after the first layer, its tokens.

Two steps, because the encoder runs on onnxruntime (the kit's virtualenv)
and the resampler on Debian's torch:

    python -m vigil_kit.demo.count_probe features --data data --models models --out DIR
    /usr/bin/python3 -m vigil_kit.demo.count_probe probe --features DIR [--stage1 target/train/stage1.pt]

About 3 min for `features` and 9.5 min for `probe` with `--stage1` here
(2 cores, nothing else running).

Measured (f13e865:models/demo/EVAL.md, "Where count is lost"), on the held-out backgrounds:
the features hold the count (0.81-0.82) and the resampler's projection
keeps it (0.83-0.85); its first attention layer loses it (0.71-0.76).
"""

import argparse
import sys
import time

import numpy as np

SPLITS = {"train": (3000, 100), "val": (400, 101), "test": (400, 102)}  # stills, seed
EXPANSION = "block 11's expansion"  # the [672, 14, 14] map before its stride-2 depthwise conv


def features(data, models, out):
    import onnx
    import onnxruntime as ort
    from onnx import shape_inference

    from . import build, scenes, sources

    graph = shape_inference.infer_shapes(onnx.load(f"{models}/efficientnet-lite0.onnx"))
    shapes = {v.name: v for v in graph.graph.value_info}
    # The ReLU6 after the last 1×1 expansion at 14×14 (672 channels).
    wide = [n.output[0] for n in graph.graph.node if n.op_type == "Clip" and n.output[0] in shapes
            and [d.dim_value for d in shapes[n.output[0]].type.tensor_type.shape.dim] == [1, 672, 14, 14]]
    if not wide:
        raise SystemExit(f"{models}/efficientnet-lite0.onnx has no [1, 672, 14, 14] activation: not EfficientNet-Lite0?")
    graph.graph.output.append(shapes[wide[-1]])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    encoder = build.Encoder(models)
    for split, (n, seed) in SPLITS.items():
        rng = np.random.default_rng(seed)
        bgs, stickers = sources.backgrounds(data, split), sources.stickers(data)
        final, wide_maps, counts, objects = [], [], [], []
        for _ in range(n):
            scene, questions = scenes.count(rng, len(bgs))
            x = encoder.inputs(scenes.render(scene, bgs, stickers))[0]
            f, w = session.run(None, {session.get_inputs()[0].name: x})
            final.append(f[0].astype(np.float16))
            wide_maps.append(w[0].reshape(672, 7, 2, 7, 2).mean((2, 4)).astype(np.float16))
            counts.append(int(questions[0][3]))
            objects.append(scenes.COUNTABLE.index(questions[0][4]))
        np.savez(f"{out}/{split}.npz", final=np.stack(final), wide=np.stack(wide_maps), count=np.array(counts),
                 object=np.array(objects))
        print(f"{split}: {n} count stills", file=sys.stderr, flush=True)


def _fit(train, val, test, seed, steps=800, batch=128):
    """train/val/test: (cells [n, c, d], count [n], object [n]) → validation
    and test accuracy at steps 200, 400, …, and on 1,000 training stills."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    mu, sd = train[0].mean((0, 1)), train[0].std((0, 1)) + 1e-3
    train, val, test = [((x - mu) / sd, y, t) for x, y, t in (train, val, test)]
    torch.manual_seed(seed)
    cell = nn.Sequential(nn.Linear(train[0].shape[2], 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
    head = nn.Linear(256, len(set(train[2].tolist())) * 4)
    opt = torch.optim.AdamW(list(cell.parameters()) + list(head.parameters()), 1e-3, weight_decay=1e-2)

    def logits(x, t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = cell(x).float().sum(1) / 10
        return head(h).view(len(t), -1, 4)[torch.arange(len(t)), t]

    def accuracy(x, y, t):
        with torch.no_grad():
            return (logits(x, t).argmax(1) == y).float().mean().item()

    out = []
    for step in range(1, steps + 1):
        i = torch.randint(len(train[0]), (batch,))
        loss = F.cross_entropy(logits(train[0][i], train[2][i]), train[1][i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0:
            out.append((accuracy(*val), accuracy(*test)))
    return out, accuracy(*(a[:1000] for a in train))


def probe(folder, stage1, resampler_only=False):
    import torch

    from .train import modules, recipe

    torch.set_num_threads(2)
    z = {s: np.load(f"{folder}/{s}.npz") for s in SPLITS}
    cells = {s: torch.from_numpy(z[s]["final"].astype(np.float32)).flatten(2).transpose(1, 2) for s in SPLITS}
    wide = {s: torch.from_numpy(z[s]["wide"].astype(np.float32)).flatten(2).transpose(1, 2) for s in SPLITS}
    both = {s: torch.cat([cells[s], wide[s]], 2) for s in SPLITS}
    stages = {} if resampler_only else {"features [49, 1280]": cells, f"features + {EXPANSION} [49, 1952]": both}
    if stage1:
        state = torch.load(stage1, map_location="cpu")["resampler"]
        # A stage 1 trained on the demo's wide encoder (build.ENCODER) reads
        # the head's features and block 11's pooled expansion together.
        width = state["proj_w"].shape[1]
        if width == both["train"].shape[2]:
            cells = both
        elif width != cells["train"].shape[2]:
            raise SystemExit(f"{stage1}: its resampler reads {width}-wide features; {folder} has "
                             f"{cells['train'].shape[2]} (+ {wide['train'].shape[2]})")
        recipe.FEATURE_DIM = width
        resampler = modules.Resampler(torch.Generator().manual_seed(0), places="place_embs" in state,
                                      diffs="diff_mix" in state)
        resampler.load_state_dict(state)
        traced = {"resampler: projected, normalised [49, 384]": {}, "resampler: latents after layer 1 [64, 384]": {},
                  "resampler: tokens [64, 384]": {}}
        names = list(traced)
        with torch.no_grad():
            for s in SPLITS:
                parts = {k: [] for k in names}
                for i in range(0, len(cells[s]), 200):
                    trace = {}
                    tokens = resampler(cells[s][i:i + 200, None], trace=trace)
                    for k, v in zip(names, (trace["media"], trace["latents0"], tokens)):
                        parts[k].append(v.float())
                for k in names:
                    traced[k][s] = torch.cat(parts[k])
        stages.update(traced)
    for name, x in stages.items():
        started = time.time()
        for seed in (0, 1):
            split = {s: (x[s], torch.from_numpy(z[s]["count"]), torch.from_numpy(z[s]["object"])) for s in SPLITS}
            curve, fit = _fit(split["train"], split["val"], split["test"], seed)
            steps = " ".join(f"{v:.3f}/{t:.3f}" for v, t in curve)
            print(f"{name}, seed {seed}: val/test at 200..800 steps {steps}; train {fit:.3f} "
                  f"({time.time() - started:.0f} s)", flush=True)


def main():
    p = argparse.ArgumentParser(prog="vigil_kit.demo.count_probe")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("features", help="draw and encode the count stills (the kit's virtualenv)")
    f.add_argument("--data", required=True)
    f.add_argument("--models", required=True)
    f.add_argument("--out", required=True)
    q = sub.add_parser("probe", help="the summing probe on each stage (Debian's python3-torch)")
    q.add_argument("--features", required=True, help="the folder `features` wrote")
    q.add_argument("--stage1", help="a stage-1 file (the trainer's --stage1): also probe its resampler")
    q.add_argument("--resampler-only", action="store_true", help="with --stage1: skip the encoder's stages")
    args = p.parse_args()
    if args.command == "features":
        import os

        os.makedirs(args.out, exist_ok=True)
        features(args.data, args.models, args.out)
    else:
        if args.resampler_only and not args.stage1:
            raise SystemExit("--resampler-only needs --stage1 FILE")
        probe(args.features, args.stage1, args.resampler_only)


if __name__ == "__main__":
    main()
