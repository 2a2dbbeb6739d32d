"""Per-class tables of the pseudo-label stage: thresholds (`threshold_table`) and quality against ground truth
(`Quality`, with `check_ground_truth`). Quality is a diagnostic, never used for training; only GT != 255 counts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from esl.io.labels import IGNORE, label_space

QUALITY_COLUMNS = ["class_id", "class_name", "n_kept", "n_correct", "n_gt", "precision", "coverage"]
THRESHOLD_COLUMNS = ["class_id", "class_name", "n_pixels", "n_kept", "threshold"]


def class_names(num_classes: int) -> list[str]:
    return list(label_space(num_classes).names)


def threshold_table(thresholds: np.ndarray, counts: np.ndarray, kept: np.ndarray) -> pd.DataFrame:
    """One row per class: class_id, class_name, n_pixels (predicted c), n_kept (pseudo-labelled c), threshold."""
    num_classes = len(thresholds)
    return pd.DataFrame(
        {
            "class_id": list(range(num_classes)),
            "class_name": class_names(num_classes),
            "n_pixels": counts,
            "n_kept": kept,
            "threshold": thresholds,
        }
    )[THRESHOLD_COLUMNS]


def check_ground_truth(gt, name: str, shape: tuple[int, int], num_classes: int) -> np.ndarray:
    """`gt` as an array, or one line naming the image: integer ids of the pseudo-labels' (H, W), in [0, C) or 255."""
    gt = np.asarray(gt)
    if not np.issubdtype(gt.dtype, np.integer):
        raise ValueError(f"{name}: ground truth must be integer ids, got {gt.dtype}")
    if gt.shape != tuple(shape):
        raise ValueError(f"{name}: ground truth shape {gt.shape} != ({shape[0]}, {shape[1]})")
    valid = gt[gt != IGNORE]
    if ((valid < 0) | (valid >= num_classes)).any():
        raise ValueError(f"{name}: ground truth holds ids outside [0, {num_classes}) and 255")
    return gt


class Quality:
    """Pseudo-label quality against ground truth (a diagnostic, never used for training); only GT != 255 counts.

    Per class c: n_kept = pixels pseudo-labelled c, n_correct = those whose GT is c, n_gt = pixels whose GT is c,
    precision = n_correct / n_kept (NaN if 0), coverage = n_correct / n_gt (a recall; NaN if 0). The row "all"
    (class_id -1): the sums, n_gt = pixels with GT != 255, and coverage = n_kept / n_gt (kept at all, right or wrong).
    Without any image added, the metric columns are NaN.
    """

    def __init__(self, num_classes: int):
        self.num_classes = int(num_classes)
        self.n_kept = np.zeros(self.num_classes, dtype=np.int64)
        self.n_correct = np.zeros(self.num_classes, dtype=np.int64)
        self.n_gt = np.zeros(self.num_classes, dtype=np.int64)
        self.n_valid = 0
        self.images = 0

    def add(self, pseudo: np.ndarray, gt: np.ndarray) -> None:
        """One image: (H, W) pseudo-labels (255 = none) and its checked ground truth (`check_ground_truth`)."""
        c = self.num_classes
        valid = gt != IGNORE
        self.images += 1
        self.n_valid += int(valid.sum())
        self.n_gt += np.bincount(gt[valid].ravel(), minlength=c)
        sel = valid & (pseudo != IGNORE)
        self.n_kept += np.bincount(pseudo[sel].ravel(), minlength=c)
        self.n_correct += np.bincount(pseudo[sel & (pseudo == gt)].ravel(), minlength=c)

    def add_images(self, pseudo: np.ndarray, names, gt_labels: Callable) -> None:
        """A batch of pseudo-labels (B, H, W) of the images `names`, each with `gt_labels(name)` when not None."""
        for pl, name in zip(pseudo, names):
            gt = gt_labels(name)
            if gt is not None:
                self.add(pl, check_ground_truth(gt, name, pl.shape, self.num_classes))

    def table(self) -> pd.DataFrame:
        """The quality table (QUALITY_COLUMNS): one row per class, then "all"."""
        ids = list(range(self.num_classes)) + [-1]
        names = [*class_names(self.num_classes), "all"]
        if not self.images:
            nan = np.full(self.num_classes + 1, np.nan)
            n_kept = n_correct = n_gt = precision = coverage = nan
        else:
            n_kept = np.append(self.n_kept, self.n_kept.sum())
            n_correct = np.append(self.n_correct, self.n_correct.sum())
            n_gt = np.append(self.n_gt, self.n_valid)  # the "all" row's n_gt: every pixel with GT != 255
            with np.errstate(divide="ignore", invalid="ignore"):
                precision = np.where(n_kept > 0, n_correct / np.maximum(n_kept, 1), np.nan)
                coverage = np.where(n_gt > 0, n_correct / np.maximum(n_gt, 1), np.nan)
                coverage[-1] = n_kept[-1] / self.n_valid if self.n_valid else np.nan
        columns = (ids, names, n_kept, n_correct, n_gt, precision, coverage)
        return pd.DataFrame(dict(zip(QUALITY_COLUMNS, columns)))
