"""Where must an object's identity enter the frozen LM for a 2-shot naming
episode to be answerable? A text stand-in for the episode, laid out as the
runtime lays out the real one, with each picture replaced by its object in
words:

    <image>A cat. Question: What is this called? Answer: dax<|endofchunk|>
    <image>A horse. Question: What is this called? Answer: wug<|endofchunk|>
    <image>A cat. Question: What is this called? Answer:      → dax or wug?

The LM runs the prompt with " thing" in place of every object word, and
each chunk's identity is added before layer L only, as a block before
that layer could write it: the state of that chunk's word (a run where
only that chunk has its word, minus the all-" thing" run, at the word's
last token), written at every position of the chunk from the word on (a
block's output reaches every token of its chunk, `media_of`). Scored as
`vigil eval` scores naming: the right name's tokens likelier than the
other's. Chance is 0.50.

    /usr/bin/python3 -m vigil_kit.demo.naming_probe --prep <prep> \\
        --vigil target/release/vigil --lm models/smollm2-135m-instruct-q4_1.gguf

Debian's python3-torch (as the trainer); 4 min for 40 episodes on 2 cores.
"""

import argparse
import json
import subprocess

import numpy as np
import torch

from . import scenes, sources
from .frozen_lm import FrozenLM

QUESTION = ". Question: What is this called? Answer:"


class Prompts:
    """Token ids of the stand-in episodes (`vigil tokenize`)."""

    def __init__(self, vigil, gguf):
        self.objects = list(sources.OBJECTS)
        self.names = sum(scenes.NAMES.values(), [])
        pieces = ["<image>", "<|endofchunk|>", " thing", "A", QUESTION]
        pieces += [f" {o}" for o in self.objects] + [f" {n}" for n in self.names]
        out = subprocess.run([vigil, "tokenize", "--lm", gguf], input=json.dumps({"texts": [], "plain": pieces}),
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"{vigil} tokenize: {out.stderr.strip() or out.returncode}")
        reply = json.loads(out.stdout)
        self.tok, self.bos = dict(zip(pieces, reply["plain"])), reply["bos"]

    def episode(self, rng):
        """([(object, name)] examples, query object, right name, other name)."""
        a, b = rng.choice(self.objects, 2, replace=False)
        na, nb = rng.choice(self.names, 2, replace=False)
        examples = [(a, na), (b, nb)]
        if rng.integers(2):
            examples.reverse()
        query, right = (a, na) if rng.integers(2) else (b, nb)
        return examples, query, right, nb if right == na else na

    def ids(self, examples, query, answer, words):
        """Token ids, the word's span per chunk, the chunk of each position,
        the answer's span; chunk c names its object when words[c], else
        " thing" as many times as the word has tokens."""
        tok = self.tok
        ids = [self.bos] if self.bos is not None else []
        chunk, spans = [-1] * len(ids), []
        for c, (obj, name) in enumerate(list(examples) + [(query, None)]):
            word = tok[f" {obj}"]
            ids += tok["<image>"] + tok["A"]
            spans.append((len(ids), len(ids) + len(word)))
            ids += word if words[c] else tok[" thing"] * len(word)
            ids += tok[QUESTION] + (tok[f" {name}"] + tok["<|endofchunk|>"] if name else [])
            start = len(ids)
            if name is None:
                ids += tok[f" {answer}"]
            chunk += [c] * (len(ids) - len(chunk))
        return ids, spans, torch.tensor(chunk), (start, len(ids))

    def alone(self, examples, query, answer):
        """The all-" thing" row, then one row per chunk where only that
        chunk names its object."""
        return [self.ids(examples, query, answer, [int(i == c) for i in range(3)])[0] for c in (None, 0, 1, 2)]


def states(lm, rows):
    """The hidden states entering every layer (and the last's output) of
    equal-length rows: [n_layer + 1] × [B, S, d]."""
    h = lm.embd[torch.tensor(rows)]
    tables = lm.rope_tables(len(rows[0]))
    out = [h]
    for il in range(lm.c["n_layer"]):
        h = lm.layer(il, h, tables)
        out.append(h)
    return out, tables


def chunk_words(h, spans):
    """Each chunk's word state in one layer's states `h` of the rows
    Prompts.alone gives (the row where only chunk c names its object minus
    the all-" thing" row, at the word's last token) → [3, d]."""
    return torch.stack([h[1 + c, spans[c][1] - 1] - h[0, spans[c][1] - 1] for c in range(3)])


def word_states(lm, prompts, layer, episodes=30, seed=1):
    """Per object: the mean, over the chunks of `episodes` stand-in
    episodes, of its word's state entering `layer` (a run where only that
    chunk has its word, minus the all-" thing" run, at the word's last
    token) → {object: [d]}. Nearly one vector per object wherever its
    chunk sits (cosine 0.98 to the mean at layer 12)."""
    rng, found = np.random.default_rng(seed), {}
    with torch.no_grad():
        for _ in range(episodes):
            examples, query, right, _ = prompts.episode(rng)
            objects = [e[0] for e in examples] + [query]
            spans = prompts.ids(examples, query, right, [1, 1, 1])[1]
            hs, _ = states(lm, prompts.alone(examples, query, right))
            for c, word in enumerate(chunk_words(hs[layer], spans)):
                found.setdefault(objects[c], []).append(word)
    missing = [o for o in prompts.objects if o not in found]
    if missing:
        raise SystemExit(f"word_states: {episodes} episodes never showed {missing}: ask for more")
    return {o: torch.stack(v).mean(0) for o, v in found.items()}


def answer_log_likelihood(lm, h, ids, span):
    logp = torch.log_softmax(lm.logits(h[:, span[0] - 1 : span[1] - 1]), -1)
    target = torch.tensor(ids[span[0] : span[1]])
    return logp[:, torch.arange(len(target)), target].sum(-1)


def scores(lm, prompts, episode, layers):
    """Per answer: the log-likelihood with the words in the text (`words`),
    with " thing" everywhere (`none`), and with identity entering before
    each of `layers`."""
    examples, query, right, other = episode
    out = {}
    for answer in (right, other):
        ids, spans, chunk, span = prompts.ids(examples, query, answer, [1, 1, 1])
        rows = prompts.alone(examples, query, answer)
        neutral = rows[0]
        hs, tables = states(lm, [ids] + rows)
        full = answer_log_likelihood(lm, hs[-1], ids, span)
        out[("words", answer)] = full[0].item()
        out[("none", answer)] = full[1].item()
        positions = torch.arange(len(ids))
        writes = [((chunk == c) & (positions >= spans[c][0])).float()[:, None] for c in range(3)]
        h = hs[0][1:2].repeat(len(layers), 1, 1)
        for il in range(lm.c["n_layer"]):
            for row, layer in enumerate(layers):
                if layer == il:
                    words = chunk_words(hs[il][1:], spans)
                    h[row] = hs[il][1] + sum(words[c][None] * writes[c] for c in range(3))
            h = lm.layer(il, h, tables)
        for row, layer in enumerate(layers):
            out[(layer, answer)] = answer_log_likelihood(lm, h[row : row + 1], neutral, span)[0].item()
    return out


def main():
    p = argparse.ArgumentParser(prog="vigil_kit.demo.naming_probe")
    p.add_argument("--prep", required=True, help="the folder `vigil_kit.demo prepare` wrote (its lm.npz)")
    p.add_argument("--vigil", required=True, help="the vigil binary (its tokenizer)")
    p.add_argument("--lm", required=True, help="the GGUF `prepare` dequantized")
    p.add_argument("--episodes", type=int, default=40)
    p.add_argument("--layers", default="0,8,12,16,20,23", help="comma-separated LM layers to enter before")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    try:
        layers = [int(x) for x in args.layers.split(",")]
    except ValueError:
        p.error(f"--layers {args.layers}: comma-separated layer numbers, e.g. 0,8,12")
    torch.set_num_threads(1)
    lm = FrozenLM(f"{args.prep}/lm.npz", json.load(open(f"{args.prep}/tokens.json"))["lm"])
    bad = [x for x in layers if not 0 <= x < lm.c["n_layer"]]
    if bad:
        p.error(f"--layers: {bad} not layers of this LM (0 to {lm.c['n_layer'] - 1})")
    prompts, rng = Prompts(args.vigil, args.lm), np.random.default_rng(args.seed)
    keys = ["words", "none"] + layers
    right = dict.fromkeys(keys, 0)
    with torch.no_grad():
        for _ in range(args.episodes):
            episode = prompts.episode(rng)
            s = scores(lm, prompts, episode, layers)
            for k in keys:
                right[k] += s[(k, episode[2])] > s[(k, episode[3])]
    n = args.episodes
    print(f"episodes: {n} (1 sigma of a share near 0.5: {0.5 / n**0.5:.2f})")
    print(f"words in the text: {right['words'] / n:.2f}; no identity: {right['none'] / n:.2f}")
    print("identity entering before layer: " + "  ".join(f"{x}: {right[x] / n:.2f}" for x in layers))


if __name__ == "__main__":
    main()
