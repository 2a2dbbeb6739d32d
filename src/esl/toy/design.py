"""The toy's design: every colour, appearance strength and scene prior the renderer uses, as one frozen value.

`ToyDesign()` is the toy default (what `config/config.yaml`'s `toy:` section generates); a variant is
`dataclasses.replace(ToyDesign(), fog=0.85)` or, from a config's `toy.design` mapping, `ToyDesign.from_dict(d)`, which
fills what `d` leaves out from the default and refuses unknown keys. `to_dict()` gives the same mapping back (plain
lists and numbers: JSON, YAML and Snakemake params can carry it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from esl.io.labels import CLASS_NAMES

# The Cityscapes trainIds the toy draws.
ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, SKY, PERSON, CAR = 0, 1, 2, 5, 7, 8, 10, 11, 13
CLASSES = (ROAD, SIDEWALK, BUILDING, POLE, SIGN, VEGETATION, SKY, PERSON, CAR)

PREFIX = "toy.design"

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class PerClass:
    """One value per class the toy draws, named like `esl.io.labels.CLASS_NAMES`; `values[trainId]` reads one."""

    road: Any
    sidewalk: Any
    building: Any
    pole: Any
    sign: Any
    vegetation: Any
    sky: Any
    person: Any
    car: Any

    def __getitem__(self, cls: int):
        return getattr(self, CLASS_NAMES[cls])


@dataclass(frozen=True)
class ScenePriors:
    """A domain's scene statistics: ranges (fractions of the image height or width) and mean object counts."""

    horizon: tuple[float, float] = (0.32, 0.48)  # horizon row, a fraction of the height, drawn uniformly
    road: tuple[float, float] = (0.55, 0.85)  # road width at the bottom row, a fraction of the width
    cars: float = 2.0  # Poisson means of the object counts of one scene
    persons: float = 2.0
    poles: float = 2.0
    trees: float = 2.0


def _source_rgb() -> PerClass:
    return PerClass(
        road=(96, 88, 104),
        sidewalk=(178, 166, 150),
        building=(150, 112, 92),
        pole=(72, 72, 78),
        sign=(226, 200, 36),
        vegetation=(56, 124, 44),
        sky=(112, 164, 228),
        person=(180, 60, 70),
        car=(40, 60, 150),
    )


def _target_rgb() -> PerClass:
    return PerClass(
        road=(112, 110, 104),  # lighter, greyer asphalt
        sidewalk=(156, 146, 150),  # darker and cooler, towards the source road
        building=(122, 118, 124),  # grey concrete
        pole=(52, 56, 52),
        sign=(214, 140, 40),  # orange
        vegetation=(100, 116, 48),  # olive, towards the source buildings
        sky=(146, 172, 210),  # hazy, paler
        person=(90, 70, 110),
        car=(150, 150, 160),
    )


def _spread() -> PerClass:
    return PerClass(road=6, sidewalk=8, building=18, pole=6, sign=10, vegetation=12, sky=6, person=40, car=45)


def _target_priors() -> ScenePriors:
    return ScenePriors(horizon=(0.36, 0.52), road=(0.45, 0.80), cars=2.6, persons=2.6, poles=2.5, trees=2.5)


@dataclass(frozen=True)
class ToyDesign:
    """What the toy looks like; the defaults are the toy default. Values are checked on construction."""

    # class base colours (RGB) of the source rendering, and the target palette they move towards at shift = 1
    source_rgb: PerClass = field(default_factory=_source_rgb)
    target_rgb: PerClass = field(default_factory=_target_rgb)
    # per-object colour spread (RGB standard deviation) of each class
    spread: PerClass = field(default_factory=_spread)
    skin_rgb: RGB = (205, 160, 130)  # persons' heads
    # target texture amplitude on road, sidewalk and buildings and sensor noise sigma (0..255 units), extra Gaussian
    # blur sigma (pixels), all at shift = 1
    texture: float = 6.0
    noise: float = 4.0
    blur: float = 0.6
    # fog: density at the top row at shift = 1 (0: off), its colour, how much it thins towards the bottom row (1: to
    # none, 0: uniform haze)
    fog: float = 0.0
    fog_rgb: RGB = (198, 200, 204)
    fog_slope: float = 1.0
    source_priors: ScenePriors = field(default_factory=ScenePriors)
    target_priors: ScenePriors = field(default_factory=_target_priors)

    def __post_init__(self):
        for name, value in _checked(self).items():
            object.__setattr__(self, name, value)

    def priors(self, domain: str) -> ScenePriors:
        return {"source": self.source_priors, "target": self.target_priors}[domain]

    def to_dict(self) -> dict:
        """Plain nested dicts, lists and numbers, the form `from_dict` reads."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict | None) -> ToyDesign:
        """The default with the keys of `d` (a `toy.design` mapping; nested ones may be partial) replaced."""
        return cls(**_merge(cls(), d or {}, PREFIX))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _merge(default, d, where: str) -> dict:
    """The fields of the dataclass value `default` with those named in `d` replaced (nested dataclasses merged)."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: must be a mapping, got {d!r}")
    names = [f.name for f in dataclasses.fields(default)]
    for k in d:
        if k not in names:
            raise ValueError(f"{where}.{k}: unknown key (known: {', '.join(names)})")
    out = {}
    for name in names:
        value = getattr(default, name)
        if name in d and dataclasses.is_dataclass(value):
            out[name] = type(value)(**_merge(value, d[name], f"{where}.{name}"))
        else:
            out[name] = d.get(name, value)
    return out


def _number(where: str, value, low: float, high: float = math.inf) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        bounds = f">= {low}" if high == math.inf else f"in [{low}, {high}]"
        raise ValueError(f"{where}: must be a number {bounds}, got {value!r}")
    return float(value)


def _rgb(where: str, value) -> RGB:
    ok = isinstance(value, (tuple, list)) and len(value) == 3
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
        raise ValueError(f"{where}: must be 3 integers in [0, 255] (R, G, B), got {value!r}")
    return tuple(value)


def _range(where: str, value) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{where}: must be [low, high] with 0 <= low <= high <= 1, got {value!r}")
    low, high = (_number(where, v, 0.0, 1.0) for v in value)
    if low > high:
        raise ValueError(f"{where}: must be [low, high] with 0 <= low <= high <= 1, got {value!r}")
    return low, high


def _per_class(where: str, value, check) -> PerClass:
    if not isinstance(value, PerClass):
        raise ValueError(f"{where}: must be a PerClass value, got {value!r}")
    return PerClass(**{name: check(f"{where}.{name}", getattr(value, name)) for name in _names(value)})


def _priors(where: str, value) -> ScenePriors:
    if not isinstance(value, ScenePriors):
        raise ValueError(f"{where}: must be a ScenePriors value, got {value!r}")
    return ScenePriors(
        horizon=_range(f"{where}.horizon", value.horizon),
        road=_range(f"{where}.road", value.road),
        **{k: _number(f"{where}.{k}", getattr(value, k), 0.0) for k in ("cars", "persons", "poles", "trees")},
    )


def _names(value) -> list[str]:
    return [f.name for f in dataclasses.fields(value)]


def _checked(design: ToyDesign) -> dict:
    """Every field of `design`, checked (a one-line error naming `toy.design.<key>`) and in its canonical type."""
    at = f"{PREFIX}."
    out = {name: _per_class(at + name, getattr(design, name), _rgb) for name in ("source_rgb", "target_rgb")}
    out["spread"] = _per_class(at + "spread", design.spread, lambda w, v: _number(w, v, 0.0))
    out["skin_rgb"] = _rgb(at + "skin_rgb", design.skin_rgb)
    out["fog_rgb"] = _rgb(at + "fog_rgb", design.fog_rgb)
    for name in ("texture", "noise", "blur"):
        out[name] = _number(at + name, getattr(design, name), 0.0)
    out["fog"] = _number(at + "fog", design.fog, 0.0, 1.0)
    out["fog_slope"] = _number(at + "fog_slope", design.fog_slope, 0.0, 1.0)
    for name in ("source_priors", "target_priors"):
        out[name] = _priors(at + name, getattr(design, name))
    return out
