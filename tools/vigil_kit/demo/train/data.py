"""What training reads from a prepared pool (`vigil_kit.demo prepare`):
episodes laid out as the runtime lays out a prompt, and every frame's
objects (`vigil_kit.demo labels`) for stage 1's ObjectHead."""

import json
import os

import numpy as np
import torch

from ..scenes import NAMING  # what a naming episode asks, as the held-out set asks it
from . import recipe


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
        feats = torch.from_numpy(self.feats[rows].astype(np.float32)).view(size, M, T, 49, recipe.FEATURE_DIM)
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


def media_batch(data, family, size):
    """Features [size, T, 49, F] and ObjectHead targets of random scenes of
    one family (stills or clips)."""
    items = [data.by_family[family][i] for i in data.rng.integers(len(data.by_family[family]), size=size)]
    rows = np.array([r for it in items for r in it["rows"]])
    feats = torch.from_numpy(data.feats[rows].astype(np.float32)).view(size, len(items[0]["rows"]), 49, recipe.FEATURE_DIM)
    return feats, torch.from_numpy(np.stack([data.labels.targets(it["rows"]) for it in items]))


def role(it):
    """presence, count, motion; appear or leave for change questions."""
    if it["family"] != "change":
        return it["family"]
    q = it["question"].lower()
    return "leave" if "leave" in q or "disappear" in q else "appear"
