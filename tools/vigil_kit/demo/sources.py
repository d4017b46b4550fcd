"""The real pictures the demo data is made of: object cut-outs from photos
(scikit-image, opencv-doc) and background frames from fixed-camera footage
and street photos, each background assigned to one split so the held-out
test set shows backgrounds training never saw.

Everything is read from `data/` (scripts/setup.sh fetches it).
"""

import subprocess

import numpy as np
from PIL import Image

SIZE = 256  # frames are square: every encoder fit (crop, letterbox) sees all of them

# name → (file, crop box (fraction of width/height), plural, mask)
OBJECTS = {
    "cat": ("photos/chelsea.png", (0.12, 0.0, 0.78, 1.0), "cats", "rect"),
    "horse": ("photos/horse.png", (0, 0, 1, 1), "horses", "alpha"),
    "cup": ("photos/coffee.png", (0.12, 0.05, 0.82, 0.95), "cups", "ellipse"),
    "rocket": ("photos/rocket.jpg", (0.3, 0.0, 0.7, 1.0), "rockets", "rect"),
    "motorcycle": ("photos/motorcycle_left.png", (0, 0.1, 1, 0.95), "motorcycles", "rect"),
    "orange": ("opencv/orange.jpg", (0.08, 0.08, 0.92, 0.92), "oranges", "ellipse"),
    "apple": ("opencv/apple.jpg", (0.08, 0.02, 0.92, 0.9), "apples", "ellipse"),
    "squirrel": ("opencv/squirrel_cls.jpg", (0.05, 0.05, 0.6, 0.75), "squirrels", "rect"),
    "butterfly": ("opencv/butterfly.jpg", (0.0, 0.1, 1.0, 0.9), "butterflies", "rect"),
    "fish": ("opencv/HappyFish.jpg", (0, 0, 1, 1), "fish", "white"),
}

# Backgrounds: (kind, file, split rule). Video frames are taken at 1 FPS;
# a video's frames are split by time, stills go whole to one split.
VIDEOS = {"vtest": "vtest.avi", "tree": "opencv/tree.avi", "bikes": "bikes.mp4"}
STILLS = {
    "train": ["opencv/home.jpg", "opencv/building.jpg", "photos/astronaut.png"],
    "val": ["opencv/leuvenA.jpg"],
    "test": ["opencv/aero1.jpg", "opencv/box_in_scene.png"],
}
# Fraction of each video's duration: [0, 0.65) train, [0.65, 0.8) val, [0.8, 1] test.
SPLIT_AT = {"train": (0.0, 0.65), "val": (0.65, 0.8), "test": (0.8, 1.0)}


def square(rgb, size=SIZE):
    """Centre square of an RGB array, resized to size × size."""
    h, w, _ = rgb.shape
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return np.asarray(Image.fromarray(rgb[y : y + s, x : x + s]).resize((size, size), Image.BILINEAR))


def video_frames(path, fps=1):
    """Decodes a video at `fps` with GStreamer (the runtime's decoder) into
    RGB frames [n, h, w, 3]. Native size; width forced even × 4 bytes by
    asking for the size GStreamer reports."""
    probe = subprocess.run(
        ["gst-launch-1.0", "-v", "filesrc", f"location={path}", "!", "decodebin", "!", "videoconvert", "!",
         "video/x-raw,format=RGB", "!", "fakesink", "num-buffers=1"],
        capture_output=True, text=True, timeout=60)
    import re

    m = re.search(r"video/x-raw, .*?width=\(int\)(\d+), height=\(int\)(\d+)", probe.stdout)
    if not m:
        raise SystemExit(f"{path}: cannot read its frame size with GStreamer:\n{probe.stdout[-500:]}{probe.stderr[-500:]}")
    w, h = int(m.group(1)), int(m.group(2))
    w4 = w - w % 4  # RGB rows are padded to 4 bytes: ask for a width that needs none
    out = subprocess.run(
        ["gst-launch-1.0", "-q", "filesrc", f"location={path}", "!", "decodebin", "!", "videoconvert", "!",
         "videorate", "!", "videoscale", "!", f"video/x-raw,format=RGB,width={w4},height={h},framerate={fps}/1", "!",
         "fdsink", "fd=1"],
        capture_output=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"{path}: GStreamer could not decode it: {out.stderr.decode()[-500:]}")
    frame = w4 * h * 3
    n = len(out.stdout) // frame
    return np.frombuffer(out.stdout[: n * frame], np.uint8).reshape(n, h, w4, 3)


def load_rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def backgrounds(data_dir, split):
    """Square background frames of one split, uint8 [n, SIZE, SIZE, 3]."""
    frames = []
    lo, hi = SPLIT_AT[split]
    for name, rel in VIDEOS.items():
        video = video_frames(f"{data_dir}/{rel}")
        n = len(video)
        for i in range(int(lo * n), int(hi * n)):
            frames.append(square(video[i]))
    for rel in STILLS[split]:
        frames.append(square(load_rgb(f"{data_dir}/{rel}")))
    return np.stack(frames)


class Sticker:
    """An object cut out of a photo: RGB and an alpha mask in [0, 1]."""

    def __init__(self, name, rgb, alpha):
        self.name, self.rgb, self.alpha = name, rgb, alpha

    def render(self, size, flip, gain):
        """RGB and alpha at `size` px on the longer side."""
        h, w, _ = self.rgb.shape
        scale = size / max(h, w)
        nw, nh = max(8, round(w * scale)), max(8, round(h * scale))
        rgb = np.asarray(Image.fromarray(self.rgb).resize((nw, nh), Image.BILINEAR)).astype(np.float32)
        alpha = np.asarray(Image.fromarray((self.alpha * 255).astype(np.uint8)).resize((nw, nh), Image.BILINEAR))
        alpha = alpha.astype(np.float32) / 255.0
        if flip:
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        return np.clip(rgb * gain, 0, 255), alpha


def stickers(data_dir):
    out = {}
    for name, (rel, (x0, y0, x1, y1), _, mask) in OBJECTS.items():
        with Image.open(f"{data_dir}/{rel}") as im:
            rgba = np.asarray(im.convert("RGBA"))
        h, w, _ = rgba.shape
        rgba = rgba[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)]
        rgb = rgba[..., :3].copy()
        h, w, _ = rgb.shape
        if mask == "alpha":
            # A black silhouette on white: the dark pixels are the horse.
            alpha = ((rgb.astype(np.int32).sum(axis=2) < 384) & (rgba[..., 3] > 0)).astype(np.float32)
            # Give it a dark brown coat.
            rgb[:] = (70, 45, 30)
        elif mask == "ellipse":
            yy, xx = np.mgrid[0:h, 0:w]
            alpha = ((((xx + 0.5) / w - 0.5) ** 2 + ((yy + 0.5) / h - 0.5) ** 2) <= 0.25).astype(np.float32)
        elif mask == "white":
            alpha = (rgb.min(axis=2) < 235).astype(np.float32)
        else:
            alpha = np.ones((h, w), np.float32)
        out[name] = Sticker(name, rgb, alpha)
    return out


def plural(name):
    return OBJECTS[name][2]


def paste(frame, placements, stickers):
    """Composites each (name, x, y, size, flip, gain) of `placements` onto
    `frame` (float32 [SIZE, SIZE, 3]) in place, clipped at its edges."""
    for name, x, y, size, flip, gain in placements:
        rgb, alpha = stickers[name].render(size, flip, gain)
        h, w = alpha.shape
        h, w = min(h, SIZE - y), min(w, SIZE - x)
        a = alpha[:h, :w, None]
        frame[y : y + h, x : x + w] = frame[y : y + h, x : x + w] * (1 - a) + rgb[:h, :w] * a
