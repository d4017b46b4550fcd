"""The NFNet-F0 topology in timm's dm_nfnet_f0 layout → ONNX.

Written from the architecture as published (Brock et al. 2021, and timm's
parameter names so a real checkpoint loads): a four-conv stem, stages of
normalizer-free bottleneck blocks with depths (1, 2, 6, 3) and widths
(256, 512, 1536, 1536), grouped 3x3 convs of group width 128, an extra
3x3 conv per block, squeeze-excite after the last conv (gain 2), a learned
skip gain, residual scaling alpha = 0.2 with beta = 1/expected std, and
GELU scaled by its signal-preserving gamma. Convolutions are scaled
weight-standardised; since the weights are frozen, the standardisation is
done here, once, and the ONNX graph holds plain convolutions.

No NFNet weights can be fetched here, so `random_state_dict` makes
deterministic random ones; `safetensors.load` reads a timm checkpoint.
"""

import numpy as np

from .graph import Graph, same_pads
from .metadata import encoder as encoder_metadata

DEPTHS = (1, 2, 6, 3)
CHANNELS = (256, 512, 1536, 1536)
STEM = (16, 32, 64, 128)
STEM_STRIDES = (2, 1, 1, 2)
GROUP_WIDTH = 128
ALPHA = 0.2
GELU_GAMMA = 1.7015043497085571
ATTN_GAIN = 2.0
STD_EPS = 1e-5
FEATURE_DIM = 3072
INPUT_SIZE = 224


def _make_divisible(v, divisor=8):
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def blocks():
    """Yields (prefix, in_ch, out_ch, mid_ch, groups, stride, beta)."""
    prev = STEM[-1]
    expected_var = 1.0
    for s, (depth, ch) in enumerate(zip(DEPTHS, CHANNELS)):
        stride = 1 if s == 0 else 2
        for b in range(depth):
            mid = _make_divisible(ch * 0.5)
            groups = mid // GROUP_WIDTH
            mid = GROUP_WIDTH * groups
            yield (f"stages.{s}.{b}", prev, ch, mid, groups, stride if b == 0 else 1, 1.0 / expected_var**0.5)
            if b == 0:
                expected_var = 1.0
            expected_var += ALPHA**2
            prev = ch


def _conv_param_shapes():
    shapes = {}

    def conv(name, cin, cout, k, groups=1):
        shapes[name] = (cout, cin // groups, k, k)

    cin = 3
    for i, c in enumerate(STEM):
        conv(f"stem.conv{i + 1}", cin, c, 3)
        cin = c
    for p, cin, cout, mid, groups, stride, _ in blocks():
        if cin != cout or stride != 1:
            conv(p + ".downsample.conv", cin, cout, 1)
        conv(p + ".conv1", cin, mid, 1)
        conv(p + ".conv2", mid, mid, 3, groups)
        conv(p + ".conv2b", mid, mid, 3, groups)
        conv(p + ".conv3", mid, cout, 1)
    conv("final_conv", CHANNELS[-1], FEATURE_DIM, 1)
    return shapes


def random_state_dict(seed=0):
    """Deterministic random weights with timm's names and shapes."""
    rng = np.random.default_rng(seed)
    sd = {}
    for name, shape in _conv_param_shapes().items():
        sd[name + ".weight"] = rng.standard_normal(shape, dtype=np.float32)
        sd[name + ".gain"] = np.ones((shape[0], 1, 1, 1), np.float32)
        sd[name + ".bias"] = np.zeros(shape[0], np.float32)
    for p, _cin, cout, _mid, _g, _s, _b in blocks():
        rd = _make_divisible(cout * 0.5)
        sd[p + ".attn_last.fc1.weight"] = (rng.standard_normal((rd, cout, 1, 1), dtype=np.float32) / np.sqrt(cout)).astype(np.float32)
        sd[p + ".attn_last.fc1.bias"] = np.zeros(rd, np.float32)
        sd[p + ".attn_last.fc2.weight"] = (rng.standard_normal((cout, rd, 1, 1), dtype=np.float32) / np.sqrt(rd)).astype(np.float32)
        sd[p + ".attn_last.fc2.bias"] = np.zeros(cout, np.float32)
        # Trained models learn small skip gains; zero would switch blocks off.
        sd[p + ".skipinit_gain"] = np.array(0.5, np.float32)
    return sd


def standardize(weight, gain, eps=STD_EPS):
    """Scaled weight standardisation, as timm's ScaledStdConv2d computes it."""
    w = weight.reshape(weight.shape[0], -1).astype(np.float64)
    mean = w.mean(axis=1, keepdims=True)
    var = w.var(axis=1, keepdims=True)
    fan_in = w.shape[1]
    w = (w - mean) / np.sqrt(var + eps) * (fan_in**-0.5)
    w = w.reshape(weight.shape) * gain.reshape(-1, 1, 1, 1)
    return w.astype(np.float32)


def build(sd, size=INPUT_SIZE):
    g = Graph("dm_nfnet_f0")
    x = g.input("image", [1, 3, size, size])
    spatial = size

    def conv(x, spatial, name, stride=1, groups=1):
        w = standardize(sd[name + ".weight"], sd[name + ".gain"])
        k = w.shape[2]
        top, bottom, out = same_pads(spatial, k, stride)
        return g.conv(x, w, sd[name + ".bias"], stride=stride, pads=(top, top, bottom, bottom), group=groups), out

    def act(x):
        return g.op("Mul", [g.gelu(x), g.scalar(GELU_GAMMA)], "gamma_act")

    for i, stride in enumerate(STEM_STRIDES):
        x, spatial = conv(x, spatial, f"stem.conv{i + 1}", stride)
        if i != len(STEM) - 1:
            x = act(x)
    for p, cin, cout, _mid, groups, stride, beta in blocks():
        pre = g.op("Mul", [act(x), g.scalar(beta)], "beta")
        shortcut = x
        if cin != cout or stride != 1:
            pooled = pre
            if stride > 1:
                pooled = g.op("AveragePool", [pre], "pool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
            shortcut, _ = conv(pooled, spatial // stride, p + ".downsample.conv")
        out, _ = conv(pre, spatial, p + ".conv1")
        out, out_spatial = conv(act(out), spatial, p + ".conv2", stride, groups)
        out, _ = conv(act(out), out_spatial, p + ".conv2b", 1, groups)
        out, _ = conv(act(out), out_spatial, p + ".conv3")
        # Squeeze-excite on the block output, with the NF gain of 2.
        se = g.op("GlobalAveragePool", [out], "se_pool")
        se = g.conv(se, sd[p + ".attn_last.fc1.weight"], sd[p + ".attn_last.fc1.bias"], hint="se_fc1")
        se = g.op("Relu", [se])
        se = g.conv(se, sd[p + ".attn_last.fc2.weight"], sd[p + ".attn_last.fc2.bias"], hint="se_fc2")
        se = g.op("Sigmoid", [se])
        out = g.op("Mul", [out, se], "se_gate")
        scale = float(ATTN_GAIN * sd[p + ".skipinit_gain"] * ALPHA)
        out = g.op("Mul", [out, g.scalar(scale)], "residual_scale")
        x = g.op("Add", [out, shortcut], "residual")
        spatial = out_spatial
    x, _ = conv(x, spatial, "final_conv")
    x = act(x)
    g.output(x, "features", [1, FEATURE_DIM, spatial, spatial])
    return g.model("NFNet-F0 (dm_nfnet_f0 layout), spatial features before pooling"), spatial


def metadata(spatial, weights, size=INPUT_SIZE):
    return encoder_metadata(
        "nfnet-f0",
        size,
        spatial,
        FEATURE_DIM,
        {"fit": "letterbox", "fill": [124, 116, 104], "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
        weights=weights,
    )