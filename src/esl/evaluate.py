"""Evaluation on a labelled split: logits upsampled to each label's size, argmax, confusion matrix, IoU."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from . import datasets
from .data import SegmentationSet, collate_keep_labels, device_mean, normalize
from .entropy import entropy_map
from .metrics import confusion_matrix, iou_from_confusion, mean_iou
from .progress import Progress


@torch.no_grad()
def evaluate_model(
    model, samples, *, layout, size, mean_bgr, num_classes, batch_size=8, device="cpu", num_workers=0, log=None
):
    """Confusion matrix (C, C) over all pixels whose label != 255; labels are kept at their own resolution."""
    return evaluate_ensemble(
        [(model, 1.0)],
        samples,
        layout=layout,
        size=size,
        mean_bgr=mean_bgr,
        num_classes=num_classes,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        log=log,
    )


@torch.no_grad()
def evaluate_ensemble(
    members, samples, *, layout, size, mean_bgr, num_classes, batch_size=8, device="cpu", num_workers=0, log=None
):
    """Confusion matrix of the weighted sum of the members' main-head logits, each upsampled (bilinear,
    align_corners=True) to the label's size, as ADVENT's `eval_UDA.py` combines several models.

    members: [(model, weight), ...]; one member of weight 1 is plain evaluation (1.0 * x == x exactly)."""
    dataset = SegmentationSet(samples, layout, size, mean_bgr, num_classes, labels="gt", label_size=None, raw=True)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_keep_labels)
    for model, _ in members:
        model.to(device).eval()
    mean = device_mean(mean_bgr, device)
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    progress = Progress("evaluate", len(dataset), unit="img", stream=log)
    for images, labels, _ in loader:
        inputs = normalize(images.to(device, non_blocking=True), mean)  # uint8 to the device
        mains = [(model(inputs)[1], float(weight)) for model, weight in members]
        for i, label in enumerate(labels):
            score = None
            for main, weight in mains:
                up = F.interpolate(main[i : i + 1].float(), size=label.shape, mode="bilinear", align_corners=True)
                score = weight * up if score is None else score + weight * up
            conf += confusion_matrix(label.to(device), score[0].argmax(0), num_classes)
        progress.update(len(labels))
    progress.done()
    return conf


@torch.no_grad()
def mean_entropy(
    model, samples, *, layout, size, mean_bgr, num_classes, batch_size=8, device="cpu", num_workers=0, log=None
):
    """Mean normalised entropy of the main head's softmax over every pixel of `samples` (no labels read): the
    probabilities upsampled to the input size as the entropy stage does (`esl.entropy.entropy_map`). The label-free
    model-selection criterion `evaluate.selection: entropy`. Returns a float (summed in float64)."""
    dataset = SegmentationSet(samples, layout, size, mean_bgr, num_classes, labels="none", raw=True)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    model.to(device).eval()
    mean = device_mean(mean_bgr, device)
    total, pixels = 0.0, 0
    progress = Progress("target entropy", len(dataset), unit="img", stream=log)
    for images, _, _ in loader:
        _, main = model(normalize(images.to(device, non_blocking=True), mean))
        _, _, entropy = entropy_map(main, size)
        total += float(entropy.double().sum())
        pixels += entropy.numel()
        progress.update(len(images))
    progress.done()
    return total / max(pixels, 1)


def iou_table(conf: np.ndarray, class_names=None) -> pd.DataFrame:
    """Per-class rows (class_id, class_name, iou in %, tp, fp, fn), then the mean rows (class_id < 0).

    Names default to the label space of the class count (`esl.datasets.class_names`: the 19 Cityscapes trainIds, the
    16 SYNTHIA classes). Mean rows: `mIoU` over all classes (mIoU-16 for 16 classes) and, for the 16 SYNTHIA
    classes, `mIoU-13` over the 13 without wall, fence and pole (class_id -2), the two numbers SYNTHIA results report.
    """
    iou = iou_from_confusion(conf)
    names = list(class_names) if class_names is not None else list(datasets.class_names(len(iou)))
    if len(names) != len(iou):
        raise ValueError(f"{len(names)} class names for {len(iou)} classes")
    tp = np.diag(conf)
    rows = pd.DataFrame(
        {
            "class_id": np.arange(len(iou)),
            "class_name": names,
            "iou": np.round(iou * 100, 2),
            "tp": tp,
            "fp": conf.sum(0) - tp,
            "fn": conf.sum(1) - tp,
        }
    )
    means = [{"class_id": -1, "class_name": "mIoU", "iou": mean_iou(iou)}]
    if len(iou) == len(datasets.CLASS_NAMES_16) and names == list(datasets.CLASS_NAMES_16):
        means.append({"class_id": -2, "class_name": "mIoU-13", "iou": mean_iou(iou, datasets.CLASSES_13)})
    total = pd.DataFrame([dict(m, tp=0, fp=0, fn=0) for m in means])
    return pd.concat([rows, total], ignore_index=True)
