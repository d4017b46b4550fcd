"""Builds what training and evaluation read, deterministically from a seed:

* `prepare`: the training and validation pools (scenes rendered in memory,
  encoded once by the frozen encoder on onnxruntime, features kept as
  float16), the token ids of every prompt piece (from the runtime's own
  tokenizer, `vigil tokenize`), and the frozen LM's weights dequantized
  from the same GGUF the runtime loads.
* `evalset`: a held-out test set written as PNG files and `dataset.json`,
  the format `vigil eval` reads.
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image

from .. import preprocess
from . import scenes, sources

MARKER = "<image>"
END_OF_CHUNK = "<|endofchunk|>"

# Training pool sizes (scenes). Each scene is asked one question per step it
# is drawn; presence scenes are re-asked about other objects at batch time.
TRAIN = {"presence": 4000, "count": 3000, "motion": 1100, "change": 1400, "single": 1200}
VAL = {"presence": 120, "count": 120, "motion": 80, "change": 80, "single": 60}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# The demo model's frozen encoder: EfficientNet-Lite0's head features and
# block 11's pooled expansion ([49, 1952] a frame; vigil_kit.efficientnet,
# WIDE_BLOCK), which `make models` writes beside the plain graph.
ENCODER = "efficientnet-lite0-wide"


class Encoder:
    def __init__(self, models_dir):
        import onnxruntime as ort

        meta = json.load(open(f"{models_dir}/{ENCODER}.json"))
        self.pre = meta["preprocess"]
        self.size = meta["input"]["size"][0]
        self.feature_dim, self.tokens_per_frame = meta["feature_dim"], meta["tokens_per_frame"]
        self._weights = None
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self.session = ort.InferenceSession(f"{models_dir}/{ENCODER}.onnx", options,
                                            providers=["CPUExecutionProvider"])

    def input_image(self, frame):
        """preprocess.to_input_image for square frames (the demo's), with the
        same resampling matrices applied by BLAS instead of einsum (~30×
        faster; equal to within float64 rounding)."""
        h, w, _ = frame.shape
        if h != w:
            return preprocess.to_input_image(frame, self.size, self.pre["fit"], self.pre["fill"])
        if self._weights is None or self._weights[0] != h:
            m = preprocess._weights(h, self.size, 0.0, float(h))
            self._weights = (h, m)
        m = self._weights[1]
        src = frame.astype(np.float64)
        rows = np.tensordot(m, src, axes=(1, 0))  # [o, w, c]
        out = np.tensordot(m, rows, axes=(1, 1))  # [p, o, c]
        return np.clip(np.floor(out.transpose(1, 0, 2) + 0.5), 0, 255).astype(np.uint8)

    def inputs(self, frames):
        """uint8 [n, H, W, 3] → the network's inputs (the CPU side of __call__)."""
        return [preprocess.normalize(self.input_image(f), self.pre["mean"], self.pre["std"]) for f in frames]

    def __call__(self, frames):
        """uint8 [n, H, W, 3] → float16 [n, tokens_per_frame, feature_dim] (the runtime's token order)."""
        return self.run(self.inputs(frames))

    def run(self, xs):
        """The network on inputs from `inputs`."""
        out = []
        for x in xs:
            (y,) = self.session.run(None, {self.session.get_inputs()[0].name: x})
            c = y.shape[1]
            out.append(y.reshape(c, -1).T.astype(np.float16))
        return np.stack(out)


def _scenes(rng, n_bg, counts):
    out = []
    for family, n in counts.items():
        for _ in range(n):
            if family == "single":
                name = str(rng.choice(list(sources.OBJECTS)))
                out.append((scenes.single(rng, n_bg, name), [("single", "", "", "", name)]))
            else:
                out.append(getattr(scenes, family)(rng, n_bg))
    return out


def _rendered(made, bgs, stickers, encoder, ahead=16):
    """The encoder's inputs of each scene of `made`, in order, rendered on a
    second thread: rendering and resizing take ~23 ms a frame on one core,
    the network ~20 ms on two, so in turn they left a core idle for half of
    `prepare` (measured: 13.1 min for the 18,200 training frames). At most
    `ahead` scenes wait (a bounded queue: the producer blocks when full).
    The same calls in the same order as one thread: the same features."""
    ready = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def produce():
        try:
            for scene, _ in made:
                if stop.is_set():
                    return
                ready.put(("ok", encoder.inputs(scenes.render(scene, bgs, stickers))))
        except BaseException as e:  # re-raised on the consumer's side, with its traceback
            ready.put(("error", e))

    worker = threading.Thread(target=produce, name="render", daemon=True)
    worker.start()
    try:
        for _ in made:
            status, value = ready.get()
            if status == "error":
                raise value
            yield value
    finally:
        stop.set()
        while worker.is_alive():
            # Unblock a producer waiting on a full queue so it sees `stop`.
            try:
                ready.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)


def _pool(data_dir, split, counts, seed, encoder):
    rng = np.random.default_rng(seed)
    bgs = sources.backgrounds(data_dir, split)
    stickers = sources.stickers(data_dir)
    made = _scenes(rng, len(bgs), counts)
    n_frames = sum(len(s["frames"]) for s, _ in made)
    feats = np.zeros((n_frames, encoder.tokens_per_frame, encoder.feature_dim), np.float16)
    items, row, started = [], 0, time.time()
    for i, ((scene, questions), xs) in enumerate(zip(made, _rendered(made, bgs, stickers, encoder))):
        feats[row : row + len(xs)] = encoder.run(xs)
        rows = list(range(row, row + len(xs)))
        row += len(xs)
        for family, q, kind, answer, target in questions:
            items.append({"family": family, "question": q, "answer_type": kind, "answer": answer, "rows": rows,
                          "target": target})
        if (i + 1) % 500 == 0:
            rate = (time.time() - started) / (i + 1)
            log(f"{split}: {i + 1}/{len(made)} scenes encoded, ETA {rate * (len(made) - i - 1) / 60:.1f} min")
    return feats, items


def prompt_pieces(names):
    """Every text the prompts can contain, for the tokenizer."""
    objects = list(sources.OBJECTS)
    questions = set()
    for o in objects:
        for t in scenes.PRESENCE + scenes.MOTION:
            questions.add(scenes.fill(t, o))
        for t in scenes.COUNT:
            questions.add(scenes.fill(t, o))
    questions |= set(scenes.APPEAR + scenes.LEAVE + scenes.NAMING)
    answers = ["yes", "no"] + [str(i) for i in range(11)] + names
    texts = [f"Question: {q} Answer:" for q in sorted(questions)]
    texts += [f"Question: {q} Answer: {a}" for q in sorted(questions) for a in answers]
    plain = [MARKER, END_OF_CHUNK] + [f" {a}" for a in answers]
    return texts, plain


def tokenize(vigil, lm, texts, plain):
    request = json.dumps({"texts": texts, "plain": plain})
    out = subprocess.run([vigil, "tokenize", "--lm", lm], input=request, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"vigil tokenize failed: {out.stderr}")
    reply = json.loads(out.stdout)
    return {"bos": reply["bos"], "texts": dict(zip(texts, reply["texts"])), "plain": dict(zip(plain, reply["plain"]))}


def dump_lm(lm_path, out):
    """The frozen LM's tensors, dequantized to float32, as one .npz."""
    from .. import gguf_lm

    lm = gguf_lm.LM(lm_path)
    arrays = {name: lm.w(name) for name in lm.tensors}
    config = dict(n_embd=lm.n_embd, n_layer=lm.n_layer, n_head=lm.n_head, n_head_kv=lm.n_head_kv, eps=float(lm.eps),
                  rope_base=float(lm.rope_base), arch=lm.arch)
    np.savez(out + ".part.npz", **arrays)
    os.replace(out + ".part.npz", out)
    return config


def prepare(data_dir, models_dir, lm, vigil, out, seed):
    os.makedirs(out, exist_ok=True)
    encoder = Encoder(models_dir)
    names = sum(scenes.NAMES.values(), [])
    texts, plain = prompt_pieces(names)
    tokens = tokenize(vigil, lm, texts, plain)
    log("dequantizing the LM")
    tokens["lm"] = dump_lm(lm, f"{out}/lm.npz")
    json.dump(tokens, open(f"{out}/tokens.json", "w"))
    for split, counts, s in (("val", VAL, seed + 1), ("train", TRAIN, seed)):
        log(f"{split}: rendering and encoding {sum(counts.values())} scenes")
        feats, items = _pool(data_dir, split, counts, s, encoder)
        np.save(f"{out}/{split}_features.npy", feats)
        json.dump({"items": items, "names": scenes.NAMES[split], "objects": list(sources.OBJECTS)},
                  open(f"{out}/{split}_items.json", "w"))
    log(f"prepared in {out}")


def _png(frame, path):
    Image.fromarray(frame).save(path, optimize=False, compress_level=1)


def evalset(data_dir, out, seed, per_family, split="test"):
    """Held-out questions as PNGs + dataset.json. `per_family` questions of
    each of presence, count, motion, change, and as many few-shot naming
    episodes (each asked with 0 and with 2 examples)."""
    rng = np.random.default_rng(seed)
    bgs = sources.backgrounds(data_dir, split)
    stickers = sources.stickers(data_dir)
    os.makedirs(f"{out}/frames", exist_ok=True)
    items = []
    counter = [0]

    def save(scene):
        paths = []
        for frame in scenes.render(scene, bgs, stickers):
            counter[0] += 1
            rel = f"frames/{counter[0]:05d}.png"
            _png(frame, f"{out}/{rel}")
            paths.append(rel)
        return paths

    for i in range(per_family):
        for family in ("presence", "count", "motion", "change"):
            scene, questions = getattr(scenes, family)(rng, len(bgs))
            frames = save(scene)
            for fam, q, kind, answer, _ in questions:
                items.append({"id": f"{fam}-{i:04d}", "family": fam, "question": q, "answer_type": kind,
                              "answer": answer, "frames": frames})
    names = scenes.NAMES[split]
    for i in range(per_family):
        a, b = (str(x) for x in rng.choice(list(sources.OBJECTS), size=2, replace=False))
        na, nb = (str(x) for x in rng.choice(names, size=2, replace=False))
        ex = [(save(scenes.single(rng, len(bgs), a))[0], na), (save(scenes.single(rng, len(bgs), b))[0], nb)]
        if rng.integers(2):
            ex.reverse()
        query, answer = (a, na) if rng.integers(2) else (b, nb)
        frames = save(scenes.single(rng, len(bgs), query))
        q = str(rng.choice(scenes.NAMING))
        choices = sorted([na, nb])
        for shots in (0, 2):
            items.append({"id": f"fewshot-{i:04d}-{shots}shot", "family": "fewshot", "question": q,
                          "answer_type": {"choices": choices}, "answer": answer, "frames": frames,
                          "examples": [{"image": p, "answer": n} for p, n in ex[:shots]]})
    json.dump({"version": 1, "items": items}, open(f"{out}/dataset.json", "w"), indent=1)
    log(f"{len(items)} questions in {out}")
    return items
