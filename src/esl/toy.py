"""A seeded toy domain pair of street-like scenes labelled with Cityscapes trainIds.

Both domains draw scenes of the same kind (sky, buildings with windows, trees and hedges, a road in perspective with
sidewalks, cars, poles with signs, persons, a few unlabelled objects). The source domain is a clean "game-like"
rendering: flat class colours with mild per-object variation, sharp edges, no noise. The target domain uses slightly
different object priors and an appearance shifted by `shift` (0 = the source appearance), each image by its own
strength drawn uniformly in (0.1, 1] × `shift`, so the target domain is a continuum from mildly to fully shifted:

* a palette change: every class colour moves towards a target palette in which several classes take colours close to
  *other* classes' source colours (vegetation turns autumn brown like source buildings, buildings turn blue-grey,
  the sky turns overcast grey, the sidewalk turns dark like the source road), so colour alone misleads while layout
  and shape still help;
* lighting: a per-image gamma, contrast and brightness change and a vertical illumination gradient;
* texture on road, sidewalk and buildings, Gaussian blur and Gaussian noise;
* optionally (`_FOG` > 0; off in the default, used by bench/toy_variants.py) fog that thins from the top row to none at
  the bottom.

Every image has its own generator seeded by (seed, domain, split, index), so adding images never changes earlier ones.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .classes import CLASS_NAMES, IGNORE
from .h5io import provenance, write_csv

ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, SKY, PERSON, CAR = 0, 1, 2, 5, 7, 8, 10, 11, 13
SPLITS = (("source", "train"), ("target", "train"), ("target", "val"))
_DOMAIN_CODE = {"source": 0, "target": 1}
_SPLIT_CODE = {"train": 0, "val": 1}

# Class base colours (RGB) of the source rendering, and the target palette they move towards at shift = 1.
_SOURCE_RGB = {
    ROAD: (96, 88, 104),
    SIDEWALK: (178, 166, 150),
    BUILDING: (150, 112, 92),
    POLE: (72, 72, 78),
    SIGN: (226, 200, 36),
    VEGETATION: (56, 124, 44),
    SKY: (112, 164, 228),
    PERSON: (180, 60, 70),
    CAR: (40, 60, 150),
}
_TARGET_RGB = {
    ROAD: (112, 110, 104),  # lighter, greyer asphalt
    SIDEWALK: (156, 146, 150),  # darker and cooler, towards the source road
    BUILDING: (122, 118, 124),  # grey concrete
    POLE: (52, 56, 52),
    SIGN: (214, 140, 40),  # orange
    VEGETATION: (100, 116, 48),  # olive, towards the source buildings
    SKY: (146, 172, 210),  # hazy, paler
    PERSON: (90, 70, 110),
    CAR: (150, 150, 160),
}
# Per-object colour spread (RGB standard deviation) of each class.
_SPREAD = {ROAD: 6, SIDEWALK: 8, BUILDING: 18, POLE: 6, SIGN: 10, VEGETATION: 12, SKY: 6, PERSON: 40, CAR: 45}
_SKIN = (205, 160, 130)
# Strengths of the target's texture (amplitude), sensor noise (standard deviation, both in 0..255 units) and extra
# Gaussian blur (sigma, pixels) at shift = 1.
_TEXTURE, _NOISE, _BLUR = 6.0, 4.0, 0.6
# Fog: density at the top row at shift = 1, its colour, and how much it thins towards the bottom row (1: to none,
# 0: uniform haze); off by default.
_FOG, _FOG_RGB, _FOG_SLOPE = 0.0, (198, 200, 204), 1.0

# Scene priors (means of object counts, ranges of geometry) of each domain.
_PRIORS = {
    "source": {"horizon": (0.32, 0.48), "road": (0.55, 0.85), "cars": 2.0, "persons": 2.0, "poles": 2.0, "trees": 2.0},
    "target": {"horizon": (0.36, 0.52), "road": (0.45, 0.80), "cars": 2.6, "persons": 2.6, "poles": 2.5, "trees": 2.5},
}


def _check(name, value, minimum):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"generate_toy: {name} must be an integer >= {minimum}, got {value!r}")


def _validate(seed, height, width, n_source, n_target_train, n_target_val, shift):
    _check("seed", seed, 0)
    _check("height", height, 32)
    _check("width", width, 32)
    _check("n_source", n_source, 1)
    _check("n_target_train", n_target_train, 1)
    _check("n_target_val", n_target_val, 1)
    if isinstance(shift, bool) or not isinstance(shift, (int, float, np.floating)) or not np.isfinite(shift):
        raise ValueError(f"generate_toy: shift must be a finite number >= 0, got {shift!r}")
    if shift < 0:
        raise ValueError(f"generate_toy: shift must be a finite number >= 0, got {shift!r}")


class _Canvas:
    """A label map and an RGB image drawn together; `shift` moves class colours towards the target palette."""

    def __init__(self, rng, height, width, shift):
        self.rng, self.h, self.w, self.shift = rng, height, width, shift
        self.label = np.full((height, width), SKY, np.uint8)
        self.image = np.zeros((height, width, 3), np.float32)
        self.image[:] = self.colour(SKY)

    def base(self, cls):
        s = np.asarray(_SOURCE_RGB[cls], np.float32)
        t = np.asarray(_TARGET_RGB[cls], np.float32)
        return s + min(self.shift, 1.0) * (t - s)

    def colour(self, cls, base=None, spread=None):
        base = self.base(cls) if base is None else np.asarray(base, np.float32)
        spread = _SPREAD[cls] if spread is None else spread
        return tuple(float(v) for v in np.clip(base + self.rng.normal(0.0, spread, 3), 0, 255))

    def poly(self, pts, cls, col):
        pts = np.round(np.asarray(pts, np.float32)).astype(np.int32).reshape(-1, 1, 2)
        if cls is not None:
            cv2.fillPoly(self.label, [pts], int(cls))
        cv2.fillPoly(self.image, [pts], col)

    def rect(self, x0, y0, x1, y1, cls, col):
        x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
        if cls is not None:
            cv2.rectangle(self.label, (x0, y0), (x1, y1), int(cls), -1)
        cv2.rectangle(self.image, (x0, y0), (x1, y1), col, -1)

    def ellipse(self, cx, cy, ax, ay, cls, col):
        c = (int(round(cx)), int(round(cy)))
        a = (max(1, int(round(ax))), max(1, int(round(ay))))
        if cls is not None:
            cv2.ellipse(self.label, c, a, 0, 0, 360, int(cls), -1)
        cv2.ellipse(self.image, c, a, 0, 0, 360, col, -1)


def _scene(canvas: _Canvas, priors: dict) -> None:
    """Draw one street scene: sky, buildings, ground, trees, poles and signs, void clutter, persons and cars."""
    rng, h, w = canvas.rng, canvas.h, canvas.w
    hz = rng.uniform(*priors["horizon"]) * h
    xv = w / 2 + rng.uniform(-0.15, 0.15) * w
    road_half = rng.uniform(*priors["road"]) * w / 2
    walk_half = road_half + rng.uniform(0.15, 0.35) * w
    top_half = rng.uniform(0.01, 0.03) * w

    def depth(y):  # 0 at the horizon, 1 at the bottom row
        return float(np.clip((y - hz) / (h - hz), 0.0, 1.0))

    def edge(y, half):  # x of the left/right edge of a perspective band at row y
        d = depth(y)
        return xv - top_half - d * (half - top_half), xv + top_half + d * (half - top_half)

    # Buildings: rectangles across the width, taller away from the vanishing point, a gap of sky around it.
    gap = rng.uniform(0.02, 0.12) * w
    x = -rng.uniform(0, 0.1) * w
    while x < w:
        bw = rng.uniform(0.08, 0.25) * w
        cx = x + bw / 2
        if abs(cx - xv) > gap:
            far = min(1.0, abs(cx - xv) / (w / 2))
            top = hz - (0.35 + 0.6 * far) * hz * rng.uniform(0.6, 1.05)
            top = max(top, 1.0)
            bottom = hz + 1 + 0.1 * far * (h - hz)
            col = canvas.colour(BUILDING)
            canvas.rect(x, top, x + bw, bottom, BUILDING, col)
            # window grid: image only, the label stays building
            win = tuple(float(v) for v in np.clip(np.asarray(col) * rng.uniform(0.35, 0.6), 0, 255))
            step_x, step_y = rng.uniform(5, 8), rng.uniform(5, 8)
            wy = top + 2
            while wy + 3 < bottom - 2:
                wx = x + 2
                while wx + 2 < x + bw - 2:
                    canvas.rect(wx, wy, wx + 2, wy + 2, None, win)
                    wx += step_x
                wy += step_y
        x += bw + (rng.uniform(0, 0.06) * w if rng.random() < 0.3 else 0)

    # Ground: sidewalk below the horizon, hedges at the far sides, the road trapezoid.
    canvas.rect(0, hz, w, h, SIDEWALK, canvas.colour(SIDEWALK))
    lw_h, rw_h = edge(h, walk_half)
    for side, x_bottom in ((-1, lw_h), (1, rw_h)):
        if rng.random() < 0.4:  # a hedge beyond the sidewalk, its top rising towards the viewer
            x0 = xv + side * top_half
            rise = rng.uniform(0.05, 0.2) * (h - hz) / max(abs(x_bottom - x0), 1.0)
            x_far = x_bottom + side * 2 * w
            top_far = hz - 1 - rise * abs(x_far - x0)
            canvas.poly(
                [(x0, hz - 1), (x_bottom, h), (x_far, h), (x_far, top_far)], VEGETATION, canvas.colour(VEGETATION)
            )
    lb, rb = edge(h, road_half)
    canvas.poly([(xv - top_half, hz), (xv + top_half, hz), (rb, h), (lb, h)], ROAD, canvas.colour(ROAD))
    if rng.random() < 0.7:  # lane markings: image only
        mark = tuple(float(v) for v in np.clip(canvas.base(ROAD) + 90, 0, 255))
        y = hz + 2
        while y < h:
            d = depth(y)
            ln = 2 + 6 * d
            canvas.poly([(xv, y), (xv + 0.5 + d, y), (xv + 0.5 + d, y + ln), (xv, y + ln)], ROAD, mark)
            y += ln * 2

    # Things, drawn far to near so that near objects occlude far ones.
    things = []
    for _ in range(rng.poisson(priors["trees"])):
        things.append(("tree", rng.uniform(hz + 1, h)))
    for _ in range(rng.poisson(priors["poles"])):
        things.append(("pole", rng.uniform(hz + 2, h)))
    for _ in range(rng.poisson(priors["persons"])):
        things.append(("person", rng.uniform(hz + 3, h)))
    for _ in range(rng.poisson(priors["cars"])):
        things.append(("car", rng.uniform(hz + 3, h)))
    for _ in range(rng.poisson(0.4)):
        things.append(("void", rng.uniform(hz + 3, h)))
    things.sort(key=lambda t: t[1])

    for kind, yb in things:
        d = depth(yb)
        s = 0.15 + 0.85 * d  # perspective scale
        lr, rr = edge(yb, road_half)
        lw, rw = edge(yb, walk_half)
        side = -1 if rng.random() < 0.5 else 1
        on_walk = rng.uniform(lw, lr) if side < 0 else rng.uniform(rr, rw)
        if kind == "tree":
            xc = (lw - rng.uniform(0, 0.1) * w) if side < 0 else (rw + rng.uniform(0, 0.1) * w)
            th = s * h * rng.uniform(0.35, 0.6)
            tw = max(1.0, s * rng.uniform(1.5, 3))
            canvas.rect(xc - tw / 2, yb - th, xc + tw / 2, yb, VEGETATION, canvas.colour(VEGETATION, (90, 70, 50)))
            r = s * h * rng.uniform(0.18, 0.32)
            col = canvas.colour(VEGETATION)
            canvas.ellipse(xc, yb - th - 0.5 * r, r * rng.uniform(0.8, 1.3), r, VEGETATION, col)
            canvas.ellipse(xc + side * r * 0.5, yb - th, r * 0.7, r * 0.6, VEGETATION, col)
        elif kind == "pole":
            ph = s * h * rng.uniform(0.6, 0.9)
            pw = max(1.0, s * 2.5)
            canvas.rect(on_walk, yb - ph, on_walk + pw - 1, yb, POLE, canvas.colour(POLE))
            if rng.random() < 0.5:
                sz = max(3.0, s * 8 * rng.uniform(0.8, 1.3))
                canvas.rect(on_walk - sz / 2, yb - ph, on_walk + sz / 2, yb - ph + sz, SIGN, canvas.colour(SIGN))
        elif kind == "person":
            ph = max(4.0, s * h * rng.uniform(0.25, 0.35))
            col = canvas.colour(PERSON)
            canvas.ellipse(on_walk, yb - 0.4 * ph, 0.16 * ph, 0.4 * ph, PERSON, col)
            skin = canvas.colour(PERSON, _SKIN, 15)
            canvas.ellipse(on_walk, yb - 0.88 * ph, 0.1 * ph, 0.1 * ph, PERSON, skin)
        elif kind == "car":
            cw = s * w * rng.uniform(0.18, 0.28)
            ch = cw * rng.uniform(0.45, 0.6)
            xc = rng.uniform(lr + cw / 2, max(lr + cw / 2, rr - cw / 2)) if rr - lr > cw else (lr + rr) / 2
            col = canvas.colour(CAR)
            canvas.rect(xc - cw / 2, yb - 0.7 * ch, xc + cw / 2, yb - 0.15 * ch, CAR, col)
            canvas.poly(
                [
                    (xc - 0.35 * cw, yb - 0.7 * ch),
                    (xc - 0.25 * cw, yb - ch),
                    (xc + 0.25 * cw, yb - ch),
                    (xc + 0.35 * cw, yb - 0.7 * ch),
                ],
                CAR,
                col,
            )
            glass = tuple(float(v) for v in np.clip(np.asarray(col) * 0.3 + 40, 0, 255))
            canvas.poly(
                [
                    (xc - 0.3 * cw, yb - 0.72 * ch),
                    (xc - 0.22 * cw, yb - 0.95 * ch),
                    (xc + 0.22 * cw, yb - 0.95 * ch),
                    (xc + 0.3 * cw, yb - 0.72 * ch),
                ],
                None,
                glass,
            )
            wheel = (20.0, 20.0, 22.0)
            for wx in (xc - 0.3 * cw, xc + 0.3 * cw):
                canvas.ellipse(wx, yb - 0.15 * ch, 0.1 * cw, 0.15 * ch, CAR, wheel)
        else:  # an unlabelled object (bin, box) on the sidewalk
            sz = max(2.0, s * h * rng.uniform(0.06, 0.12))
            grey = float(rng.uniform(60, 200))
            canvas.rect(on_walk - sz / 2, yb - sz, on_walk + sz / 2, yb, IGNORE, (grey, grey * 0.95, grey * 0.9))


def _shift_appearance(rgb: np.ndarray, label: np.ndarray, rng, shift: float) -> np.ndarray:
    """Lighting, texture, blur and noise of the target domain, scaled by `shift` (0 leaves `rgb` unchanged)."""
    if shift <= 0:
        return rgb
    h, w = label.shape
    img = rgb.astype(np.float32)
    # texture: a fine random pattern on road, sidewalk and buildings
    tex = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    tex = cv2.GaussianBlur(tex, (0, 0), 0.7) * 2.0
    mask = np.isin(label, (ROAD, SIDEWALK, BUILDING)).astype(np.float32)
    img += (_TEXTURE * shift * tex * mask)[..., None]
    # lighting: contrast, brightness, gamma, vertical gradient
    contrast = 1.0 - shift * rng.uniform(0.0, 0.15)
    brightness = shift * rng.uniform(-8, 8)
    img = (img - 128.0) * contrast + 128.0 + brightness
    gamma = 1.0 + shift * rng.uniform(-0.15, 0.15)
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** gamma
    g = shift * rng.uniform(-0.12, 0.12)
    ramp = 1.0 - g * np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]  # lighter or darker towards the bottom
    img *= ramp
    if _FOG > 0:  # far (upper) rows lose contrast towards the fog colour, as in Foggy Cityscapes
        profile = 1.0 - _FOG_SLOPE * np.linspace(0.0, 1.0, h, dtype=np.float32)
        fog = _FOG * min(shift, 1.0) * profile[:, None, None]
        img = (1.0 - fog) * img + fog * np.asarray(_FOG_RGB, np.float32)
    # optics and sensor
    img = cv2.GaussianBlur(img, (0, 0), 0.2 + _BLUR * min(shift, 1.0) * rng.uniform(0.7, 1.3))
    img += rng.normal(0.0, _NOISE * shift, img.shape).astype(np.float32)
    return img


def _render(domain: str, split: str, index: int, *, seed: int, height: int, width: int, shift: float):
    rng = np.random.default_rng([seed, _DOMAIN_CODE[domain], _SPLIT_CODE[split], index])
    # Each target image gets its own shift strength, from barely shifted to fully shifted: the target domain is a
    # continuum, as real ones are (weather, time of day), so confident predictions on mildly shifted images carry
    # information about the strongly shifted ones, which is what self-training exploits.
    s = 0.0 if domain == "source" else float(shift) * rng.uniform(0.1, 1.0)
    canvas = _Canvas(rng, height, width, s)
    _scene(canvas, _PRIORS[domain])
    img = canvas.image
    if domain == "target":
        img = _shift_appearance(img, canvas.label, rng, s)
    bgr = np.clip(np.round(img), 0, 255).astype(np.uint8)[..., ::-1]
    return np.ascontiguousarray(bgr), canvas.label


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise OSError(f"generate_toy: cannot write {path}")


def generate_toy(
    root,
    *,
    seed: int,
    height: int,
    width: int,
    n_source: int,
    n_target_train: int,
    n_target_val: int,
    shift: float,
) -> dict:
    """Write the toy domain pair under `root` (the `trainids` layout) and `root/manifest.csv` last; return a summary.

    The domain folders are built in a staging folder and moved into place (replacing `root/source` and `root/target`)
    only once complete; the manifest, the completion marker, is removed first and written last.
    """
    _validate(seed, height, width, n_source, n_target_train, n_target_val, shift)
    shift = float(shift)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "manifest.csv"
    if manifest.exists():
        manifest.unlink()
    staging = root / f".staging-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    counts = {("source", "train"): n_source, ("target", "train"): n_target_train, ("target", "val"): n_target_val}
    rows, summary_counts, fractions = [], {}, {}
    ignore_pixels = total_pixels = 0
    try:
        for domain, split in SPLITS:
            img_dir = staging / domain / split / "images"
            lab_dir = staging / domain / split / "labels"
            img_dir.mkdir(parents=True)
            lab_dir.mkdir(parents=True)
            hist = np.zeros(256, np.int64)
            for i in range(counts[(domain, split)]):
                name = f"{domain}_{split}_{i:04d}"
                bgr, label = _render(domain, split, i, seed=seed, height=height, width=width, shift=shift)
                _write_png(img_dir / f"{name}.png", bgr)
                _write_png(lab_dir / f"{name}.png", label)
                hist += np.bincount(label.ravel(), minlength=256)
                rows.append(
                    {
                        "domain": domain,
                        "split": split,
                        "name": name,
                        "image": f"{domain}/{split}/images/{name}.png",
                        "label": f"{domain}/{split}/labels/{name}.png",
                    }
                )
            key = f"{domain}/{split}"
            summary_counts[key] = counts[(domain, split)]
            n = int(hist.sum())
            fractions[key] = {CLASS_NAMES[c]: round(int(hist[c]) / n, 4) for c in range(len(CLASS_NAMES)) if hist[c]}
            ignore_pixels += int(hist[IGNORE])
            total_pixels += n
        for domain in ("source", "target"):
            dest = root / domain
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(staging / domain, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    config = {
        "root": str(root),
        "seed": seed,
        "height": height,
        "width": width,
        "n_source": n_source,
        "n_target_train": n_target_train,
        "n_target_val": n_target_val,
        "shift": shift,
    }
    write_csv(pd.DataFrame(rows, columns=["domain", "split", "name", "image", "label"]), manifest, provenance(config))
    return {
        "root": str(root),
        "counts": summary_counts,
        "class_fractions": fractions,
        "ignore_fraction": round(ignore_pixels / total_pixels, 5),
    }
