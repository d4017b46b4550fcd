"""The demo model's data, export and reference (run in the kit's virtualenv;
training itself runs under Debian's python3-torch: `python3 -m
vigil_kit.demo.train`). See scripts/demo-model.sh for the order."""

import argparse


def main():
    parser = argparse.ArgumentParser(prog="vigil_kit.demo")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="training/validation pools: features, token ids, the dequantized LM")
    p.add_argument("--data", required=True, help="the repo's data/ (scripts/setup.sh fills it)")
    p.add_argument("--models", required=True, help="folder with efficientnet-lite0.onnx/.json")
    p.add_argument("--lm", required=True, help="the LM .gguf the runtime loads")
    p.add_argument("--vigil", required=True, help="the vigil binary (for its tokenizer)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    p = sub.add_parser("labels", help="each prepared frame's objects, drawn again from the seed (for training)")
    p.add_argument("--data", required=True)
    p.add_argument("--prep", required=True, help="the folder `prepare` wrote")
    p.add_argument("--seed", type=int, default=1, help="the seed `prepare` was given")
    p = sub.add_parser("evalset", help="a held-out dataset for `vigil eval` (PNGs + dataset.json)")
    p.add_argument("--data", required=True)
    p.add_argument("--per-family", type=int, default=100)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", required=True)
    p = sub.add_parser("export", help="trained weights (.npz) → resampler ONNX + adapter GGUF + metadata")
    p.add_argument("--weights", required=True)
    p.add_argument("--lm", required=True)
    p.add_argument("--encoder-meta", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("reference", help="answer a dataset with the Python reference (numpy LM, onnxruntime)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--models", required=True)
    p.add_argument("--lm", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--resampler", required=True)
    p.add_argument("--vigil", required=True, help="the vigil binary (for its tokenizer)")
    p.add_argument("--check", help="instead: compare a `train --check` file with the reference")
    p = sub.add_parser("scenario", help="the demo clip: real footage with objects arriving at known times")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True, help="the .avi to write (MJPEG); its .json of events beside it")
    args = parser.parse_args()
    if args.command == "prepare":
        from . import build

        build.prepare(args.data, args.models, args.lm, args.vigil, args.out, args.seed)
    elif args.command == "labels":
        from . import labels

        labels.write(args.data, args.prep, args.seed)
    elif args.command == "evalset":
        from . import build

        build.evalset(args.data, args.out, args.seed, args.per_family)
    elif args.command == "export":
        from . import export

        export.export(args.weights, args.lm, args.encoder_meta, args.out)
    elif args.command == "reference":
        from . import reference

        if args.check:
            reference.check(args.check, args.lm)
        else:
            reference.run(args.dataset, args.models, args.lm, args.adapter, args.resampler, args.vigil)
    elif args.command == "scenario":
        from . import scenario

        scenario.write(args.data, args.out)


if __name__ == "__main__":
    main()
