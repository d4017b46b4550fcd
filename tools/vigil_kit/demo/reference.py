"""The Python reference answers a `vigil eval` dataset: encoder and
resampler on onnxruntime, the LM and the blocks in numpy (gguf_lm.py,
xattn.py) over the same GGUF files the runtime loads. Each item's answer is
written into dataset.json as `reference`, with `reference_margin`: how far
(log-probability) it led the runner-up; `vigil eval` reports how often the
runtime agrees, and how close the calls it disagrees on were.

Scoring is the runtime's (watch/ask.rs): each candidate " answer" is scored
by the sum of its tokens' log-probabilities after the prompt."""

import json
import subprocess
import sys
import time

import numpy as np

from .. import gguf_lm, preprocess, xattn
from .build import END_OF_CHUNK, MARKER, Encoder, log

MAX_COUNT = 10


def candidates(answer_type):
    if answer_type == "yes-no":
        return ["yes", "no"]
    if answer_type == "count":
        return [str(i) for i in range(MAX_COUNT + 1)]
    if isinstance(answer_type, dict):
        return list(answer_type["choices"])
    raise SystemExit(f"answer type {answer_type!r} cannot be scored")


class Reference:
    def __init__(self, models, lm_path, adapter_path, resampler_path, vigil):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        # The demo's encoder (its BLAS resize gives preprocess's result).
        self.fast = Encoder(models)
        self.pre, self.size, self.encoder = self.fast.pre, self.fast.size, self.fast.session
        self.resampler = ort.InferenceSession(resampler_path, options, providers=["CPUExecutionProvider"])
        self.lm = gguf_lm.LM(lm_path)
        self.adapter = xattn.Adapter.read(adapter_path)
        self.vigil = vigil
        self.tokens = {}
        self.features = {}

    def tokenize(self, texts, plain):
        need_t = [t for t in texts if ("t", t) not in self.tokens]
        need_p = [p for p in plain if ("p", p) not in self.tokens]
        if need_t or need_p:
            out = subprocess.run([self.vigil, "tokenize", "--lm", self.lm.path],
                                 input=json.dumps({"texts": need_t, "plain": need_p}), capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"vigil tokenize: {out.stderr}")
            reply = json.loads(out.stdout)
            self.bos = reply["bos"]
            self.tokens.update({("t", t): ids for t, ids in zip(need_t, reply["texts"])})
            self.tokens.update({("p", p): ids for p, ids in zip(need_p, reply["plain"])})

    def feature(self, path):
        if path not in self.features:
            rgb = preprocess.load_rgb(path)
            x = preprocess.normalize(self.fast.input_image(rgb), self.pre["mean"], self.pre["std"])
            (y,) = self.encoder.run(None, {self.encoder.get_inputs()[0].name: x})
            self.features[path] = y.reshape(y.shape[1], -1).T.astype(np.float32)
        return self.features[path]

    def visual(self, paths):
        feats = np.stack([self.feature(p) for p in paths])
        (v,) = self.resampler.run(None, {self.resampler.get_inputs()[0].name: feats})
        return v

    def answer(self, root, item):
        q = item["question"]
        cands = candidates(item["answer_type"])
        examples = item.get("examples", [])
        texts = [f"Question: {q} Answer: {e['answer']}" for e in examples] + [f"Question: {q} Answer:"]
        self.tokenize(texts, [MARKER, END_OF_CHUNK] + [f" {c}" for c in cands])
        ids, media = ([self.bos], [-1]) if self.bos is not None else ([], [])
        visuals = []
        for e in examples:
            visuals.append(self.visual([f"{root}/{e['image']}"]))
            m = len(visuals) - 1
            for piece in (("p", MARKER), ("t", f"Question: {q} Answer: {e['answer']}"), ("p", END_OF_CHUNK)):
                ids += self.tokens[piece]
                media += [m] * len(self.tokens[piece])
        visuals.append(self.visual([f"{root}/{f}" for f in item["frames"]]))
        m = len(visuals) - 1
        for piece in (("p", MARKER), ("t", f"Question: {q} Answer:")):
            ids += self.tokens[piece]
            media += [m] * len(self.tokens[piece])
        kv = {layer: [self.adapter.media_kv(layer, v) for v in visuals] for layer in self.adapter.blocks}
        # One forward per distinct candidate prefix: " 0" … " 9" share " "
        # and are all read off one row.
        groups = {}
        for c in cands:
            cand = self.tokens[("p", f" {c}")]
            groups.setdefault(tuple(cand[:-1]), []).append((c, cand))
        scores = {}
        for prefix, members in groups.items():
            seq = ids + list(prefix)
            first = len(ids) - 1
            logits = self.logits(seq, media + [m] * len(prefix), kv, first).astype(np.float64)
            logp = logits - logits.max(-1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
            for c, cand in members:
                scores[c] = sum(logp[j, t] for j, t in enumerate(cand))
        # The first best in candidate order, as the runtime breaks ties.
        best = max(cands, key=lambda c: (scores[c], -cands.index(c)))
        runner_up = max((scores[c] for c in cands if c != best), default=scores[best])
        return best, float(scores[best] - runner_up)

    def logits(self, tokens, media_of, kv, first):
        """gguf_lm.LM.forward, with the LM head applied only to the rows from
        `first` on (the rest are never read; the head is most of the cost)."""
        lm = self.lm
        x = lm.w("token_embd.weight")[np.asarray(tokens)]
        media_of, positions = np.asarray(media_of), np.arange(len(tokens))
        for layer in range(lm.n_layer):
            if layer in self.adapter.blocks:
                x = lm._xattn(self.adapter, layer, x, media_of, kv[layer])
            x = lm._layer(layer, x, positions)
        x = gguf_lm.rms_norm(x[first:], lm.w("output_norm.weight"), lm.eps)
        head = lm.w("output.weight") if lm.has("output.weight") else lm.w("token_embd.weight")
        return x @ head.T

    def prefetch(self, items):
        """Tokenizes every item's texts in one `vigil tokenize` call."""
        texts, plain = set(), {MARKER, END_OF_CHUNK}
        for item in items:
            q = item["question"]
            texts.add(f"Question: {q} Answer:")
            texts.update(f"Question: {q} Answer: {e['answer']}" for e in item.get("examples", []))
            plain.update(f" {c}" for c in candidates(item["answer_type"]))
        self.tokenize(sorted(texts), sorted(plain))


def run(dataset, models, lm, adapter, resampler, vigil="../target/release/vigil"):
    path = f"{dataset}/dataset.json"
    data = json.load(open(path))
    ref = Reference(models, lm, adapter, resampler, vigil)
    ref.prefetch(data["items"])
    started = time.time()
    right = 0
    for i, item in enumerate(data["items"]):
        item["reference"], item["reference_margin"] = ref.answer(dataset, item)
        right += item["reference"] == item["answer"]
        if (i + 1) % 50 == 0:
            log(f"reference: {i + 1}/{len(data['items'])}, accuracy so far {right / (i + 1):.3f}, "
                f"{(time.time() - started) / (i + 1):.2f} s/item")
    json.dump(data, open(path, "w"), indent=1)
    log(f"reference answers written to {path}: accuracy {right / len(data['items']):.3f}")
    return data


def check(check_file, lm_path):
    """The trainer's --check output vs this reference: max |Δ logit|."""
    z = np.load(check_file)
    lm = gguf_lm.LM(lm_path)
    blocks = {}
    for k in z.files:
        if k.startswith("xattn."):
            _, layer, name = k.split(".", 2)
            blocks.setdefault(int(layer), {})[name] = z[k]
    any_block = next(iter(blocks.values()))
    config = dict(layers=sorted(blocks), heads=4, head_dim=64, ff_length=any_block["ffn_up.weight"].shape[0],
                  visual_dim=any_block["attn_k.weight"].shape[1], eps=1e-5)
    adapter = xattn.Adapter(config, blocks, lm.identity())
    visual = z["visual"]
    kv = {layer: [adapter.media_kv(layer, v) for v in visual] for layer in blocks}
    logits = lm.forward(z["tokens"].tolist(), z["media_of"], adapter, kv)
    diff = np.abs(logits - z["logits"]).max()
    print(f"max |logit difference| torch vs numpy reference: {diff:.2e} (logit range {np.abs(logits).max():.1f})")
    if not diff < 1e-2:
        sys.exit("the training forward pass does not match the reference")
