"""Trained weights (the trainer's .npz) → the runtime's files:
resampler-demo.onnx/.json (tract) and xattn-smollm2-demo.gguf (llama.cpp
side, matrices in Q8_0), plus training.json (how they were made)."""

import json
import os

import numpy as np
import onnx

from .. import gguf_lm, resampler, xattn
from . import sources

RESAMPLER = "resampler-demo"
ADAPTER = "xattn-smollm2-demo.gguf"


def load(weights):
    z = np.load(weights)
    config = json.loads(str(z["config"]))
    return z, config


def export(weights, lm_path, encoder_meta, out):
    os.makedirs(out, exist_ok=True)
    z, config = load(weights)
    encoder = json.load(open(encoder_meta))
    rc = config["resampler"]
    if rc["feature_dim"] != encoder["feature_dim"]:
        raise SystemExit(f"{weights}: trained on {rc['feature_dim']}-wide features, {encoder_meta} gives {encoder['feature_dim']}")
    w = {"config": rc}
    w.update({k[len("resampler."):]: z[k] for k in z.files if k.startswith("resampler.")})
    tpf = encoder["tokens_per_frame"]
    # Matrices in float16: models/demo/ stays under the 20 MB it may take
    # (with --where's second resampler the float32 file alone was 25 MB).
    # The Python reference runs the same file, so the two still agree.
    model = resampler.build(w, tpf, half_weights=True)
    meta = resampler.metadata(w, tpf, trained=True)
    meta["weights"] = f"trained (vigil demo model, {config['training']['steps']} steps)"
    onnx.save(model, os.path.join(out, RESAMPLER + ".onnx"))
    with open(os.path.join(out, RESAMPLER + ".json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")

    blocks = {layer: {} for layer in config["layers"]}
    for k in z.files:
        if k.startswith("xattn."):
            _, layer, name = k.split(".", 2)
            blocks[int(layer)][name] = z[k]
    adapter_config = dict(layers=config["layers"], heads=config["heads"], head_dim=config["head_dim"],
                          ff_length=config["ff_length"], visual_dim=resampler.visual_width(rc), eps=1e-5)
    lm = gguf_lm.LM(lm_path)
    xattn.Adapter(adapter_config, blocks, lm.identity(), trained=trained_on(config)).write(
        os.path.join(out, ADAPTER), matrix_type="q8_0")
    with open(os.path.join(out, "training.json"), "w") as f:
        json.dump(config, f, indent=1)
        f.write("\n")
    gates = {layer: [round(float(np.tanh(b["attn_gate"][0])), 3), round(float(np.tanh(b["ffn_gate"][0])), 3)]
             for layer, b in blocks.items()}
    print(f"wrote {out}/{RESAMPLER}.onnx/.json, {ADAPTER} (gates tanh: {gates}), training.json", flush=True)


def trained_on(config):
    """What the demo model was trained on, for the adapter's metadata: every
    object its scenes show, and the question families of stage 2's mix
    ("presence0", "naming2", … → presence, naming)."""
    families = []
    for kind in config["training"]["kinds"]:
        family = kind.rstrip("0123456789")
        if family not in families:
            families.append(family)
    return {"objects": list(sources.OBJECTS), "families": families}
