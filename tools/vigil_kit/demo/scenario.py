"""The demo scenarios, each an MJPEG AVI the daemon replays like a live
camera with a .json of its events beside it (the end-to-end tests assert
the daemon's alerts against them).

demo-scenario.avi: the campus footage (vtest.avi, real people walking) with
objects arriving and leaving at known times. Timeline (seconds of video;
the daemon samples 1 frame a second):
  15-40  a cat sits near the path
  50-66  a horse crosses the lawn from left to right (about 12 px a second)
Nothing else is added; the people are the footage's own.

still-scenario.avi: the footage's first frame held still for 30 s, with a
cat that arrives at 8 s, keeps still, and leaves at 20 s. Every frame but
the two changes is the same picture, so change gating keeps the answers
between them: the case where a kept answer must still count.
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


STILL_DURATION_S = 30
STILL_EVENTS = [{"object": "cat", "from_s": 8, "to_s": 20}]


def _placements(t):
    """(name, x, y, size, flip, gain) present at time t (seconds)."""
    out = []
    if 15 <= t < 40:
        out.append(("cat", 150, 128, 84, False, 1.0))
    if 50 <= t < 66:
        x = int(round(10 + (t - 50) * 10.5))
        out.append(("horse", x, 150, 92, True, 1.0))
    return out


def _still_placements(t):
    if 8 <= t < 20:
        return [("cat", 150, 128, 84, False, 1.0)]
    return []


def _composite(raw, placements, stickers):
    frame = sources.square(raw).astype(np.float32)
    sources.paste(frame, placements, stickers)
    return np.clip(np.floor(frame + 0.5), 0, 255).astype(np.uint8)


def frames(data_dir):
    video = sources.video_frames(f"{data_dir}/vtest.avi", fps=FPS)
    stickers = sources.stickers(data_dir)
    for i, raw in enumerate(video):
        yield _composite(raw, _placements(i / FPS), stickers)


def still_frames(data_dir):
    first = sources.video_frames(f"{data_dir}/vtest.avi", fps=FPS)[0]
    stickers = sources.stickers(data_dir)
    for i in range(STILL_DURATION_S * FPS):
        yield _composite(first, _still_placements(i / FPS), stickers)


def write(data_dir, out):
    """Writes both scenarios: `out` and still-scenario.avi beside it."""
    _write_clip(frames(data_dir), out, EVENTS, "vtest.avi (Debian opencv-doc) with photos from scikit-image and opencv-doc")
    still = os.path.join(os.path.dirname(os.path.abspath(out)), "still-scenario.avi")
    _write_clip(still_frames(data_dir), still, STILL_EVENTS,
                "the first frame of vtest.avi (Debian opencv-doc), held still, with a photo from scikit-image")


def _write_clip(clip_frames, out, events, source):
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".part"
    s = sources.SIZE
    gst = subprocess.Popen(
        ["gst-launch-1.0", "-q", "fdsrc", "fd=0", "!",
         "rawvideoparse", "format=rgb", f"width={s}", f"height={s}", f"framerate={FPS}/1", "!",
         "videoconvert", "!", "jpegenc", "quality=90", "!", "avimux", "!", "filesink", f"location={tmp}"],
        stdin=subprocess.PIPE)
    n = 0
    for frame in clip_frames:
        gst.stdin.write(frame.tobytes())
        n += 1
    gst.stdin.close()
    if gst.wait() != 0:
        raise SystemExit("GStreamer could not write the scenario clip")
    os.replace(tmp, out)
    meta = {"fps": FPS, "duration_s": n / FPS, "size": s, "events": events, "source": source}
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print(f"wrote {out}: {n} frames, {n / FPS:.0f} s", flush=True)
