"""Scenes and questions whose answers are known by construction.

A scene is a background frame and, per frame, the objects placed on it:
    {"bg": i, "frames": [[(name, x, y, size, flip, gain), ...], ...], "noise": seed}
Stills have one frame, clips T. Questions are asked about the clip as a
whole (motion, change) or about its newest frame (presence, count: "now").
"""

import numpy as np

from . import sources

T_CLIP = 4

PRESENCE = ["Is there a {o}?", "Do you see a {o}?", "Is there a {o} in the picture?", "Can you see a {o}?"]
COUNT = ["How many {p} are there?", "How many {p} do you see?", "How many {p} are in the picture?"]
MOTION = ["Is the {o} moving?", "Is the {o} in motion?", "Does the {o} move?"]
APPEAR = ["Did something appear?", "Did anything new appear?", "Did something new show up?"]
LEAVE = ["Did something leave?", "Did anything disappear?"]
NAMING = ["What is this called?", "Which one is it?"]

# Made-up names for the few-shot episodes: the answer can only come from the
# examples. Test names are never seen in training.
NAMES = {
    "train": ["dax", "wug", "blicket", "toma", "zorp", "fep", "kiki", "bouba", "gazzer", "lorp", "mib", "tufa"],
    "val": ["nard", "pilk"],
    "test": ["glim", "moxa", "tev", "rusk", "vunt", "jiffle"],
}

COUNTABLE = ["cat", "horse", "cup", "apple", "orange", "fish"]


def article(name):
    return ("an " if name[0] in "aeiou" else "a ") + name


def fill(template, name):
    return template.replace("a {o}", article(name)).replace("{o}", name).replace("{p}", sources.plural(name))


class Placer:
    """Random non-overlapping placements on a SIZE × SIZE frame."""

    def __init__(self, rng, lo=44, hi=88):
        self.rng, self.lo, self.hi = rng, lo, hi
        self.boxes = []

    def place(self, name):
        rng = self.rng
        for _ in range(60):
            size = int(rng.integers(self.lo, self.hi + 1))
            x = int(rng.integers(0, sources.SIZE - size))
            y = int(rng.integers(0, sources.SIZE - size))
            if all(not _overlap((x, y, size), b) for b in self.boxes):
                self.boxes.append((x, y, size))
                return [name, x, y, size, bool(rng.integers(2)), float(rng.uniform(0.85, 1.15))]
        return None


def _overlap(a, b, slack=0.15):
    ax, ay, asz = a
    bx, by, bsz = b
    ix = max(0, min(ax + asz, bx + bsz) - max(ax, bx))
    iy = max(0, min(ay + asz, by + bsz) - max(ay, by))
    return ix * iy > slack * min(asz, bsz) ** 2


def _others(rng, exclude, k):
    pool = [n for n in sources.OBJECTS if n not in exclude]
    return list(rng.choice(pool, size=k, replace=False)) if k else []


def still(rng, n_bg, objects):
    placer = Placer(rng)
    placed = [p for p in (placer.place(o) for o in objects) if p]
    return {"bg": int(rng.integers(n_bg)), "frames": [placed], "noise": int(rng.integers(1 << 30))}


def presence(rng, n_bg, target=None, present=None):
    """A still with 0-3 objects; questions about one present and one absent."""
    names = list(sources.OBJECTS)
    if target is None:
        target = str(rng.choice(names))
    if present is None:
        present = bool(rng.integers(2))
    others = _others(rng, {target}, int(rng.integers(0, 3)))
    scene = still(rng, n_bg, ([target] if present else []) + others)
    got = {p[0] for p in scene["frames"][-1]}
    q = fill(str(rng.choice(PRESENCE)), target)
    return scene, [("presence", q, "yes-no", "yes" if target in got else "no", target)]


def count(rng, n_bg):
    target = str(rng.choice(COUNTABLE))
    k = int(rng.integers(0, 4))
    others = _others(rng, {target}, int(rng.integers(0, 3)))
    placer = Placer(rng, lo=40, hi=72)
    placed = [p for p in (placer.place(o) for o in [target] * k + others) if p]
    scene = {"bg": int(rng.integers(n_bg)), "frames": [placed], "noise": int(rng.integers(1 << 30))}
    n = sum(1 for p in placed if p[0] == target)
    q = fill(str(rng.choice(COUNT)), target)
    return scene, [("count", q, "count", str(n), target)]


def _move(rng, p, moving, t_count):
    """The object's placement in each frame: still, or moving 20-40 px a
    frame in one direction, bouncing off the edges."""
    out = [list(p)]
    if not moving:
        return out * t_count
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(20, 40)
    vx, vy = speed * np.cos(angle), speed * np.sin(angle)
    x, y, size = float(p[1]), float(p[2]), p[3]
    for _ in range(t_count - 1):
        x, y = x + vx, y + vy
        if not 0 <= x <= sources.SIZE - size:
            vx = -vx
            x = min(max(x, 0), sources.SIZE - size)
        if not 0 <= y <= sources.SIZE - size:
            vy = -vy
            y = min(max(y, 0), sources.SIZE - size)
        q = list(p)
        q[1], q[2] = int(round(x)), int(round(y))
        out.append(q)
    return out


def motion(rng, n_bg, t_count=T_CLIP):
    target = str(rng.choice(list(sources.OBJECTS)))
    moving = bool(rng.integers(2))
    others = _others(rng, {target}, int(rng.integers(0, 3)))
    placer = Placer(rng, lo=40, hi=72)
    tracks = []
    for i, name in enumerate([target] + others):
        p = placer.place(name)
        if p is None:
            continue
        tracks.append(_move(rng, p, moving if i == 0 else bool(rng.integers(2)), t_count))
    frames = [[tr[t] for tr in tracks] for t in range(t_count)]
    scene = {"bg": int(rng.integers(n_bg)), "frames": frames, "noise": int(rng.integers(1 << 30))}
    q = fill(str(rng.choice(MOTION)), target)
    return scene, [("motion", q, "yes-no", "yes" if moving else "no", target)]


def change(rng, n_bg, t_count=T_CLIP):
    """Something appears, something leaves, or nothing comes or goes (the
    objects may still move). Asked both ways."""
    kind = str(rng.choice(["appear", "leave", "none"]))
    names = _others(rng, set(), int(rng.integers(1, 4)))
    placer = Placer(rng, lo=40, hi=72)
    tracks = []
    for name in names:
        p = placer.place(name)
        if p is not None:
            tracks.append(_move(rng, p, bool(rng.integers(3) == 0), t_count))
    at = int(rng.integers(1, t_count))
    frames = []
    for t in range(t_count):
        row = []
        for i, tr in enumerate(tracks):
            if i == 0 and kind == "appear" and t < at:
                continue
            if i == 0 and kind == "leave" and t >= at:
                continue
            row.append(tr[t])
        frames.append(row)
    scene = {"bg": int(rng.integers(n_bg)), "frames": frames, "noise": int(rng.integers(1 << 30))}
    ask_appear = bool(rng.integers(2))
    if ask_appear:
        q, a = str(rng.choice(APPEAR)), kind == "appear" and bool(tracks)
    else:
        q, a = str(rng.choice(LEAVE)), kind == "leave" and bool(tracks)
    return scene, [("change", q, "yes-no", "yes" if a else "no", None)]


def single(rng, n_bg, name):
    """One object, for few-shot naming episodes."""
    placer = Placer(rng, lo=56, hi=110)
    p = placer.place(name)
    return {"bg": int(rng.integers(n_bg)), "frames": [[p]], "noise": int(rng.integers(1 << 30))}


def render(scene, bgs, stickers):
    """uint8 [T, SIZE, SIZE, 3]: the background with sensor noise and the
    objects of each frame."""
    noise = np.random.default_rng(scene["noise"])
    out = []
    for placed in scene["frames"]:
        frame = bgs[scene["bg"]].astype(np.float32)
        sources.paste(frame, placed, stickers)
        frame += noise.normal(0, 2.5, frame.shape)
        out.append(np.clip(np.floor(frame + 0.5), 0, 255).astype(np.uint8))
    return np.stack(out)
