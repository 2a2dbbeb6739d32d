"""Pseudo-labels from entropy maps: per-class thresholds (ESL, MPSL), their application, and quality diagnostics.

For each class c, x = the ascending values (entropy for `esl`, max-prob for `mpsl`) of the pixels predicted c over
the whole target-train set, n = len(x), t_c = x[rank_index(n, q)] (q = 0.5; 0 when n = 0), then

* `esl`:  t_c = max(t_c, floor) (floor 0.1), keep a pixel's argmax if entropy <= t_c of its class;
* `mpsl`: t_c = min(t_c, cap) (cap 0.9), keep a pixel's argmax if max_prob >= t_c of its class;
* `cbst`: on max-prob counted from the top, t_c = x_desc[rank_index(n, p)] (p = 0.2), keep if max_prob >= t_c;

other pixels get 255. `nolabels` is the control, not a method: it keeps no pixel, so self-training on its labels sees
the target images (through BatchNorm's statistics and any adaptation term) but no target label; what a method gains
over it is what its pseudo-labels teach.

Thresholds are computed exactly with `esl.thresholds.StreamingRank` and post-processed in float32 (so the floor is
float32(0.1), as with the reference's float32 arrays); comparisons are against those exact float32 values. A new rule
is one more entry in `METHODS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import h5py
import numpy as np
import pandas as pd

from .classes import CLASS_NAMES, IGNORE
from .datasets import CLASS_NAMES_16
from .entropy import FIRST_PASS
from .h5io import create_h5, open_h5, read_names, require_datasets, write_csv, write_names
from .progress import Progress
from .thresholds import StreamingRank, ascending_ranks

QUALITY_COLUMNS = ["class_id", "class_name", "n_kept", "n_correct", "n_gt", "precision", "coverage"]
THRESHOLD_COLUMNS = ["class_id", "class_name", "n_pixels", "n_kept", "threshold"]


@dataclass(frozen=True)
class Method:
    """A per-class threshold rule.

    dataset: the entropy-file dataset the rule thresholds; q_key: the params key holding the rank fraction q;
    descending: count the rank from the largest value; post: (float32 thresholds, params) -> float32 thresholds;
    keep: "le" keeps value <= t, "ge" keeps value >= t, "none" keeps nothing (no thresholds are computed: NaN);
    defaults: every allowed parameter and its default.
    """

    dataset: str
    q_key: str | None
    descending: bool
    post: Callable[[np.ndarray, dict], np.ndarray]
    keep: str
    defaults: dict = field(default_factory=dict)


METHODS: dict[str, Method] = {
    "esl": Method(
        "entropy", "q", False, lambda t, p: np.maximum(t, np.float32(p["floor"])), "le", {"q": 0.5, "floor": 0.1}
    ),
    "mpsl": Method(
        "max_prob", "q", False, lambda t, p: np.minimum(t, np.float32(p["cap"])), "ge", {"q": 0.5, "cap": 0.9}
    ),
    # CBST (class-balanced self-training, Zou et al. ECCV 2018): t_c = the max-prob at the top-p fraction of class c's
    # pixels, i.e. x_desc[rank_index(n, p)] of the descending values; keep if max_prob >= t_c.
    "cbst": Method("max_prob", "p", True, lambda t, p: t, "ge", {"p": 0.2}),
    # the no-target-labels control: every pixel 255
    "nolabels": Method("entropy", None, False, lambda t, p: t, "none"),
}


def method_params(method: str, params: dict | None) -> dict:
    """The method's defaults overridden by `params`; unknown methods or keys raise ValueError."""
    if method not in METHODS:
        raise ValueError(f"unknown pseudo-label method {method!r} (known: {', '.join(METHODS)})")
    m = METHODS[method]
    params = dict(params or {})
    unknown = set(params) - set(m.defaults)
    if unknown:
        raise ValueError(f"method {method!r}: unknown parameters {sorted(unknown)} (allowed: {sorted(m.defaults)})")
    return {**m.defaults, **params}


def apply_thresholds(label: np.ndarray, values: np.ndarray, thresholds: np.ndarray, keep: str = "le") -> np.ndarray:
    """uint8 pseudo-labels: `label` where ``values <= thresholds[label]`` ("le") or ``>=`` ("ge"), else 255; all 255
    for "none".

    Labels outside [0, len(thresholds)) become 255 too.
    """
    if keep not in ("le", "ge", "none"):
        raise ValueError(f"keep must be 'le', 'ge' or 'none', got {keep!r}")
    label = np.asarray(label)
    values = np.asarray(values)
    if label.shape != values.shape:
        raise ValueError(f"label shape {label.shape} != values shape {values.shape}")
    if keep == "none":
        return np.full(label.shape, IGNORE, np.uint8)
    thresholds = np.asarray(thresholds)
    valid = (label >= 0) & (label < thresholds.size)
    t = thresholds[np.where(valid, label, 0)]
    kept = valid & ((values <= t) if keep == "le" else (values >= t))
    return np.where(kept, label, IGNORE).astype(np.uint8)


def class_name(c: int, num_classes: int = len(CLASS_NAMES)) -> str:
    """Name of class c: the 16 SYNTHIA classes when there are 16, the Cityscapes trainIds otherwise."""
    if num_classes == len(CLASS_NAMES_16):
        return CLASS_NAMES_16[c]
    return CLASS_NAMES[c] if c < len(CLASS_NAMES) else f"class_{c}"


def compute_thresholds(
    entropy_h5, method: str, params: dict | None, num_classes: int, chunk_images: int = 4, device=None
) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds of `method` over an entropy file, in two streamed passes (histograms counted on `device`: None =
    NumPy, or a torch device such as "cuda"; the same exact result either way).

    Returns (float32 (C,) post-processed thresholds, int64 (C,) pixel counts per predicted class).
    """
    m = METHODS[method]
    p = method_params(method, params)
    with open_h5(entropy_h5) as f:
        label_ds, value_ds = _datasets(f, entropy_h5, m.dataset)
        n = label_ds.shape[0]
        stored = f.get(FIRST_PASS.get(m.dataset, ""))
        if m.keep == "none":  # nothing to rank: only the pixel counts per predicted class, for the thresholds CSV
            if stored is not None and stored.shape[0] == num_classes:  # the entropy stage counted them
                return np.full(num_classes, np.nan, np.float32), stored[()].sum(axis=1).astype(np.int64)
            counts = np.zeros(num_classes, np.int64)
            progress = Progress("pseudo_labels nolabels: pixels per predicted class", n, unit="images")
            for start in range(0, n, chunk_images):
                counts += np.bincount(label_ds[start : start + chunk_images].ravel(), minlength=256)[:num_classes]
                progress.update(min(chunk_images, n - start))
            progress.done()
            return np.full(num_classes, np.nan, np.float32), counts
        passes = ((1, "add"), (2, "add_second"))
        sr = StreamingRank(num_classes, device)
        if stored is not None and stored.shape[0] == num_classes:  # pass 1 was counted by the entropy stage
            try:
                sr = StreamingRank.from_first_pass(stored[()], device)
            except ValueError as e:
                raise ValueError(f"{entropy_h5}: {FIRST_PASS[m.dataset]}: {e}") from None
            counts = sr.counts()
            sr.plan(ascending_ranks(counts, float(p[m.q_key]), m.descending))
            passes = ((2, "add_second"),)
        for pass_no, name in passes:
            add = getattr(sr, name)
            progress = Progress(f"pseudo_labels pass {pass_no}/3", n, unit="images")
            for start in range(0, n, chunk_images):
                stop = min(start + chunk_images, n)
                try:
                    add(value_ds[start:stop], label_ds[start:stop])
                except ValueError as e:
                    raise ValueError(f"{entropy_h5}: images {start}..{stop - 1}: {e}") from None
                progress.update(stop - start)
            progress.done()
            if pass_no == 1:
                counts = sr.counts()
                sr.plan(ascending_ranks(counts, float(p[m.q_key]), m.descending))
    try:
        raw = np.nan_to_num(sr.result(), nan=0.0).astype(np.float32)
    except RuntimeError as e:
        raise ValueError(f"{entropy_h5}: {e} (a stale {FIRST_PASS.get(m.dataset)}?)") from None
    return np.asarray(m.post(raw, p), dtype=np.float32), counts


def _datasets(f: h5py.File, path, value_name: str):
    require_datasets(f, path, "label", value_name, "names")
    label_ds, value_ds = f["label"], f[value_name]
    if label_ds.ndim != 3 or value_ds.shape != label_ds.shape:
        raise ValueError(
            f"{path}: 'label' {label_ds.shape} and {value_name!r} {value_ds.shape} must be equal (N, H, W)"
        )
    return label_ds, value_ds


def pseudo_labels_h5(
    entropy_h5,
    out_h5,
    *,
    method: str,
    params: dict | None,
    prov: dict,
    gt_labels: Callable[[str], np.ndarray | None] | None,
    quality_csv,
    thresholds_csv,
    num_classes: int,
    chunk_images: int = 4,
    device=None,
) -> dict:
    """Pseudo-labels of the images of an entropy file, with a thresholds CSV and a quality CSV.

    Writes `out_h5` (`label` uint8 (N, H, W), one chunk per image, 255 = ignore; `names`; attrs `method`,
    `thresholds` float64 (C,), `params` JSON, `provenance`) atomically; then `thresholds_csv` (class_id, class_name,
    n_pixels = pixels predicted c, n_kept = pixels pseudo-labelled c, threshold) and `quality_csv`.

    Quality (a diagnostic against target-train ground truth, never used for training): `gt_labels(name)` returns
    the (H, W) uint8 trainId map of an image (255 = unlabelled), or None to leave that image out. Only pixels with
    GT != 255 count. Per class c:

    * n_kept = pixels pseudo-labelled c; n_correct = those whose GT is c; n_gt = pixels whose GT is c;
    * precision_c = n_correct / n_kept (NaN if n_kept = 0);
    * coverage_c = n_correct / n_gt, the fraction of GT-c pixels that received the correct pseudo-label c
      (a recall; NaN if n_gt = 0).

    The row "all" (class_id -1) has n_kept = sum n_kept, n_correct = sum n_correct, n_gt = pixels with GT != 255;
    precision = n_correct / n_kept, and coverage = n_kept / n_gt, the fraction of labelled pixels that kept a
    pseudo-label (right or wrong; unlike the per-class coverage, which counts correct ones only).
    Without `gt_labels` (or when it returns None for every image) the metric columns are NaN.
    Returns {"thresholds", "counts", "kept", "quality"}.
    """
    p = method_params(method, params)
    m = METHODS[method]
    thresholds, counts = compute_thresholds(entropy_h5, method, p, num_classes, chunk_images, device)

    kept = np.zeros(num_classes, dtype=np.int64)
    n_kept = np.zeros(num_classes, dtype=np.int64)
    n_correct = np.zeros(num_classes, dtype=np.int64)
    n_gt = np.zeros(num_classes, dtype=np.int64)
    n_valid = 0
    any_gt = False
    with open_h5(entropy_h5) as fin:
        label_ds, value_ds = _datasets(fin, entropy_h5, m.dataset)
        names = read_names(fin)
        n, height, width = label_ds.shape
        if len(names) != n:
            raise ValueError(f"{entropy_h5}: {len(names)} names for {n} maps")
        with create_h5(out_h5, prov) as fout:
            fout.attrs["method"] = method
            fout.attrs["thresholds"] = thresholds.astype(np.float64)
            fout.attrs["params"] = json.dumps(p, sort_keys=True)
            out = fout.create_dataset("label", shape=(n, height, width), dtype=np.uint8, chunks=(1, height, width))
            write_names(fout, names)
            progress = Progress("pseudo_labels pass 3/3", n, unit="images")
            for start in range(0, n, chunk_images):
                stop = min(start + chunk_images, n)
                pseudo = apply_thresholds(label_ds[start:stop], value_ds[start:stop], thresholds, m.keep)
                out[start:stop] = pseudo
                kept += np.bincount(pseudo[pseudo != IGNORE].ravel(), minlength=num_classes)[:num_classes]
                if gt_labels is not None:
                    for i in range(start, stop):
                        gt = gt_labels(names[i])
                        if gt is None:
                            continue
                        any_gt = True
                        gt = np.asarray(gt)
                        if not np.issubdtype(gt.dtype, np.integer):
                            raise ValueError(f"{names[i]}: ground truth must be integer ids, got {gt.dtype}")
                        if gt.shape != (height, width):
                            raise ValueError(f"{names[i]}: ground truth shape {gt.shape} != ({height}, {width})")
                        valid = gt != IGNORE
                        if ((gt[valid] < 0) | (gt[valid] >= num_classes)).any():
                            raise ValueError(f"{names[i]}: ground truth holds ids outside [0, {num_classes}) and 255")
                        pl = pseudo[i - start]
                        n_valid += int(valid.sum())
                        n_gt += np.bincount(gt[valid].ravel(), minlength=num_classes)
                        sel = valid & (pl != IGNORE)
                        n_kept += np.bincount(pl[sel].ravel(), minlength=num_classes)
                        n_correct += np.bincount(pl[sel & (pl == gt)].ravel(), minlength=num_classes)
                progress.update(stop - start)
            progress.done()
            q_df = _write_csvs(
                thresholds,
                counts,
                kept,
                (n_kept, n_correct, n_gt, n_valid) if any_gt else None,
                thresholds_csv,
                quality_csv,
                prov,
            )
    return {"thresholds": thresholds, "counts": counts, "kept": kept, "quality": q_df}


def _write_csvs(thresholds, counts, kept, quality, thresholds_csv, quality_csv, prov) -> pd.DataFrame:
    """Write the thresholds CSV and the quality CSV (see `pseudo_labels_h5`); return the quality table."""
    num_classes = len(thresholds)
    ids = list(range(num_classes)) + [-1]
    names_c = [class_name(c, num_classes) for c in range(num_classes)] + ["all"]
    thr_df = pd.DataFrame(
        {"class_id": ids[:-1], "class_name": names_c[:-1], "n_pixels": counts, "n_kept": kept, "threshold": thresholds}
    )
    if quality is None:
        nan = np.full(num_classes + 1, np.nan)
        n_kept = n_correct = n_gt = precision = coverage = nan
    else:
        n_kept_c, n_correct_c, n_gt_c, n_valid = quality
        n_kept = np.append(n_kept_c, n_kept_c.sum())
        n_correct = np.append(n_correct_c, n_correct_c.sum())
        n_gt = np.append(n_gt_c, n_valid)  # the "all" row's n_gt: every pixel with GT != 255
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(n_kept > 0, n_correct / np.maximum(n_kept, 1), np.nan)
            coverage = np.where(n_gt > 0, n_correct / np.maximum(n_gt, 1), np.nan)
            coverage[-1] = n_kept[-1] / n_valid if n_valid else np.nan
    q_df = pd.DataFrame(
        {
            "class_id": ids,
            "class_name": names_c,
            "n_kept": n_kept,
            "n_correct": n_correct,
            "n_gt": n_gt,
            "precision": precision,
            "coverage": coverage,
        }
    )
    write_csv(thr_df[THRESHOLD_COLUMNS], thresholds_csv, prov)
    write_csv(q_df[QUALITY_COLUMNS], quality_csv, prov)
    return q_df
