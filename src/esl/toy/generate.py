"""Writing the toy domain pair: one seeded render per image, the `trainids` file layout and the manifest.

Every image has its own generator seeded by (seed, domain, split, index), so adding images never changes earlier ones.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from esl.io.labels import CLASS_NAMES, IGNORE
from esl.io.provenance import provenance
from esl.io.tables import write_csv
from esl.toy.appearance import shift_appearance
from esl.toy.design import ToyDesign
from esl.toy.scene import Canvas, draw_scene

SPLITS = (("source", "train"), ("target", "train"), ("target", "val"))

_DOMAIN_CODE = {"source": 0, "target": 1}

_SPLIT_CODE = {"train": 0, "val": 1}

_DEFAULT = ToyDesign()


def _check(name, value, minimum):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"generate_toy: {name} must be an integer >= {minimum}, got {value!r}")


def _validate(seed, height, width, n_source, n_target_train, n_target_val, shift, design):
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
    if not isinstance(design, ToyDesign):
        raise ValueError(
            f"generate_toy: design must be a ToyDesign (ToyDesign.from_dict reads a mapping), got {design!r}"
        )


def _render(domain: str, split: str, index: int, *, seed: int, height: int, width: int, shift: float, design):
    rng = np.random.default_rng([seed, _DOMAIN_CODE[domain], _SPLIT_CODE[split], index])
    # Each target image gets its own shift strength, from barely shifted to fully shifted: the target domain is a
    # continuum, as real ones are (weather, time of day), so confident predictions on mildly shifted images carry
    # information about the strongly shifted ones, which is what self-training exploits.
    s = 0.0 if domain == "source" else float(shift) * rng.uniform(0.1, 1.0)
    canvas = Canvas(rng, height, width, s, design)
    draw_scene(canvas, design.priors(domain))
    img = canvas.image
    if domain == "target":
        img = shift_appearance(img, canvas.label, rng, s, design)
    bgr = np.clip(np.round(img), 0, 255).astype(np.uint8)[..., ::-1]
    return np.ascontiguousarray(bgr), canvas.label


def _write_png(path: Path, array: np.ndarray) -> None:
    if not cv2.imwrite(str(path), array):
        raise OSError(f"generate_toy: cannot write {path}")


def _write_split(staging: Path, domain: str, split: str, count: int, render) -> tuple[list[dict], np.ndarray]:
    """Render and write one domain/split's images and labels; return its manifest rows and label histogram."""
    img_dir = staging / domain / split / "images"
    lab_dir = staging / domain / split / "labels"
    img_dir.mkdir(parents=True)
    lab_dir.mkdir(parents=True)
    rows, hist = [], np.zeros(256, np.int64)
    for i in range(count):
        name = f"{domain}_{split}_{i:04d}"
        bgr, label = render(domain, split, i)
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
    return rows, hist


def _fractions(hist: np.ndarray) -> dict:
    n = int(hist.sum())
    return {CLASS_NAMES[c]: round(int(hist[c]) / n, 4) for c in range(len(CLASS_NAMES)) if hist[c]}


def _install(staging: Path, root: Path) -> None:
    """Replace `root/source` and `root/target` with the staged ones."""
    for domain in ("source", "target"):
        dest = root / domain
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staging / domain, dest)


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
    design: ToyDesign = _DEFAULT,
) -> dict:
    """Write the toy domain pair under `root` (the `trainids` layout) and `root/manifest.csv` last; return a summary.

    The domain folders are built in a staging folder and moved into place (replacing `root/source` and `root/target`)
    only once complete; the manifest, the completion marker, is removed first and written last. The manifest's
    provenance records the arguments, and `design.to_dict()` as `design` when it is not the default.
    """
    _validate(seed, height, width, n_source, n_target_train, n_target_val, shift, design)
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

    def render(domain, split, i):
        return _render(domain, split, i, seed=seed, height=height, width=width, shift=shift, design=design)

    rows, hists = [], {}
    try:
        for domain, split in SPLITS:
            split_rows, hists[f"{domain}/{split}"] = _write_split(
                staging, domain, split, counts[(domain, split)], render
            )
            rows += split_rows
        _install(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    config = dict(root=str(root), seed=seed, height=height, width=width, n_source=n_source)
    config.update(n_target_train=n_target_train, n_target_val=n_target_val, shift=shift)
    if design != _DEFAULT:
        config["design"] = design.to_dict()
    write_csv(pd.DataFrame(rows, columns=["domain", "split", "name", "image", "label"]), manifest, provenance(config))
    total = sum(hists.values())
    return {
        "root": str(root),
        "counts": {f"{d}/{s}": n for (d, s), n in counts.items()},
        "class_fractions": {key: _fractions(hist) for key, hist in hists.items()},
        "ignore_fraction": round(int(total[IGNORE]) / int(total.sum()), 5),
    }
