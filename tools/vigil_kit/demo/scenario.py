"""The demo scenario: the campus footage (vtest.avi, real people walking)
with objects arriving and leaving at known times, written as an MJPEG AVI
the daemon replays like a live camera, and a .json of the events beside it
(the end-to-end test asserts the daemon's alerts against it).

Timeline (seconds of video; the daemon samples 1 frame a second):
  15-40  a cat sits near the path
  50-66  a horse crosses the lawn from left to right (about 12 px a second)
Nothing else is added; the people are the footage's own.
"""

import json
import os
import subprocess

import numpy as np

from . import sources

FPS = 2
EVENTS = [
    {"object": "cat", "from_s": 15, "to_s": 40},
    {"object": "horse", "from_s": 50, "to_s": 66},
]


def _placements(t):
    """(name, x, y, size, flip, gain) present at time t (seconds)."""
    out = []
    if 15 <= t < 40:
        out.append(("cat", 150, 128, 84, False, 1.0))
    if 50 <= t < 66:
        x = int(round(10 + (t - 50) * 10.5))
        out.append(("horse", x, 150, 92, True, 1.0))
    return out


def frames(data_dir):
    video = sources.video_frames(f"{data_dir}/vtest.avi", fps=FPS)
    stickers = sources.stickers(data_dir)
    for i, raw in enumerate(video):
        frame = sources.square(raw).astype(np.float32)
        for name, x, y, size, flip, gain in _placements(i / FPS):
            rgb, alpha = stickers[name].render(size, flip, gain)
            h, w = alpha.shape
            h, w = min(h, sources.SIZE - y), min(w, sources.SIZE - x)
            a = alpha[:h, :w, None]
            frame[y : y + h, x : x + w] = frame[y : y + h, x : x + w] * (1 - a) + rgb[:h, :w] * a
        yield np.clip(np.floor(frame + 0.5), 0, 255).astype(np.uint8)


def write(data_dir, out):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".part"
    s = sources.SIZE
    gst = subprocess.Popen(
        ["gst-launch-1.0", "-q", "fdsrc", "fd=0", "!",
         f"rawvideoparse", "format=rgb", f"width={s}", f"height={s}", f"framerate={FPS}/1", "!",
         "videoconvert", "!", "jpegenc", "quality=90", "!", "avimux", "!", "filesink", f"location={tmp}"],
        stdin=subprocess.PIPE)
    n = 0
    for frame in frames(data_dir):
        gst.stdin.write(frame.tobytes())
        n += 1
    gst.stdin.close()
    if gst.wait() != 0:
        raise SystemExit("GStreamer could not write the scenario clip")
    os.replace(tmp, out)
    meta = {"fps": FPS, "duration_s": n / FPS, "size": s, "events": EVENTS,
            "source": "vtest.avi (Debian opencv-doc) with photos from scikit-image and opencv-doc"}
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {out}: {n} frames, {n / FPS:.0f} s", flush=True)
