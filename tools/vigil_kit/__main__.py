"""python -m vigil_kit COMMAND — see `--help`."""

import argparse
import json
import os
import sys

import numpy as np
import onnx

from . import efficientnet, fixtures, gguf_lm, nfnet, preprocess, resampler, safetensors, selftest, xattn

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
    plain = session.run(None, {"image": x})[0]
    probs = efficientnet.classify(plain, sd)
    top5 = [int(i) for i in np.argsort(-probs)[:5]]
    print(f"efficientnet-lite0 check: chelsea.png top-5 ImageNet classes {top5}", flush=True)
    if not CAT_CLASSES & set(top5):
        sys.exit("efficientnet-lite0 export is wrong: the cat photo is not a cat in the top 5")
    _save(model, meta, args.out, "efficientnet-lite0")
    # The demo model's encoder: the same network, one more map (efficientnet.WIDE_BLOCK).
    # Its first FEATURE_DIM channels must be the plain graph's.
    wide, _ = efficientnet.build(sd, wide=True)
    both = ort.InferenceSession(wide.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    diff = float(np.abs(both[:, : efficientnet.FEATURE_DIM] - plain).max())
    print(f"efficientnet-lite0-wide check: output {list(both.shape)}, head channels vs the plain graph max |diff| {diff:.2e}",
          flush=True)
    if both.shape[1] != efficientnet.FEATURE_DIM + efficientnet.WIDE_CHANNELS or diff > 1e-4:
        sys.exit("efficientnet-lite0-wide export is wrong: its head channels differ from the plain graph's")
    _save(wide, efficientnet.metadata(spatial, wide=True), args.out, "efficientnet-lite0-wide")


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


def random_adapter(args):
    lm = gguf_lm.LM(args.lm)
    layers = [int(x) for x in args.layers.split(",")] if args.layers else xattn.default_layers(lm.n_layer, args.blocks)
    if not args.unchecked:
        bad = [n for n in layers if not 1 <= n < lm.n_layer]
        if bad:
            sys.exit(f"layers {bad} out of range: blocks go before LM layers 1..{lm.n_layer - 1}")
    adapter = xattn.random_adapter(lm, layers, visual_dim=args.visual_dim, gate=args.gate, seed=args.seed)
    if args.values_of:
        adapter.round_matrices(args.values_of)
    lie = dict(kv.split("=", 1) for kv in args.lie)
    adapter.write(args.out, matrix_type=args.type, drop=set(args.drop), lie=lie)
    print(f"wrote {args.out}: blocks before layers {layers}, gates tanh({args.gate})", flush=True)


def lm_reference(args):
    """Reference logits for the prompts of a request written by the Rust tests."""
    request = json.load(open(args.request))
    lm = gguf_lm.LM(request["lm"])
    adapter = xattn.Adapter.read(request["adapter"]) if request.get("adapter") else None
    media_kv = None
    if adapter is not None:
        v = request["visual"]
        visual = np.fromfile(v["path"], dtype="<f4").reshape(v["count"], v["tokens"], v["dim"])
        media_kv = {layer: [adapter.media_kv(layer, m) for m in visual] for layer in adapter.blocks}
    with open(request["out"], "wb") as out:
        for prompt in request["prompts"]:
            logits = lm.forward(prompt["tokens"], prompt["media"], adapter, media_kv)
            out.write(np.ascontiguousarray(logits[prompt["rows"]], dtype="<f4").tobytes())
    print(f"reference logits for {len(request['prompts'])} prompts in {request['out']}", flush=True)


def token_embeddings(args):
    """The LM's input embedding rows for some tokens (raw little-endian f32),
    for the test that feeds them through llama.cpp's embedding batch."""
    lm = gguf_lm.LM(args.lm)
    rows = lm.w("token_embd.weight")[[int(t) for t in args.tokens.split(",")]]
    rows.astype("<f4").tofile(args.out)


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
    p = sub.add_parser("random-adapter", help="write a random gated cross-attention adapter for a GGUF LM")
    p.add_argument("--lm", required=True, help="the LM's .gguf")
    p.add_argument("--out", required=True, help="adapter .gguf to write")
    p.add_argument("--blocks", type=int, default=4, help="number of blocks, evenly spaced (default 4)")
    p.add_argument("--layers", help="LM layers that get a block before them, e.g. 6,12,18,24")
    p.add_argument("--visual-dim", type=int, default=384, help="width of the visual tokens (the resampler's)")
    p.add_argument("--gate", type=float, default=0.1, help="raw gate value (fed through tanh); 0 = frozen LM")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--type", choices=["f16", "f32", "q8_0"], default="f16", help="storage of the weight matrices")
    p.add_argument("--values-of", choices=["q8_0"],
                   help="round the matrices through this type first, whatever --type stores (an f32 twin of a q8_0 file)")
    p.add_argument("--drop", action="append", default=[], help="leave this tensor out (error tests)")
    p.add_argument("--lie", action="append", default=[], help="KEY=VALUE metadata override (error tests)")
    p.add_argument("--unchecked", action="store_true", help="allow out-of-range layers (error tests)")
    p.set_defaults(run=random_adapter)
    p = sub.add_parser("lm-reference", help="reference logits (numpy) for a JSON request from the Rust tests")
    p.add_argument("request")
    p.set_defaults(run=lm_reference)
    p = sub.add_parser("token-embeddings", help="write an LM's input embedding rows for some tokens")
    p.add_argument("--lm", required=True)
    p.add_argument("--tokens", required=True, help="comma-separated token ids")
    p.add_argument("--out", required=True, help="raw little-endian f32 file")
    p.set_defaults(run=token_embeddings)
    p = sub.add_parser("selftest", help="check the weight readers on files written here")
    p.set_defaults(run=lambda a: selftest.main())
    args = parser.parse_args()
    if args.command in ("effnet", "nfnet", "resampler", "fixtures"):
        os.makedirs(args.out, exist_ok=True)
    args.run(args)


if __name__ == "__main__":
    main()
