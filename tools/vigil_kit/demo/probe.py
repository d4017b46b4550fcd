"""A linear probe on the frozen encoder's features: can "is there a <target>?"
be read off them at all? One logistic regression per target object on the
max-pooled 7x7 feature map of each presence still (train split), scored on
the validation split. If this is high while the trained model is near
"any object present", the features are not the bottleneck: the resampler and
the gated blocks are not learning to use them.

    /usr/bin/python3 -m vigil_kit.demo.probe --prep ~/.cache/vigil/demo-prep-<hash>

numpy only. Measured on the prep of models/demo: train 1.000, val 0.917
(120 val items) vs 0.71 held-out presence for the trained model.
"""

import argparse
import json

import numpy as np


def load(prep, split, names=None):
    meta = json.load(open(f"{prep}/{split}_items.json"))
    feats = np.load(f"{prep}/{split}_features.npy", mmap_mode="r")
    items = [i for i in meta["items"] if i["family"] == "presence"]
    names = names or sorted({i["target"] for i in items})
    x = np.stack([np.asarray(feats[i["rows"][-1]], dtype=np.float32).reshape(-1, feats.shape[-1]).max(0) for i in items])
    y = np.array([i["answer"] == "yes" for i in items], dtype=np.float32)
    t = np.array([names.index(i["target"]) for i in items])
    return x, y, t, names


def main():
    p = argparse.ArgumentParser(prog="vigil_kit.demo.probe")
    p.add_argument("--prep", required=True, help="the folder `vigil_kit.demo prepare` wrote")
    p.add_argument("--epochs", type=int, default=300)
    args = p.parse_args()
    xtr, ytr, ttr, names = load(args.prep, "train")
    xva, yva, tva, _ = load(args.prep, "val", names)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xva = (xtr - mu) / sd, (xva - mu) / sd
    k = len(names)
    w, b = np.zeros((k, xtr.shape[1]), np.float32), np.zeros(k, np.float32)
    counts = np.bincount(ttr, minlength=k) + 1
    for _ in range(args.epochs):
        z = (xtr * w[ttr]).sum(1) + b[ttr]
        g = 1 / (1 + np.exp(-z)) - ytr
        gw = np.zeros_like(w)
        np.add.at(gw, ttr, g[:, None] * xtr)
        w -= 0.05 * (gw / counts[:, None] + 1e-3 * w)
        b -= 0.05 * np.bincount(ttr, g, k) / counts

    def accuracy(x, y, t):
        return float((((x * w[t]).sum(1) + b[t] > 0) == (y > 0.5)).mean())

    print(f"probe_train: {accuracy(xtr, ytr, ttr):.3f}")
    print(f"probe_val: {accuracy(xva, yva, tva):.3f}  (n={len(yva)})")


if __name__ == "__main__":
    main()
