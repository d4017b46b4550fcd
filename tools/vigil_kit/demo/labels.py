"""What is in each prepared frame, by construction: the objects placed on
it (name, x, y, size), one list per feature row of `prepare`'s pools.

`prepare` draws its scenes from a seeded generator and renders them in
order, one feature row per frame; drawing the same scenes again, without
rendering or encoding, gives each row's objects in seconds. Training uses
them for an auxiliary loss that teaches the resampler which objects a frame
holds (all of them, not only the one a question asks about).

    python -m vigil_kit.demo labels --data data --prep DIR [--seed 1]
"""

import json
import os

import numpy as np

from . import build, sources


def rows(data_dir, split, counts, seed):
    """[[name, x, y, size], ...] per feature row, in `build._pool`'s order."""
    rng = np.random.default_rng(seed)
    n_bg = len(sources.backgrounds(data_dir, split))
    out = []
    for scene, _ in build._scenes(rng, n_bg, counts):
        for placed in scene["frames"]:
            out.append([[p[0], p[1], p[2], p[3]] for p in placed])
    return out


def write(data_dir, prep, seed):
    for split, counts, s in (("val", build.VAL, seed + 1), ("train", build.TRAIN, seed)):
        labels = rows(data_dir, split, counts, s)
        n_rows = np.load(f"{prep}/{split}_features.npy", mmap_mode="r").shape[0]
        if len(labels) != n_rows:
            raise SystemExit(f"{prep}: {split} has {n_rows} feature rows but the generator gives {len(labels)} frames; "
                             "the data was prepared by other code or another seed: run `prepare` again")
        tmp = f"{prep}/{split}_objects.json.part"
        json.dump({"objects": list(sources.OBJECTS), "rows": labels}, open(tmp, "w"))
        os.replace(tmp, f"{prep}/{split}_objects.json")
