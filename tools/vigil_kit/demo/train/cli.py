"""The trainer's command line: the committed recipe by default, each option
one a person may tune, checked before anything loads."""

import argparse
import os

from .recipe import COUNT_READ_STEPS, LAYERS, N_LM_LAYERS, NAMING_CODE_STEPS, NAMING_LAYER, NAMING_SHARE
from .stage2 import train
from .validate import check, validate


def parser():
    p = argparse.ArgumentParser(prog="vigil_kit.demo.train")
    p.add_argument("--prep", required=True, help="the folder `vigil_kit.demo prepare` wrote")
    p.add_argument("--out", help="the trained weights (.npz; with --check, the check file)")
    p.add_argument("--steps", type=int, default=1400, help="steps of the second stage (the blocks on the answers)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--pretrain-steps", type=int, default=2000,
                   help="stage 1: steps of the resampler alone on every frame's objects; --balance-steps follow them")
    p.add_argument("--pretrain-lr", type=float, default=1e-3)
    p.add_argument("--balance-steps", type=int, default=400,
                   help="stage 1's second phase: steps more with the count classes weighted (COUNT_WEIGHTS; 0: none)")
    p.add_argument("--balance-lr", type=float, default=5e-4)
    p.add_argument("--change-steps", type=int, default=400,
                   help="stage 1's last phase: steps more on the 'something appeared / left' read-outs that change "
                        "questions ask for (CHANGE_PHASE; 0: none)")
    p.add_argument("--change-lr", type=float, default=3e-4)
    p.add_argument("--null-weight", type=float, default=2.0,
                   help="stage 1 (and the every-object loss after it): weight of the loss that teaches ObjectHead's "
                        "null query to read nothing (ObjectHead.null_leak; 0: no null query)")
    p.add_argument("--state-noise", type=float, default=0.04,
                   help="relative noise on the hidden states entering each block while training, and on those the "
                        "blocks' query maps are fitted on (state_noise; the runtime's LM differs by ~0.03)")
    p.add_argument("--naming-share", type=float, default=NAMING_SHARE,
                   help="share of stage 2's steps spent on 2-shot naming episodes (NAMING_SHARE; the other kinds "
                        "keep KINDS' ratios)")
    p.add_argument("--object-weight", type=float, default=0.5,
                   help="weight of the every-object loss on the resampler while the blocks train (0: off)")
    p.add_argument("--stage1", help="stage 1's result: loaded when the file exists, else written after stage 1 "
                                    "(to try second stages without redoing the first)")
    p.add_argument("--stage1-only", action="store_true",
                   help="train stage 1, write it to --stage1 FILE and stop; a later run with the same --stage1 FILE "
                        "runs stage 2 from its own seeds, as one loading that file always does (scripts/demo-model.sh "
                        "train: the committed model's stage 2 is reproducible from the saved stage 1)")
    p.add_argument("--naming-layer", type=int, default=NAMING_LAYER,
                   help="one more block, before this LM layer, frozen, writing per-object codes learnt so that the "
                        "frozen LM layers above it answer naming episodes (NAMING_LAYER; 0: none)")
    p.add_argument("--naming-codes", type=int, default=NAMING_CODE_STEPS, metavar="STEPS",
                   help="steps that learn the naming block's codes (naming_codes)")
    p.add_argument("--count-read-steps", type=int, default=COUNT_READ_STEPS,
                   help="the count block starts from a copy of stage 1's head refitted this many steps on counts "
                        "alone (count_reader; 0: from stage 1's head as it is)")
    p.add_argument("--init-scale", type=float, default=30.0,
                   help="how far one unit of a started block's evidence moves the residual (init_blocks)")
    p.add_argument("--vigil", help="the runtime's binary: with --lm, stage 2 also trains on the runtime's own hidden "
                                   "states entering the first block (`vigil lm-states`; --runtime-share)")
    p.add_argument("--lm", help="the GGUF the runtime answers with (the one `prepare` dequantized)")
    p.add_argument("--runtime-share", type=float, default=0.5,
                   help="with --vigil: share of stage 2's rows whose states come from the runtime (the rest: the "
                        "f32 pass); validation always uses the runtime's")
    p.add_argument("--check", action="store_true", help="write a forward-pass check file instead of training")
    p.add_argument("--validate", metavar="WEIGHTS",
                   help="instead of training: every validation question through these trained weights (.npz), "
                        "accuracy per family (with --vigil/--lm on the runtime's states, else f32)")
    p.add_argument("--contributions", action="store_true",
                   help="with --validate: what each block adds to the yes − no logit of yes and of no items")
    return p


def checked(p, args):
    """The arguments, or p.error saying which is wrong and how to fix it."""
    if not 0.0 <= args.naming_share < 1.0:
        p.error(f"--naming-share {args.naming_share}: a share of the steps, from 0 up to (not including) 1")
    if args.pretrain_steps <= 0:
        p.error(f"--pretrain-steps {args.pretrain_steps}: the blocks start from stage 1 (init_blocks): "
                "a number of steps above 0")
    if not 0 <= args.naming_layer < N_LM_LAYERS or args.naming_layer in LAYERS:
        p.error(f"--naming-layer {args.naming_layer}: an LM layer from 1 to {N_LM_LAYERS - 1} without a block "
                f"already (blocks: {LAYERS}); or 0 for none")
    if args.naming_layer and args.naming_codes <= 0:
        p.error(f"--naming-codes {args.naming_codes}: the naming block writes learnt codes: a number of steps "
                "above 0 (or --naming-layer 0 for no naming block)")
    args.naming_layer = args.naming_layer or None
    if args.count_read_steps < 0:
        p.error(f"--count-read-steps {args.count_read_steps}: a number of steps, 0 (off) or more")
    if bool(args.vigil) != bool(args.lm):
        p.error("--vigil and --lm go together: the runtime's binary and the GGUF it answers with")
    if args.vigil and not (os.path.isfile(args.vigil) and os.access(args.vigil, os.X_OK)):
        p.error(f"--vigil {args.vigil}: not an executable file (build it: make release)")
    if args.lm and not os.path.isfile(args.lm):
        p.error(f"--lm {args.lm}: no such file (fetch it: make models)")
    if not 0.0 <= args.runtime_share <= 1.0:
        p.error(f"--runtime-share {args.runtime_share}: a share of the rows, from 0 to 1")
    if args.stage1_only:
        if not args.stage1:
            p.error("--stage1-only writes stage 1 to --stage1 FILE: pass --stage1 FILE")
        if os.path.exists(args.stage1):
            p.error(f"--stage1-only: --stage1 {args.stage1} exists and would be loaded, not trained: remove it, "
                    "or drop --stage1-only to run stage 2 from it")
        if args.check or args.validate:
            p.error("--stage1-only trains: it does not go with --check or --validate")
    elif not args.out and not args.validate:
        p.error("--out is needed: the file to write the trained weights (or the check) to")
    if args.validate and not os.path.isfile(args.validate):
        p.error(f"--validate {args.validate}: no such file")
    if args.contributions and not args.validate:
        p.error("--contributions goes with --validate WEIGHTS")
    return args


def main():
    p = parser()
    args = checked(p, p.parse_args())
    if args.check:
        check(args)
    elif args.validate:
        validate(args)
    else:
        train(args)
