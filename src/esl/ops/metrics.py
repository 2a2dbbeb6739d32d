"""Segmentation metrics: confusion matrix, per-class IoU, mean IoU."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from esl.io.labels import IGNORE


def confusion_matrix(label, pred, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """(C, C) int64 counts, rows = ground truth, columns = prediction.

    Pixels whose label is `ignore`, negative or >= C are skipped. Accepts numpy arrays or torch tensors (counted with
    `bincount` on the tensor's device); a prediction outside 0..C-1 on a counted pixel is an error.
    """
    c = int(num_classes)
    if c < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if tuple(label.shape) != tuple(pred.shape):
        raise ValueError(f"label and prediction shapes differ: {tuple(label.shape)} vs {tuple(pred.shape)}")
    if isinstance(label, torch.Tensor) or isinstance(pred, torch.Tensor):
        device = label.device if isinstance(label, torch.Tensor) else pred.device
        lab, prd = _flat_long(label, device), _flat_long(pred, device)
        keep = (lab != ignore) & (lab >= 0) & (lab < c)
        lab, prd = lab[keep], prd[keep]
        if prd.numel() and bool(((prd < 0) | (prd >= c)).any()):
            raise ValueError(f"prediction values outside 0..{c - 1}")
        counts = torch.bincount(lab * c + prd, minlength=c * c)
        return counts.reshape(c, c).cpu().numpy().astype(np.int64)
    lab = np.asarray(label).reshape(-1).astype(np.int64)
    prd = np.asarray(pred).reshape(-1).astype(np.int64)
    keep = (lab != ignore) & (lab >= 0) & (lab < c)
    lab, prd = lab[keep], prd[keep]
    if prd.size and ((prd < 0) | (prd >= c)).any():
        raise ValueError(f"prediction values outside 0..{c - 1}")
    return np.bincount(lab * c + prd, minlength=c * c).reshape(c, c).astype(np.int64)


def _flat_long(x, device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device).reshape(-1).long()
    return torch.from_numpy(np.asarray(x).reshape(-1).astype(np.int64)).to(device)


def iou_from_confusion(conf) -> np.ndarray:
    """Per-class IoU = TP / (TP + FP + FN) as float64; NaN for classes absent from both label and prediction."""
    conf = np.asarray(conf, dtype=np.float64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {conf.shape}")
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    iou = np.full(tp.shape, np.nan)
    np.divide(tp, union, out=iou, where=union > 0)
    return iou


def mean_iou(iou, classes=None) -> float:
    """nanmean of the IoUs × 100, rounded to 2 decimals, over all classes or the class indices `classes`.

    NaN when every selected class is NaN.
    """
    iou = np.asarray(iou, dtype=np.float64)
    if classes is not None:
        iou = iou[np.asarray(list(classes), dtype=np.int64)]
    if iou.size == 0 or np.isnan(iou).all():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return round(float(np.nanmean(iou)) * 100.0, 2)
