"""Golden fixtures for the Rust tests: inputs made from real photos and the
outputs onnxruntime computes for them. Stored as raw little-endian arrays
with a manifest, so the Rust tests read them without Python.
"""

import hashlib
import json
import os

import numpy as np
import onnxruntime as ort

from . import preprocess as P


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tokens(features):
    """[1, C, H, W] feature map → [H·W, C] tokens, the order the runtime caches."""
    c = features.shape[1]
    return np.ascontiguousarray(features.reshape(c, -1).T)


def write(models, photos, out):
    os.makedirs(out, exist_ok=True)
    manifest = {"arrays": {}, "models": {}}

    def save(name, array):
        array = np.ascontiguousarray(array)
        ext = {np.dtype(np.uint8): "u8", np.dtype(np.float32): "f32"}[array.dtype]
        file = f"{name}.{ext}"
        array.astype(array.dtype.newbyteorder("<")).tofile(os.path.join(out, file))
        manifest["arrays"][name] = {"file": file, "dtype": ext, "shape": list(array.shape)}

    effnet_meta = json.load(open(os.path.join(models, "efficientnet-lite0.json")))
    nfnet_meta = json.load(open(os.path.join(models, "nfnet-f0.json")))
    size = effnet_meta["input"]["size"][0]
    pre = effnet_meta["preprocess"]
    images = {}
    for photo in ("chelsea", "coffee"):
        rgb = P.load_rgb(os.path.join(photos, photo + ".png"))
        images[photo] = P.to_input_image(rgb, size, pre["fit"], pre["fill"])
        save(f"{photo}_input", images[photo])

    effnet = _session(os.path.join(models, "efficientnet-lite0.onnx"))
    feats = {}
    for photo, img in images.items():
        x = P.normalize(img, pre["mean"], pre["std"])
        feats[photo] = effnet.run(None, {"image": x})[0]
        save(f"effnet_{photo}", feats[photo])

    nfnet = _session(os.path.join(models, "nfnet-f0.onnx"))
    npre = nfnet_meta["preprocess"]
    x = P.normalize(images["chelsea"], npre["mean"], npre["std"])
    save("nfnet_chelsea", nfnet.run(None, {"image": x})[0])

    resampler = _session(os.path.join(models, "resampler.onnx"))
    clip = np.stack([tokens(feats["chelsea"]), tokens(feats["coffee"])])
    save("resampler_t1", resampler.run(None, {"features": clip[:1]})[0])
    save("resampler_t2", resampler.run(None, {"features": clip})[0])

    for name in ("efficientnet-lite0", "nfnet-f0", "resampler"):
        manifest["models"][name] = _sha256(os.path.join(models, name + ".onnx"))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
