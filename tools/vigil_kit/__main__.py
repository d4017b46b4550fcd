"""python -m vigil_kit COMMAND — see `--help`."""

import argparse
import json
import os
import sys

import numpy as np
import onnx

from . import efficientnet, fixtures, nfnet, preprocess, resampler, safetensors, selftest

# ImageNet classes 281-285 are the domestic cats (tabby ... Egyptian cat).
CAT_CLASSES = set(range(281, 286))


def _save(model, meta, out, name):
    onnx.save(model, os.path.join(out, name + ".onnx"))
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.join(out, name)}.onnx and .json", flush=True)


def export_effnet(args):
    sd = efficientnet.load_weights(args.weights)
    model, spatial = efficientnet.build(sd)
    meta = efficientnet.metadata(spatial)
    # Proof the conversion is right: the original classifier head on our
    # feature map still calls the cat photo a cat.
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rgb = preprocess.load_rgb(os.path.join(args.photos, "chelsea.png"))
    img = preprocess.to_input_image(rgb, 224, "crop")
    x = preprocess.normalize(img, meta["preprocess"]["mean"], meta["preprocess"]["std"])
    probs = efficientnet.classify(session.run(None, {"image": x})[0], sd)
    top5 = [int(i) for i in np.argsort(-probs)[:5]]
    print(f"efficientnet-lite0 check: chelsea.png top-5 ImageNet classes {top5}", flush=True)
    if not CAT_CLASSES & set(top5):
        sys.exit("efficientnet-lite0 export is wrong: the cat photo is not a cat in the top 5")
    _save(model, meta, args.out, "efficientnet-lite0")


def export_nfnet(args):
    if args.checkpoint:
        sd, weights = safetensors.load(args.checkpoint), f"timm checkpoint {os.path.basename(args.checkpoint)}"
    else:
        sd, weights = nfnet.random_state_dict(seed=0), "random (seed 0): no NFNet weights are published offline"
    model, spatial = nfnet.build(sd)
    _save(model, nfnet.metadata(spatial, weights), args.out, "nfnet-f0")


def export_resampler(args):
    encoder = json.load(open(args.encoder_meta))
    w = resampler.random_weights(encoder["feature_dim"], width=args.width, depth=args.depth)
    model = resampler.build(w, encoder["tokens_per_frame"])
    _save(model, resampler.metadata(w, encoder["tokens_per_frame"]), args.out, "resampler")


def main():
    parser = argparse.ArgumentParser(prog="vigil_kit")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("effnet", help="export EfficientNet-Lite0 (real ImageNet weights)")
    p.add_argument("--weights", required=True, help="efficientnet-lite0-57934424.pth")
    p.add_argument("--photos", required=True, help="folder with chelsea.png")
    p.add_argument("--out", required=True)
    p.set_defaults(run=export_effnet)
    p = sub.add_parser("nfnet", help="export NFNet-F0 (random weights, or a timm .safetensors)")
    p.add_argument("--checkpoint", help="dm_nfnet_f0 .safetensors from timm")
    p.add_argument("--out", required=True)
    p.set_defaults(run=export_nfnet)
    p = sub.add_parser("resampler", help="export a random-init Perceiver Resampler for an encoder")
    p.add_argument("--encoder-meta", required=True, help="the encoder's .json")
    p.add_argument("--width", type=int, default=384)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--out", required=True)
    p.set_defaults(run=export_resampler)
    p = sub.add_parser("fixtures", help="write the golden fixtures for the Rust tests")
    p.add_argument("--models", required=True)
    p.add_argument("--photos", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(run=lambda a: fixtures.write(a.models, a.photos, a.out))
    p = sub.add_parser("selftest", help="check the weight readers on files written here")
    p.set_defaults(run=lambda a: selftest.main())
    args = parser.parse_args()
    os.makedirs(getattr(args, "out", "."), exist_ok=True)
    args.run(args)


if __name__ == "__main__":
    main()
