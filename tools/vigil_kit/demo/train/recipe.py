"""The demo model's recipe: its shapes, stage 2's mix, the constants each
training stage reads, and the log line. Every module of the trainer reads
it; it reads none of them."""

import sys
import time

import numpy as np

# The demo model's shape (docs/adapter-format.md, resampler.py).
# One block per question role, started by init_blocks (BLOCK_ROLES).
LAYERS = [23, 24, 25, 27, 29]
# SmolLM2-135M's layers (to check --naming-layer before the LM is loaded).
N_LM_LAYERS = 30
HEADS, HEAD_DIM, FF = 4, 64, 576
R_WIDTH, R_DEPTH, R_HEADS, R_HEAD_DIM, R_LATENTS, R_FRAMES, R_FF_MULT = 384, 2, 6, 64, 64, 8, 2
# The encoder's channels per grid place: the prepared features' (1952 for
# the demo's encoder, build.ENCODER); use_feature_width sets it from them,
# so the other modules read it as recipe.FEATURE_DIM, never by value.
FEATURE_DIM = 1952
N_PLACES = 49  # the encoder's 7×7 grid of features per frame
GATE_LR_MULT = 10.0
FITTED_LR_MULT = 0.02

KINDS = {  # batch kind → share of the steps (naming2's is then set by --naming-share; mix)
    "presence0": 0.22, "count0": 0.24, "motion0": 0.17, "change0": 0.17, "naming2": 0.14, "presence2": 0.06,
}
# Stage 2's share of 2-shot naming episodes. Without a naming block, naming
# was learnt only here: with the null query (--null-weight) the few-shot
# gain held out was +5 at 0.14 and +29 at 0.26. With the naming codes
# (NAMING_LAYER) the block carries it: +40 at 0.26, +34 at 0.14, which
# leaves the other kinds more steps and, naming episodes being the longest
# sequences, makes a step 1.4 s instead of 2.4 (f13e865:models/demo/EVAL.md).
NAMING_SHARE = 0.14
# The recipe's naming block (--naming-layer, --naming-codes): before layer
# 28, frozen, writing per-object codes learnt 100 steps for the frozen
# layers above it (validation naming, text only, 0.49 → 0.95 in ~7 min).
NAMING_LAYER = 28
NAMING_CODE_STEPS = 100
# --count-read-steps: the count block starts from stage 1's head refitted on
# counts alone (validation count stills 0.825 → 0.833; over 400 held-out
# count questions worth ~3-4 points; f13e865:models/demo/EVAL.md).
COUNT_READ_STEPS = 600
# Steps over which the frozen naming block's attention gate opens (tanh
# 0 → 1; Model.open_naming), about stage 2's first validation.
NAMING_RAMP = 200
# --naming-codes: a code's norm, at most, as a multiple of the median norm of
# the LM's states where it is written (0.25 before layer 28: text-only
# naming with held-out names 0.56 → 0.98 after 100 steps; scratch run).
NAMING_CODE_CAP = 0.25
# --naming-codes: how many other questions the codes are kept from moving.
KEEP_POOL = 512


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def use_feature_width(prep):
    """FEATURE_DIM from the features `prepare` wrote (the resampler's input
    width follows the encoder they came from)."""
    global FEATURE_DIM
    shape = np.load(f"{prep}/train_features.npy", mmap_mode="r").shape
    if len(shape) != 3 or shape[1] != N_PLACES:
        raise SystemExit(f"{prep}/train_features.npy: shape {shape}, expected [frames, {N_PLACES}, channels]: "
                         "prepare it again (scripts/demo-model.sh train)")
    FEATURE_DIM = int(shape[2])


# The count classes 0-3 as weighed in pretrain's optional balancing phase
# (--balance-steps). Over every (object, frame) pair 83 % of counts are 0
# and only 2.6 % are 2, 2.5 % are 3, so the plain loss learnt "0 or 1":
# after 1,200 steps the head read the asked object's count right on 53 %
# of count stills (0 % of the 2s). 400 more steps with these weights: 75 %
# (2s: 41 %, 3s: 70 %; with 1, 2, 5, 5: 69 %). Measured on validation.
# With the decaying stage 1 (2,000 + 400 steps) the head
# read the asked object's count right on 74 % of count stills, 65 % without
# the balancing phase (2,400 plain steps), and the model's held-out counts
# were 0.72 either way, presence 0.92 vs 0.90 (f13e865:models/demo/EVAL.md): on by default.
COUNT_WEIGHTS = (1.0, 3.0, 10.0, 10.0)

PRETRAIN_FAMILIES = {"presence": 32, "count": 32, "single": 32, "motion": 12, "change": 12}  # family → scenes per step

# Stage 1's last phase (--change-steps). Change questions ask about
# "something" ("Did something appear?"), which ObjectHead reads through its
# one extra query; in the every-object loss that query is 1 of 11 and a
# change happens in a third of the clips, so it learnt little: after the
# 2,400 steps of the two phases before, it read "something appeared" right
# on 80 % of validation change clips and "left" on 78 % (always "no":
# 74 %, 63 %; the logged clip figures, 0.96-0.99, average over every
# object, most never there). This phase weighs that query's two read-outs
# by SOMETHING_WEIGHT, their positive class by SOMETHING_POSITIVE, and
# draws change clips three times in seven steps: 400 steps (4.5 min) →
# 0.91 / 0.91, the head's answers to the change questions 0.75 → 0.89,
# presence, counts and motion no worse (validation; without the weighting,
# the same steps: 0.85 / 0.83, answers 0.78); on the held-out clips its
# answers 0.78 → 0.87. The two models first trained on it did not carry
# that into their answers (held-out change 0.77 and 0.75 vs 0.73): the
# other blocks' null queries wrote their own evidence at the change
# positions. With the null query of --null-weight they do not: with both,
# held out, change 0.90, presence 0.97, motion 0.94, count 0.75 (the
# few-shot gain, +5, came back with NAMING_SHARE; f13e865:models/demo/EVAL.md).
SOMETHING_WEIGHT, SOMETHING_POSITIVE = 2.0, 2.0
CHANGE_PHASE = [("change", 24), ("presence", 32), ("change", 24), ("count", 32), ("change", 24), ("motion", 12),
                ("single", 32)]


# What each block starts out reading (init_blocks): the question role whose
# answer position it serves, the ObjectHead read-out (target kind) whose
# evidence it writes, and which answer tokens it writes towards. Presence
# and count get a block each: a count's digit is decided one token later
# than a yes/no (" 2" is " " then "2"), and one output projection writing
# both yes/no and digits pushed " yes" where a count's " " belongs.
BLOCK_ROLES = {
    23: ("presence", 0, "any"), 24: ("count", 0, "digits"),
    25: ("motion", 1, "yes"), 27: ("appear", 2, "yes"), 29: ("leave", 3, "yes"),
}


NOISY_COPIES = 15


# The answers the runtime chooses between, per kind; it decides on the first
# token where they differ: the only one of " yes"/" no", a count's digit.
CHOICES = {"presence0": (" yes", " no"), "count0": tuple(f" {c}" for c in range(4)), "motion0": (" yes", " no"),
           "change0": (" yes", " no"), "presence2": (" yes", " no")}
