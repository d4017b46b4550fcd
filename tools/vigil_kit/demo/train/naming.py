"""The naming codes: per object, the vector the naming block writes so that
the frozen LM layers above it answer 2-shot naming episodes."""

import time

import numpy as np
import torch

from ..scenes import NAMING  # what a naming episode asks, as the held-out set asks it
from .recipe import KEEP_POOL, NAMING_CODE_CAP, log


def naming_codes(lm, data, val, layer, steps, cap=NAMING_CODE_CAP, keep_weight=1.0, batch=32, seed=0):
    """--naming-codes: per object, the vector --naming-layer's block is
    started to write at every token of a picture's chunk
    (init_naming_block), learnt (Adam, `steps` steps) so that the frozen
    LM layers from `layer` up answer 2-shot naming episodes: the episodes'
    text laid out as the runtime lays it out, each chunk given its
    object's code in place of its picture (its object is known here),
    loss on the answer's tokens. The object words' own states
    (naming_probe) do not do this above layer 20 (0.45-0.50 right: the
    LM's layers there do not match them); learnt codes do, because they
    are made for what those layers match on. Each code's norm is at most `cap` × the median norm
    of the LM's states entering `layer`; `keep_weight`: the codes, written
    into a presence, count, motion or change question's chunk, should
    leave that question's answer distribution where it was (KL), since
    the block writes them into every question → {object: [d]}."""
    gen = np.random.default_rng(seed + 5)
    objects, cache = data.objects, {}

    def naming_episode(names):
        a, b = gen.choice(len(objects), size=2, replace=False)
        na, nb = gen.choice(names, size=2, replace=False)
        q = NAMING[gen.integers(len(NAMING))]
        shots = [(a, na), (b, nb)]
        if gen.integers(2):
            shots.reverse()
        query, answer = (a, na) if gen.integers(2) else (b, nb)
        return [(q, n) for _, n in shots], q, answer, [o for o, _ in shots] + [query]

    def forward(d, rows, codes):
        """rows: (shots, question, answer, object per chunk), their states
        below `layer` cached beforehand → final hidden states, sequences."""
        seqs = [d.sequence(shots, q, a) for shots, q, a, _ in rows]
        S = max(len(ids) for ids, _, _ in seqs)
        x, which = torch.zeros(len(rows), S, lm.c["n_embd"]), torch.zeros(len(rows), S, len(objects))
        for b, ((ids, media, _), row) in enumerate(zip(seqs, rows)):
            x[b, : len(ids)] = cache[tuple(ids)]
            for t, m in enumerate(media):
                if m >= 0:
                    which[b, t, row[3][m]] = 1
        if codes is not None:
            x = x + which @ codes
        tables = lm.rope_tables(S)
        for il in range(layer, lm.c["n_layer"]):
            x = lm.layer(il, x, tables)
        return x, seqs

    def answer_logp(x, seqs):
        """Per row, log-softmax at the positions that predict its answer's tokens, and those tokens."""
        out = []
        for b, (ids, _, (a0, a1)) in enumerate(seqs):
            out.append((torch.log_softmax(lm.logits(x[b, a0 - 1 : a1 - 1]), -1), torch.tensor(ids[a0:a1])))
        return out

    def accuracy(d, codes, n=96):
        right = 0
        with torch.no_grad():
            for _ in range(n // batch):
                rows = [naming_episode(d.names) for _ in range(batch)]
                others = [(s, q, next(nm for _, nm in s if nm != a), o) for s, q, a, o in rows]
                scores = []
                for rs in (rows, others):
                    x, seqs = forward(d, rs, codes)
                    scores.append(torch.stack([lp[torch.arange(len(t)), t].sum() for lp, t in answer_logp(x, seqs)]))
                right += (scores[0] > scores[1]).sum().item()
        return right / (n // batch * batch)

    # The LM's states entering `layer` of every token sequence drawn below,
    # in one batched pass: every naming episode's text (which names, in which
    # order, which question and answer: the objects change no token) and a
    # fixed pool of the other families' questions.
    pool = []
    for _ in range(KEEP_POOL):
        kind = ("presence0", "count0", "motion0", "change0")[gen.integers(4)]
        _, shots, q, a = data.episode(kind)
        pool.append((shots, q, a, [int(gen.integers(len(objects)))]))
    texts = [d.sequence([(q, n1), (q, n2)], q, a)[0] for d in (data, val) for q in NAMING
             for n1 in d.names for n2 in d.names if n1 != n2 for a in (n1, n2)]
    texts += [data.sequence(shots, q, a)[0] for shots, q, a, _ in pool]
    todo = sorted({tuple(t) for t in texts}, key=len)
    cache.update(zip(todo, lm.states([list(t) for t in todo], layer)))

    def other_rows(n):
        rows = [pool[i] for i in gen.choice(len(pool), size=n, replace=False)]
        # Each written with some object's code (the picture's, to the block).
        return [(shots, q, a, [int(gen.integers(len(objects)))]) for shots, q, a, _ in rows]

    probe = [naming_episode(data.names) for _ in range(batch)]
    norm = torch.cat([cache[tuple(data.sequence(s, q, a)[0])][1:] for s, q, a, _ in probe])
    limit = cap * norm.norm(dim=-1).median().item()
    free = torch.nn.Parameter(torch.randn(len(objects), lm.c["n_embd"], generator=torch.Generator().manual_seed(seed))
                              * 1e-3 * limit)

    def codes():
        n = free.norm(dim=-1, keepdim=True)
        return free * torch.clamp(limit / n, max=1.0)

    before = accuracy(val, None)
    opt = torch.optim.Adam([free], lr=0.05 * limit)
    started = time.time()
    for step in range(1, steps + 1):
        x, seqs = forward(data, [naming_episode(data.names) for _ in range(batch)], codes())
        loss = torch.stack([-lp[torch.arange(len(t)), t].mean() for lp, t in answer_logp(x, seqs)]).mean()
        rows = other_rows(batch)
        with torch.no_grad():
            plain = [lp for lp, _ in answer_logp(*forward(data, rows, None))]
        written = [lp for lp, _ in answer_logp(*forward(data, rows, codes()))]
        keep = torch.stack([(p.exp() * (p - w)).sum(-1).mean() for p, w in zip(plain, written)]).mean()
        opt.zero_grad()
        (loss + keep_weight * keep).backward()
        opt.step()
        if step % 25 == 0 or step == steps:
            log(f"naming codes before layer {layer}: step {step}/{steps} naming loss {loss.item():.3f} "
                f"other answers' KL {keep.item():.4f} ({time.time() - started:.0f} s)")
    after = accuracy(val, codes().detach())
    log(f"naming codes before layer {layer}: text-only 2-shot naming episodes with the validation names right "
        f"{before:.3f} without codes → {after:.3f} with them (norm ≤ {cap} × the states' median, {limit:.0f})")
    table = codes().detach()
    return {o: table[i] for i, o in enumerate(objects)}
