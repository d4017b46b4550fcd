"""How stage 2's blocks start (init_blocks): each as a reader of stage 1's
ObjectHead for one question role, its query map fitted so that the LM's
state at the deciding position asks for the named object and everywhere
else for a null query, its output written along the answer tokens' logit
directions; --naming-layer's block writing the naming codes."""

import copy

import numpy as np
import torch
import torch.nn.functional as F

from . import recipe
from .data import media_batch, role
from .modules import attend, state_noise
from .recipe import BLOCK_ROLES, COUNT_WEIGHTS, HEAD_DIM, HEADS, N_PLACES, NOISY_COPIES, log


def decision_prefixes(data):
    """Each distinct prompt prefix whose last position decides an answer,
    → (its role, the object it names; "something" is the last). For a
    count that is the " " before the digit, for the rest "Answer:"."""
    out = {}
    for family in ("presence", "count", "motion", "change"):
        for it in data.by_family[family]:
            ids, _, (start, _) = data.sequence([], it["question"], it["answer"])
            cut = start + 1 if family == "count" else start
            out[tuple(ids[:cut])] = (role(it), data.objects.index(it["target"]) if it["target"] else len(data.objects))
    return out


FAMILY_OF_READOUT = {0: ("presence", "count"), 1: ("motion",), 2: ("change",), 3: ("change",)}


def evidence(head, readout, writes, resampler, data, n=256):
    """[classes, inner]: a linear map, no intercept, from a value that
    ObjectHead's attention returns to the evidence the block writes: the
    log-odds of "any" (count 1-3 vs 0), the count's centred logits, or the
    read-out's log-odds. Fitted by ridge regression on values attended with
    the head's own queries (random objects) over scenes of the families the
    read-out serves."""
    values, targets, samples = [], [], []
    with torch.no_grad():
        for family in FAMILY_OF_READOUT[readout]:
            feats, _ = media_batch(data, family, n // len(FAMILY_OF_READOUT[readout]))
            media = resampler(feats)
            a = attend(head.queries, *head.keys_values(media)).flatten(0, 1)
            t = head.read_outs(a, readout)
            if writes == "any":
                t = (torch.logsumexp(t[:, 1:], -1) - t[:, 0])[:, None]
            elif writes == "digits":
                t = t - t.mean(-1, keepdim=True)
            else:
                t = (t[:, 1] - t[:, 0])[:, None]
            values.append(a)
            targets.append(t)
            samples.append(media)
    a, t = torch.cat(values).double(), torch.cat(targets).double()
    m = torch.linalg.solve(a.T @ a + 1e-3 * len(a) * torch.eye(a.shape[1], dtype=torch.float64), a.T @ t).T
    fit = 1 - ((a @ m.T - t) ** 2).sum() / ((t - t.mean(0)) ** 2).sum()
    log(f"  evidence ({writes}, read-out {readout}) as a map of the value: R² {fit.item():.3f}")
    m = m.float()
    return m, null_query(head, m, torch.cat(samples), t.float().std())


def null_query(head, m, media, spread, steps=300):
    """A query that reads (almost) no evidence from any scene: what the
    positions a block does not answer ask for, so that it writes nothing
    there. (A zero query averages every token's value, which is evidence
    of one sign: every block then pushed yes or no everywhere and they
    fought each other, measured.) Fitted by gradient descent."""
    with torch.no_grad():
        k, v = head.keys_values(media)
    # From the head's own null query where stage 1 trained one (the sink's
    # key), else from 0.
    start = head.null.detach()[None] if head.null is not None else torch.zeros(1, HEADS * HEAD_DIM)
    q = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([q], lr=0.05)
    for _ in range(steps):
        loss = (attend(q, k, v)[:, 0] @ m.T).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    log(f"  null query: evidence RMS {loss.sqrt().item() / spread.item():.2f} of the evidence's spread")
    return q.detach()[0]


def count_reader(head, resampler, data, val, steps, lr=1e-3, batch=128):
    """A copy of `head` refitted on counts alone, for the count block to
    start from: its queries, keys, values and count read-out, trained on the
    asked object's count of count stills (COUNT_WEIGHTS) over the frozen
    resampler's tokens. Stage 1's head shares its attention with motion
    and change and reads every object of every frame, mostly zeros: it read
    the asked object's count of validation count stills right 0.775 of
    the time (twos 0.60 on training) where a count-only read of the same
    tokens reached 0.80-0.83 after 500-1,500 steps (f13e865:models/demo/EVAL.md)."""
    def tokens(d):
        items = d.by_family["count"]
        media = []
        with torch.no_grad():
            for i in range(0, len(items), 128):
                part = items[i:i + 128]
                rows = np.array([r for it in part for r in it["rows"]])
                feats = torch.from_numpy(d.feats[rows].astype(np.float32))
                media.append(resampler(feats.view(len(part), len(part[0]["rows"]), N_PLACES, recipe.FEATURE_DIM)))
        answers = torch.tensor([min(int(it["answer"]), 3) for it in items])
        return torch.cat(media), answers, torch.tensor([d.objects.index(it["target"]) for it in items])

    def accuracy(h, media, answers, objects):
        with torch.no_grad():
            logits = h(media)[0]
            return (logits[torch.arange(len(objects)), objects].argmax(-1) == answers).float().mean().item()

    media, answers, objects = tokens(data)
    val_media, val_answers, val_objects = tokens(val)
    reader = copy.deepcopy(head)
    before = accuracy(reader, val_media, val_answers, val_objects)
    params = [reader.queries, reader.k, reader.v, reader.outs[0], reader.biases[0]]
    if reader.null is not None:
        params.append(reader.null)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
    weights = torch.tensor(COUNT_WEIGHTS)
    # Its own generator, not torch's: stage 2 then draws what it would
    # without the refit, and one stage 1 gives one count reader.
    gen = torch.Generator().manual_seed(len(media))
    for _ in range(steps):
        idx = torch.randint(len(media), (batch,), generator=gen)
        k, v = reader.keys_values(media[idx])
        logits = reader.logits(k, v)[0]
        loss = F.cross_entropy(logits[torch.arange(batch), objects[idx]], answers[idx], weight=weights)
        if reader.null is not None:
            # The null query must still read nothing through the new keys
            # and values (null_query starts from it).
            loss = loss + reader.null_weight * reader.null_leak(k, v)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = accuracy(reader, val_media, val_answers, val_objects)
    log(f"count reader: {steps} steps on counts alone; the asked object's count of validation count stills "
        f"{before:.3f} → {after:.3f}")
    return reader


def init_blocks(model, data, val, scale=30.0, noise=0.0, count_read_steps=0, naming_codes=None):
    """Each block starts as a reader of ObjectHead's evidence:

    * keys and values: ObjectHead's;
    * query map: fitted (ridge regression) so that the deciding position of
      the block's role asks for the object the question names ("something"
      for change questions) and every other deciding position asks for the
      null query (null_query); the hidden state there names the object
      linearly (a probe on it is 100 % right);
    * output projection: rank-few, writing the read-out's evidence along
      the directions that raise the answer tokens' logits (the LM head's
      rows through the final norm): yes/no from "any" (count 1-3 vs 0) for
      presence, the digits 0-3 for count, yes/no for motion, appear, leave.

    --naming-layer's block writes `naming_codes` (naming.naming_codes)
    instead (init_naming_block).

    Gates still start at 0, so training still starts from the frozen LM;
    once a gate opens, its block already points the right way."""
    head, lm = model.object_head, model.lm
    d_of = lambda text: lm.head[data.plain(text)[-1]].float() * lm.out_norm  # noqa: E731
    yes_no = d_of(" yes") - d_of(" no")
    digits = torch.stack([d_of(f" {c}") for c in range(4)])
    digits = digits - digits.mean(0)
    prompts = decision_prefixes(data)
    for layer, block in model.blocks.items():
        if int(layer) not in BLOCK_ROLES:
            # --naming-layer's block: no ObjectHead read-out to start it
            # from (what a naming episode needs is which object, not a
            # count or a yes).
            init_naming_block(model, block, int(layer), data, val, naming_codes)
            continue
        role, readout, writes = BLOCK_ROLES[int(layer)]
        head, resampler = model.object_head, model.resampler
        if role == "count" and count_read_steps:
            head = count_reader(head, resampler, data, val, count_read_steps)
        queries = head.queries.detach()
        ev, null = evidence(head, readout, writes, resampler, data)
        q_target = torch.stack([queries[o] if r == role else null for r, o in prompts.values()])
        x = torch.stack([h[-1] for h in lm.states(list(prompts), int(layer))])
        if lm.runtime:
            # Fitted on the runtime's states beside the f32 ones: the same
            # prompts, the same targets, so the map learns to ignore where
            # the two differ.
            x = torch.cat([x, torch.stack([h[-1] for h in lm.runtime_states(list(prompts), int(layer))])])
            q_target = q_target.repeat(2, 1)
        if noise > 0:
            # Fitted on noisy copies too: a few hundred prompts in 576
            # dimensions, fitted exactly, leave a map that magnifies the
            # runtime's quantization error (state_noise).
            gen = torch.Generator().manual_seed(int(layer))
            x = torch.cat([x] + [x + state_noise(x, noise, gen) for _ in range(NOISY_COPIES)])
            q_target = q_target.repeat(NOISY_COPIES + 1, 1)
        x = F.layer_norm(x, (x.shape[-1],), block.attn_norm_w.detach(), block.attn_norm_b.detach(), 1e-5).double()
        ridge = 1e-3 * len(x) * torch.eye(x.shape[1], dtype=torch.float64)
        w = torch.linalg.solve(x.T @ x + ridge, x.T @ q_target.double()).T.float()
        fit = 1 - ((x.float() @ w.T - q_target) ** 2).sum() / ((q_target - q_target.mean(0)) ** 2).sum()
        if writes == "digits":  # count logits → the digits' logit directions
            o = digits.T @ ev * (yes_no.norm() / digits.norm(dim=1).mean())
        else:  # P(yes) evidence → yes/no
            o = torch.outer(yes_no, ev[0])
        # Scale: one unit of evidence moves the residual by `scale` along
        # the answer direction (its typical per-token RMS here is 12-28).
        o = o * (scale / yes_no.norm())
        with torch.no_grad():
            block.q.copy_(w)
            # The block reads exactly what its head read.
            block.k.copy_(head.k)
            block.v.copy_(head.v)
            block.o.copy_(o)
        log(f"block before layer {layer}: reads {role}; query map R² {fit.item():.3f}")


def single_media_means(model, data, per_object):
    """The mean of the resampler's 64 tokens of up to `per_object` stills of
    each object alone (the pictures of naming episodes) → [n, W], and
    each still's object index."""
    means, objects = [], []
    with torch.no_grad():
        for o, items in data.singles.items():
            items = items[:per_object]
            rows = np.array([r for it in items for r in it["rows"]])
            feats = torch.from_numpy(data.feats[rows].astype(np.float32))
            media = model.resampler(feats.view(len(items), len(items[0]["rows"]), N_PLACES, recipe.FEATURE_DIM))
            means.append(media.mean(1))
            objects += [data.objects.index(o)] * len(items)
    return torch.cat(means), torch.tensor(objects)


def init_naming_block(model, block, layer, data, val, codes):
    """--naming-layer's block, started so that every token of a picture's
    chunk gets the code naming_codes learnt for the picture's object:

    * query map 0: uniform attention, so each head returns the value of
      the mean visual token;
    * value and output maps: a ridge map from the mean visual token to
      the code, fitted on the training stills of one object
      (`single`) and split by SVD into value [inner, W] × output
      [d, inner] (rank inner).

    Its gates start at 0 as every block's."""
    x, objs = single_media_means(model, data, 200)
    table = torch.stack([codes[o] for o in data.objects])
    y = table[objs]
    x64 = x.double()
    m = torch.linalg.solve(x64.T @ x64 + 1e-3 * len(x) * torch.eye(x.shape[1], dtype=torch.float64),
                           x64.T @ y.double()).T
    u, sv, vt = torch.linalg.svd(m, full_matrices=False)
    inner = block.v.shape[0]
    vx, vo = single_media_means(model, val, 40)

    def right(mm):  # the nearest object's written state is the still's own
        return ((vx.double() @ mm.T)[:, None] - table[None].double()).norm(dim=-1).argmin(-1).eq(vo).float().mean()

    low = (u[:, :inner] * sv[:inner]) @ vt[:inner]
    log(f"block before layer {layer}: writes the picture's object's code (--naming-codes) "
        "(--naming-layer); "
        f"nearest object right on validation stills {right(m).item():.3f} (rank {inner}: {right(low).item():.3f}), "
        f"{len(x)} training stills")
    with torch.no_grad():
        block.q.zero_()
        block.v.copy_(vt[:inner].float())
        block.o.copy_((u[:, :inner] * sv[:inner]).float())
