"""Stage 1: the resampler alone, with a training-only ObjectHead that must
read every object's count (and, in clips, which objects move, appear or
leave) off the 64 visual tokens: dense, exact labels from the generator.
Three phases: the every-object loss, the same with rare counts weighed up
(balancing), and the change phase on the "something appeared / left"
read-outs."""

import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import recipe
from .data import media_batch, role
from .recipe import CHANGE_PHASE, COUNT_WEIGHTS, PRETRAIN_FAMILIES, SOMETHING_POSITIVE, SOMETHING_WEIGHT, log


def parameters(model):
    """What stage 1 trains: the resampler and ObjectHead, nothing else."""
    return list(model.resampler.parameters()) + list(model.object_head.parameters())


def pretrain(model, data, val, args):
    """Stage 1: the resampler and ObjectHead alone, on every object of every
    frame (no LM: ~0.75 s a step). The logged accuracy is over every
    (object, frame) pair, most of them absent: 0.83 is "nothing anywhere"."""
    opt = torch.optim.AdamW(parameters(model), lr=args.pretrain_lr, betas=(0.9, 0.98), weight_decay=0.01)
    families = list(PRETRAIN_FAMILIES)
    started, history = time.time(), []
    total = args.pretrain_steps + args.balance_steps
    for step in range(1, total + 1):
        lr = args.pretrain_lr * min(1.0, step / args.warmup)
        if step == args.pretrain_steps + 1:
            # Balancing phase: first what is where, then how many.
            model.object_head.count_weights = torch.tensor(COUNT_WEIGHTS)
            log(f"pretrain: count classes weighted {COUNT_WEIGHTS} from here on")
        if step > args.pretrain_steps:
            lr = args.balance_lr
        # Cosine to a tenth over the whole stage, as in stage 2: at a
        # constant rate the every-object loss was still falling at the end
        # (validation count accuracy 0.908 → 0.923 over the last 200 of
        # 1,200 steps).
        lr *= 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / total))
        for g in opt.param_groups:
            g["lr"] = lr
        family = families[step % len(families)]
        feats, targets = media_batch(data, family, PRETRAIN_FAMILIES[family])
        media = model.resampler(feats)
        loss, acc = model.object_head.loss(media, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append((loss.item(), acc.item()))
        if step % args.log_every == 0 or step == total:
            spent = time.time() - started
            recent = history[-args.log_every:]
            with torch.no_grad():
                accs = [model.object_head.loss(model.resampler(f), t)[1].item()
                        for f, t in (media_batch(val, fam, 32) for fam in ("presence", "count"))]
                notes = ""
                if model.object_head.null is not None:
                    f, _ = media_batch(val, "change", 32)
                    leak = model.object_head.null_leak(*model.object_head.keys_values(model.resampler(f)))
                    notes += f"; null leak {leak.item():.4f}"
                if step % (4 * args.log_every) == 0 or step == total:
                    acc = [model.object_head.accuracies(model.resampler(f), t)
                           for f, t in (media_batch(val, fam, 32) for fam in ("motion", "change"))]
                    moving, appeared, left = (np.nanmean([a[kind] for a in acc]) for kind in (1, 2, 3))
                    notes += f"; clips: moving {moving:.3f} appeared {appeared:.3f} left {left:.3f}"
            log(f"pretrain {step}/{total} loss {np.mean([h[0] for h in recent]):.3f} "
                f"count acc {np.mean([h[1] for h in recent]):.3f} (validation {np.mean(accs):.3f}{notes}) "
                f"{spent / step:.2f} s/step, ETA {spent / step * (total - step) / 60:.1f} min")
    log(f"pretrain done: {something_report(model, val)}")


def something_loss(head, media, targets):
    """Cross-entropy of the "something" query's appeared and left
    read-outs, positives weighed SOMETHING_POSITIVE (clips only)."""
    logits, weight = head(media), torch.tensor([1.0, SOMETHING_POSITIVE])
    return sum(F.cross_entropy(logits[kind][:, -1], targets[:, -1, kind], weight=weight) for kind in (2, 3))


def something_report(model, val):
    """On every validation change clip: how often the "something" query
    reads appeared and left right, and how often those read-outs answer
    the clip's change question right."""
    items = val.by_family["change"]
    rows = [it["rows"] for it in items]
    feats = torch.from_numpy(val.feats[np.array(sum(rows, []))].astype(np.float32)).view(
        len(items), len(rows[0]), 49, recipe.FEATURE_DIM)
    targets = torch.from_numpy(np.stack([val.labels.targets(r) for r in rows]))[:, -1]
    with torch.no_grad():
        logits = model.object_head(model.resampler(feats))
    said = {kind: logits[kind][:, -1].argmax(-1) for kind in (2, 3)}
    answers = [(said[2 if role(it) == "appear" else 3][i] == 1).item() == (it["answer"] == "yes")
               for i, it in enumerate(items)]
    appeared, left = ((said[k] == targets[:, k]).float().mean().item() for k in (2, 3))
    return (f"'something' on {len(items)} validation change clips: appeared {appeared:.3f}, left {left:.3f}; "
            f"its answers to their questions {np.mean(answers):.3f}")


def change_phase(model, data, val, args):
    """Stage 1's last phase (CHANGE_PHASE), its own AdamW at --change-lr,
    cosine to a tenth."""
    head = model.object_head
    opt = torch.optim.AdamW(parameters(model), lr=args.change_lr, betas=(0.9, 0.98), weight_decay=0.01)
    log(f"change phase: {args.change_steps} steps; before: {something_report(model, val)}")
    started, history = time.time(), []
    for step in range(1, args.change_steps + 1):
        for g in opt.param_groups:
            g["lr"] = args.change_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.change_steps)))
        family, size = CHANGE_PHASE[step % len(CHANGE_PHASE)]
        feats, targets = media_batch(data, family, size)
        media = model.resampler(feats)
        loss, _ = head.loss(media, targets)
        if family in ("change", "motion"):
            loss = loss + SOMETHING_WEIGHT * something_loss(head, media, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
        if step % args.log_every == 0 or step == args.change_steps:
            spent = time.time() - started
            report = f"; {something_report(model, val)}" if step % (4 * args.log_every) == 0 else ""
            log(f"change phase {step}/{args.change_steps} loss {np.mean(history[-args.log_every:]):.3f}{report} "
                f"{spent / step:.2f} s/step, ETA {spent / step * (args.change_steps - step) / 60:.1f} min")
    log(f"change phase done: {something_report(model, val)}")


def stage_one(model, data, val, args):
    """Stage 1 of the model's resampler and ObjectHead: loaded from
    --stage1 FILE when it exists, else trained (and written there if
    given)."""
    path = args.stage1
    if path and os.path.exists(path):
        state = torch.load(path)
        trained_with = state.get("null_weight", 0.0)
        if trained_with != args.null_weight:
            raise SystemExit(f"--stage1 {path} was trained with --null-weight {trained_with}, this run asks for "
                             f"{args.null_weight}: pass the same, or another stage-1 file")
        if "place_embs" not in state["resampler"]:
            raise SystemExit(f"--stage1 {path} was trained without place embeddings, which the recipe has: "
                             "train stage 1 again (remove the file)")
        model.resampler.load_state_dict(state["resampler"])
        model.object_head.load_state_dict(state["head"])
        # Files written before the change phase existed hold the first
        # two phases only: the change phase then runs on top.
        done = state.get("change_steps", 0)
        log(f"stage 1 loaded from {path}" + ("" if done else " (without a change phase)"))
    else:
        pretrain(model, data, val, args)
        done = 0
    if args.balance_steps:
        # The change phase and stage 2's every-object loss weigh counts
        # as the balancing phase did.
        model.object_head.count_weights = torch.tensor(COUNT_WEIGHTS)
    if args.change_steps and not done:
        change_phase(model, data, val, args)
    if path and not os.path.exists(path):
        torch.save({"resampler": model.resampler.state_dict(), "head": model.object_head.state_dict(),
                    "change_steps": args.change_steps, "null_weight": args.null_weight}, path)
