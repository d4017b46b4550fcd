"""The onnxruntime reference for `vigil bench vision`: the same models, the
same inputs' shapes, the same thread count, median of N runs after two
warm-up runs. Prints `name: value` lines with the names vigil prints.

    python benches/vision_ort.py --encoder models/x.onnx --label x --resampler models/r.onnx --frames 1,4,8
"""

import argparse
import json
import os
import statistics
import time

import numpy as np
import onnxruntime as ort


def session(path, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def median_ms(runs, f):
    for _ in range(2):
        f()
    times = []
    for _ in range(max(runs, 1)):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--encoder")
    p.add_argument("--label", default="encoder")
    p.add_argument("--resampler")
    p.add_argument("--frames", default="1")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    if a.encoder:
        meta = json.load(open(os.path.splitext(a.encoder)[0] + ".json"))
        h, w = meta["input"]["size"]
        s = session(a.encoder, a.threads)
        x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
        print(f"{a.label}_ms: {median_ms(a.runs, lambda: s.run(None, {'image': x})):.2f}", flush=True)
    if a.resampler:
        meta = json.load(open(os.path.splitext(a.resampler)[0] + ".json"))
        s = session(a.resampler, a.threads)
        for t in (int(v) for v in a.frames.split(",")):
            x = np.random.default_rng(0).standard_normal((t, meta["tokens_per_frame"], meta["feature_dim"])).astype(np.float32)
            print(f"resampler_t{t}_ms: {median_ms(a.runs, lambda: s.run(None, {'features': x})):.2f}", flush=True)


if __name__ == "__main__":
    main()
