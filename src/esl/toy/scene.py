"""Drawing one toy street scene: a label map and an RGB image painted together, element by element.

The random draws happen in a fixed order (layout, buildings, ground, then the things far to near), so a scene depends
only on its generator's seed, the domain's priors and the design's colours.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from esl.io.labels import IGNORE
from esl.toy.design import BUILDING, CAR, PERSON, POLE, ROAD, SIDEWALK, SIGN, SKY, VEGETATION, ScenePriors, ToyDesign


class Canvas:
    """A label map and an RGB image drawn together; `shift` moves class colours towards the target palette."""

    def __init__(self, rng, height, width, shift, design: ToyDesign):
        self.rng, self.h, self.w, self.shift, self.design = rng, height, width, shift, design
        self.label = np.full((height, width), SKY, np.uint8)
        self.image = np.zeros((height, width, 3), np.float32)
        self.image[:] = self.colour(SKY)  # the sky: everything not drawn over

    def base(self, cls):
        s = np.asarray(self.design.source_rgb[cls], np.float32)
        t = np.asarray(self.design.target_rgb[cls], np.float32)
        return s + min(self.shift, 1.0) * (t - s)

    def colour(self, cls, base=None, spread=None):
        base = self.base(cls) if base is None else np.asarray(base, np.float32)
        spread = self.design.spread[cls] if spread is None else spread
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


@dataclass(frozen=True)
class Street:
    """The perspective layout: horizon row, vanishing point, half widths of road, sidewalks and the far end."""

    h: int
    hz: float
    xv: float
    road_half: float
    walk_half: float
    top_half: float

    def depth(self, y):  # 0 at the horizon, 1 at the bottom row
        return float(np.clip((y - self.hz) / (self.h - self.hz), 0.0, 1.0))

    def edge(self, y, half):  # x of the left/right edge of a perspective band at row y
        d = self.depth(y)
        return self.xv - self.top_half - d * (half - self.top_half), self.xv + self.top_half + d * (
            half - self.top_half
        )


def draw_scene(canvas: Canvas, priors: ScenePriors) -> None:
    """Draw one street scene: sky, buildings, ground, trees, poles and signs, void clutter, persons and cars."""
    street = _layout(canvas, priors)
    _buildings(canvas, street)
    _sidewalk_and_hedges(canvas, street)
    _road(canvas, street)
    for kind, yb in _things(canvas, street, priors):  # far to near, so that near objects occlude far ones
        _thing(canvas, street, kind, yb)


def _layout(canvas: Canvas, priors: ScenePriors) -> Street:
    rng, h, w = canvas.rng, canvas.h, canvas.w
    hz = rng.uniform(*priors.horizon) * h
    xv = w / 2 + rng.uniform(-0.15, 0.15) * w
    road_half = rng.uniform(*priors.road) * w / 2
    walk_half = road_half + rng.uniform(0.15, 0.35) * w
    top_half = rng.uniform(0.01, 0.03) * w
    return Street(h, hz, xv, road_half, walk_half, top_half)


def _buildings(canvas: Canvas, street: Street) -> None:
    """Rectangles across the width, taller away from the vanishing point, a gap of sky around it."""
    rng, h, w, hz, xv = canvas.rng, canvas.h, canvas.w, street.hz, street.xv
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
            _windows(canvas, x, top, x + bw, bottom, col)
        x += bw + (rng.uniform(0, 0.06) * w if rng.random() < 0.3 else 0)


def _windows(canvas: Canvas, x0, top, x1, bottom, col) -> None:
    """A window grid: image only, the label stays building."""
    rng = canvas.rng
    win = tuple(float(v) for v in np.clip(np.asarray(col) * rng.uniform(0.35, 0.6), 0, 255))
    step_x, step_y = rng.uniform(5, 8), rng.uniform(5, 8)
    wy = top + 2
    while wy + 3 < bottom - 2:
        wx = x0 + 2
        while wx + 2 < x1 - 2:
            canvas.rect(wx, wy, wx + 2, wy + 2, None, win)
            wx += step_x
        wy += step_y


def _sidewalk_and_hedges(canvas: Canvas, street: Street) -> None:
    """Sidewalk everywhere below the horizon, sometimes a hedge beyond it on either side."""
    rng, h, w, hz, xv = canvas.rng, canvas.h, canvas.w, street.hz, street.xv
    canvas.rect(0, hz, w, h, SIDEWALK, canvas.colour(SIDEWALK))
    lw_h, rw_h = street.edge(h, street.walk_half)
    for side, x_bottom in ((-1, lw_h), (1, rw_h)):
        if rng.random() < 0.4:  # a hedge beyond the sidewalk, its top rising towards the viewer
            x0 = xv + side * street.top_half
            rise = rng.uniform(0.05, 0.2) * (h - hz) / max(abs(x_bottom - x0), 1.0)
            x_far = x_bottom + side * 2 * w
            top_far = hz - 1 - rise * abs(x_far - x0)
            canvas.poly(
                [(x0, hz - 1), (x_bottom, h), (x_far, h), (x_far, top_far)], VEGETATION, canvas.colour(VEGETATION)
            )


def _road(canvas: Canvas, street: Street) -> None:
    """The road trapezoid, often with lane markings (image only)."""
    rng, h, hz, xv, top_half = canvas.rng, canvas.h, street.hz, street.xv, street.top_half
    lb, rb = street.edge(h, street.road_half)
    canvas.poly([(xv - top_half, hz), (xv + top_half, hz), (rb, h), (lb, h)], ROAD, canvas.colour(ROAD))
    if rng.random() < 0.7:
        mark = tuple(float(v) for v in np.clip(canvas.base(ROAD) + 90, 0, 255))
        y = hz + 2
        while y < h:
            d = street.depth(y)
            ln = 2 + 6 * d
            canvas.poly([(xv, y), (xv + 0.5 + d, y), (xv + 0.5 + d, y + ln), (xv, y + ln)], ROAD, mark)
            y += ln * 2


def _things(canvas: Canvas, street: Street, priors: ScenePriors) -> list[tuple[str, float]]:
    """The scene's objects as (kind, bottom row), sorted far (top) to near (bottom)."""
    rng, h, hz = canvas.rng, canvas.h, street.hz
    things = []
    for _ in range(rng.poisson(priors.trees)):
        things.append(("tree", rng.uniform(hz + 1, h)))
    for _ in range(rng.poisson(priors.poles)):
        things.append(("pole", rng.uniform(hz + 2, h)))
    for _ in range(rng.poisson(priors.persons)):
        things.append(("person", rng.uniform(hz + 3, h)))
    for _ in range(rng.poisson(priors.cars)):
        things.append(("car", rng.uniform(hz + 3, h)))
    for _ in range(rng.poisson(0.4)):
        things.append(("void", rng.uniform(hz + 3, h)))
    things.sort(key=lambda t: t[1])
    return things


@dataclass(frozen=True)
class _Spot:
    """Where one object stands: bottom row, perspective scale, road and sidewalk edges there, side, a sidewalk x."""

    yb: float
    s: float
    lr: float
    rr: float
    lw: float
    rw: float
    side: int
    on_walk: float


def _thing(canvas: Canvas, street: Street, kind: str, yb: float) -> None:
    rng = canvas.rng
    d = street.depth(yb)
    s = 0.15 + 0.85 * d  # perspective scale
    lr, rr = street.edge(yb, street.road_half)
    lw, rw = street.edge(yb, street.walk_half)
    side = -1 if rng.random() < 0.5 else 1
    on_walk = rng.uniform(lw, lr) if side < 0 else rng.uniform(rr, rw)
    draw = {"tree": _tree, "pole": _pole, "person": _person, "car": _car, "void": _clutter}[kind]
    draw(canvas, _Spot(yb, s, lr, rr, lw, rw, side, on_walk))


def _tree(canvas: Canvas, at: _Spot) -> None:
    rng, h, w, s, yb, side = canvas.rng, canvas.h, canvas.w, at.s, at.yb, at.side
    xc = (at.lw - rng.uniform(0, 0.1) * w) if side < 0 else (at.rw + rng.uniform(0, 0.1) * w)
    th = s * h * rng.uniform(0.35, 0.6)
    tw = max(1.0, s * rng.uniform(1.5, 3))
    canvas.rect(xc - tw / 2, yb - th, xc + tw / 2, yb, VEGETATION, canvas.colour(VEGETATION, (90, 70, 50)))
    r = s * h * rng.uniform(0.18, 0.32)
    col = canvas.colour(VEGETATION)
    canvas.ellipse(xc, yb - th - 0.5 * r, r * rng.uniform(0.8, 1.3), r, VEGETATION, col)
    canvas.ellipse(xc + side * r * 0.5, yb - th, r * 0.7, r * 0.6, VEGETATION, col)


def _pole(canvas: Canvas, at: _Spot) -> None:
    rng, h, s, yb, x = canvas.rng, canvas.h, at.s, at.yb, at.on_walk
    ph = s * h * rng.uniform(0.6, 0.9)
    pw = max(1.0, s * 2.5)
    canvas.rect(x, yb - ph, x + pw - 1, yb, POLE, canvas.colour(POLE))
    if rng.random() < 0.5:  # a sign at the top
        sz = max(3.0, s * 8 * rng.uniform(0.8, 1.3))
        canvas.rect(x - sz / 2, yb - ph, x + sz / 2, yb - ph + sz, SIGN, canvas.colour(SIGN))


def _person(canvas: Canvas, at: _Spot) -> None:
    h, s, yb, x = canvas.h, at.s, at.yb, at.on_walk
    ph = max(4.0, s * h * canvas.rng.uniform(0.25, 0.35))
    col = canvas.colour(PERSON)
    canvas.ellipse(x, yb - 0.4 * ph, 0.16 * ph, 0.4 * ph, PERSON, col)
    skin = canvas.colour(PERSON, canvas.design.skin_rgb, 15)
    canvas.ellipse(x, yb - 0.88 * ph, 0.1 * ph, 0.1 * ph, PERSON, skin)


def _car(canvas: Canvas, at: _Spot) -> None:
    rng, w, s, yb, lr, rr = canvas.rng, canvas.w, at.s, at.yb, at.lr, at.rr
    cw = s * w * rng.uniform(0.18, 0.28)
    ch = cw * rng.uniform(0.45, 0.6)
    xc = rng.uniform(lr + cw / 2, max(lr + cw / 2, rr - cw / 2)) if rr - lr > cw else (lr + rr) / 2
    col = canvas.colour(CAR)
    canvas.rect(xc - cw / 2, yb - 0.7 * ch, xc + cw / 2, yb - 0.15 * ch, CAR, col)
    cabin = [(xc - 0.35 * cw, yb - 0.7 * ch), (xc - 0.25 * cw, yb - ch), (xc + 0.25 * cw, yb - ch)]
    canvas.poly([*cabin, (xc + 0.35 * cw, yb - 0.7 * ch)], CAR, col)
    glass = tuple(float(v) for v in np.clip(np.asarray(col) * 0.3 + 40, 0, 255))
    windows = [(xc - 0.3 * cw, yb - 0.72 * ch), (xc - 0.22 * cw, yb - 0.95 * ch), (xc + 0.22 * cw, yb - 0.95 * ch)]
    canvas.poly([*windows, (xc + 0.3 * cw, yb - 0.72 * ch)], None, glass)
    wheel = (20.0, 20.0, 22.0)
    for wx in (xc - 0.3 * cw, xc + 0.3 * cw):
        canvas.ellipse(wx, yb - 0.15 * ch, 0.1 * cw, 0.15 * ch, CAR, wheel)


def _clutter(canvas: Canvas, at: _Spot) -> None:
    """An unlabelled object (bin, box) on the sidewalk."""
    s, yb, x = at.s, at.yb, at.on_walk
    sz = max(2.0, s * canvas.h * canvas.rng.uniform(0.06, 0.12))
    grey = float(canvas.rng.uniform(60, 200))
    canvas.rect(x - sz / 2, yb - sz, x + sz / 2, yb, IGNORE, (grey, grey * 0.95, grey * 0.9))
