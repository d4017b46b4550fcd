"""The reference for turning an RGB frame into an encoder's input. The Rust
side (src/vision/preprocess.rs) implements the same steps and is tested
against this output:

1. fit the frame into the model's square input: `crop` (scale the shorter
   side to fit, cut the centre), `letterbox` (scale the longer side to fit,
   pad with `fill`), or `stretch`;
2. resize with a separable triangle (bilinear) filter whose support widens
   with the scale factor when shrinking, so downscaling averages instead of
   aliasing; sample centres at half-pixel offsets;
3. round to 8 bits, as an image (so both sides agree to within one level);
4. normalise per channel: (pixel - mean) / std, NCHW float32.
"""

import numpy as np


def _weights(in_size, out_size, offset, extent):
    """Resampling matrix [out_size, in_size] mapping the input span
    [offset, offset + extent) onto out_size pixels."""
    scale = extent / out_size
    support = max(scale, 1.0)
    m = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = offset + (i + 0.5) * scale
        lo = max(int(np.floor(center - support)), 0)
        hi = min(int(np.ceil(center + support)), in_size)
        xs = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs(xs + 0.5 - center) / support)
        total = w.sum()
        if total > 0:
            m[i, lo:hi] = w / total
    return m


def fit_geometry(width, height, size, fit):
    """Returns (src_x, src_y, src_w, src_h, dst_x, dst_y, dst_w, dst_h)."""
    if fit == "stretch":
        return 0.0, 0.0, float(width), float(height), 0, 0, size, size
    if fit == "crop":
        side = min(width, height)
        return (width - side) / 2.0, (height - side) / 2.0, float(side), float(side), 0, 0, size, size
    if fit == "letterbox":
        if width >= height:
            dw, dh = size, max(1, round(size * height / width))
        else:
            dw, dh = max(1, round(size * width / height)), size
        return 0.0, 0.0, float(width), float(height), (size - dw) // 2, (size - dh) // 2, dw, dh
    raise ValueError(f"unknown fit {fit!r}: use crop, letterbox or stretch")


def to_input_image(rgb, size, fit, fill=(127, 127, 127)):
    """uint8 [H, W, 3] → uint8 [size, size, 3]."""
    height, width, _ = rgb.shape
    sx, sy, sw, sh, dx, dy, dw, dh = fit_geometry(width, height, size, fit)
    wy = _weights(height, dh, sy, sh)
    wx = _weights(width, dw, sx, sw)
    src = rgb.astype(np.float64)
    rows = np.einsum("oh,hwc->owc", wy, src)
    resized = np.einsum("pw,owc->opc", wx, rows)
    out = np.empty((size, size, 3), dtype=np.uint8)
    out[:, :] = np.asarray(fill, dtype=np.uint8)
    out[dy : dy + dh, dx : dx + dw] = np.clip(np.floor(resized + 0.5), 0, 255).astype(np.uint8)
    return out


def normalize(image, mean, std):
    """uint8 [S, S, 3] → float32 [1, 3, S, S]."""
    x = (image.astype(np.float32) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def load_rgb(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
