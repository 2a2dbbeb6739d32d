"""Evaluation on a labelled split: logits upsampled to each label's size, argmax, confusion matrix, IoU; and the
label-free mean entropy. Rules `evaluate` (one model), `evaluate_ensemble` (a weighted sum of models' logits) and
`evaluate_snapshots` (every snapshot of a model: target-val IoU and target-train mean entropy, cached per snapshot by
`esl.stages.snapshots.evaluate_candidates`) compute their table here and write it through one path, `write_table`.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from esl.io.labels import LabelSpace, label_space
from esl.io.layouts import read_index
from esl.io.provenance import provenance, read_provenance
from esl.io.tables import write_csv
from esl.io.torchdata import SegmentationSet, collate_keep_labels, device_mean, normalize
from esl.models.checkpoints import load_checkpoint, load_pretrained
from esl.ops.entropy import entropy_map
from esl.ops.metrics import confusion_matrix, iou_from_confusion, mean_iou
from esl.runtime.device import place, to_input
from esl.runtime.progress import Progress
from esl.stages.params import StageParams, check_input, check_int, input_files, the_file, torch_device
from esl.stages.snapshots import evaluate_candidates, samples_digest


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
        place(model, device, False).eval()
    mean = device_mean(mean_bgr, device)
    conf = np.zeros((num_classes, num_classes), dtype=np.int64)
    progress = Progress("evaluate", len(dataset), unit="img", stream=log)
    for images, labels, _ in loader:
        inputs = normalize(to_input(images, device, False), mean)  # uint8 to the device
        mains = [(model(inputs)[1], float(weight)) for model, weight in members]
        for i, label in enumerate(labels):
            score = _score(mains, i, label.shape)
            conf += confusion_matrix(label.to(device), score[0].argmax(0), num_classes)
        progress.update(len(labels))
    progress.done()
    return conf


def _score(mains, i: int, label_size) -> torch.Tensor:
    """The weighted sum of image `i`'s main-head logits, each upsampled straight to the label's own size (bilinear,
    align_corners=True), as ADVENT's evaluation."""
    score = None
    for main, weight in mains:
        up = F.interpolate(main[i : i + 1].float(), size=label_size, mode="bilinear", align_corners=True)
        score = weight * up if score is None else score + weight * up
    return score


@torch.no_grad()
def mean_entropy(
    model, samples, *, layout, size, mean_bgr, num_classes, batch_size=8, device="cpu", num_workers=0, log=None
):
    """Mean normalised entropy of the main head's softmax over every pixel of `samples` (no labels read): the
    probabilities upsampled to the input size as the entropy stage does (`esl.ops.entropy.entropy_map`). The label-free
    model-selection criterion `evaluate.selection: entropy`. Returns a float (summed in float64)."""
    dataset = SegmentationSet(samples, layout, size, mean_bgr, num_classes, labels="none", raw=True)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    place(model, device, False).eval()
    mean = device_mean(mean_bgr, device)
    total, pixels = 0.0, 0
    progress = Progress("target entropy", len(dataset), unit="img", stream=log)
    for images, _, _ in loader:
        _, main = model(normalize(to_input(images, device, False), mean))
        _, _, entropy = entropy_map(main, size)
        total += float(entropy.double().sum())
        pixels += entropy.numel()
        progress.update(len(images))
    progress.done()
    return total / max(pixels, 1)


def iou_table(conf: np.ndarray, space: LabelSpace | None = None) -> pd.DataFrame:
    """Per-class rows (class_id, class_name, iou in %, tp, fp, fn), then the mean rows (class_id < 0).

    `space` defaults to the label space of the class count (`esl.io.labels.label_space`). Mean rows: `mIoU` over all
    classes (mIoU-16 for 16 classes), then the space's `extra_means` (for SYNTHIA's 16 classes `mIoU-13`, over the 13
    without wall, fence and pole, class_id -2: the two numbers SYNTHIA results report).
    """
    iou = iou_from_confusion(conf)
    space = space if space is not None else label_space(len(iou))
    names = list(space.names)
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
    for i, (name, classes) in enumerate(space.extra_means.items(), start=2):
        means.append({"class_id": -i, "class_name": name, "iou": mean_iou(iou, classes)})
    total = pd.DataFrame([dict(m, tp=0, fp=0, fn=0) for m in means])
    return pd.concat([rows, total], ignore_index=True)


def candidate_row(iou: pd.DataFrame, target_entropy: float) -> dict:
    """A row of `eval/{model}_snapshots.csv` (less its iteration) from an `iou_table` and the target-train mean
    entropy."""
    row = {}
    for _, mean in iou[iou["class_id"] < 0].iterrows():  # mIoU, and mIoU-13 for the 16 SYNTHIA classes
        row[str(mean["class_name"])] = float(mean["iou"])
    per_class = iou[iou["class_id"] >= 0]
    row.update({f"iou_{n}": float(v) for n, v in zip(per_class["class_name"], per_class["iou"])})
    row["target_entropy"] = float(target_entropy)
    return row


def snapshot_evaluator(
    val_samples, train_samples, *, target: dict, batch_size: int, device, num_workers: int = 0, log=None
):
    """checkpoint -> `candidate_row`: target-val IoU and target-train mean entropy of one model.

    target: the rule's target input params (layout, size, mean_bgr, num_classes)."""
    kw = dict(
        layout=target["layout"],
        size=target["size"],
        mean_bgr=target["mean_bgr"],
        num_classes=target["num_classes"],
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        log=log,
    )

    def evaluate(checkpoint) -> dict:
        model, _ = load_checkpoint(checkpoint, num_classes=target["num_classes"])
        iou = iou_table(evaluate_model(model, val_samples, **kw))
        return candidate_row(iou, mean_entropy(model, train_samples, **kw))

    return evaluate


def write_table(table: pd.DataFrame, path, params: StageParams, inputs, log=None, columns=None) -> None:
    """The one way an evaluation rule writes its table: CSV with the provenance of the rule's params and inputs, and
    the table (or its `columns`) in the log."""
    write_csv(table, path, provenance(params.as_dict(), input_files(inputs)))
    print((table if columns is None else table[columns]).to_string(index=False), file=log)


def _check_common(params) -> None:
    check_input(params.rule, "target", params.target)
    check_int(params.batch_size, "evaluate.batch_size", low=1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluateParams(StageParams):
    """Rule `evaluate`: the target domain's input params and the batch size."""

    rule = "evaluate"
    target: dict
    batch_size: int

    def check(self) -> None:
        _check_common(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluateEnsembleParams(StageParams):
    """Rule `evaluate_ensemble`: `ensemble` = {models, weights} (config evaluate.ensembles), the target's input
    params, `model` = config model (to build a raw ADVENT state dict), the batch size."""

    rule = "evaluate_ensemble"
    ensemble: dict
    target: dict
    model: dict
    batch_size: int

    def check(self) -> None:
        _check_common(self)
        models, weights = self.ensemble.get("models"), self.ensemble.get("weights")
        if models is None or weights is None or len(models) != len(weights):
            raise ValueError(f"rule evaluate_ensemble: params ensemble={self.ensemble!r} needs one weight per model")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluateSnapshotsParams(StageParams):
    """Rule `evaluate_snapshots`: the candidates' iterations (snapshots, then the final model), the target's input
    params, the batch size and the DataLoader workers."""

    rule = "evaluate_snapshots"
    iterations: list
    target: dict
    batch_size: int
    num_workers: int | None = 0

    def check(self) -> None:
        _check_common(self)
        check_int(self.num_workers, "infer.num_workers", none_ok=True)
        if any(isinstance(i, bool) or not isinstance(i, int) for i in self.iterations):
            raise ValueError(f"rule evaluate_snapshots: params iterations={self.iterations!r} must be integers")


def run_evaluate(params: EvaluateParams, inputs, outputs, log=None, *, threads=None, device=None) -> None:
    """IoU table of `inputs["model"]` on `inputs["index"]` (target val) -> eval/{model}.csv."""
    device = torch_device(threads, device)
    model, _ = load_checkpoint(inputs["model"], num_classes=params.target["num_classes"])
    _evaluate_members(params, [(model, 1.0)], inputs, outputs, log, device)


def run_evaluate_ensemble(params: EvaluateEnsembleParams, inputs, outputs, log=None, *, threads=None, device=None):
    """IoU table of the weighted ensemble of `inputs["models"]` (our model.pt files or raw ADVENT state dicts) ->
    eval/{ensemble}.csv."""
    log = sys.stdout if log is None else log
    device = torch_device(threads, device)
    paths, weights = list(inputs["models"]), params.ensemble["weights"]
    if len(paths) != len(weights):
        raise ValueError(f"rule evaluate_ensemble: {len(paths)} model files for {len(weights)} weights")
    name = Path(the_file(outputs)).stem
    members = []
    for path, weight in zip(paths, weights):
        key = f"config evaluate.ensembles ({name})"
        model, _ = load_pretrained(path, params.target["num_classes"], params.model, key=key)
        members.append((model, weight))
        print(f"{path}: weight {weight}", file=log)
    _evaluate_members(params, members, inputs, outputs, log, device)


def _evaluate_members(params, members, inputs, outputs, log, device) -> None:
    log = sys.stdout if log is None else log
    target = params.target
    conf = evaluate_ensemble(
        members,
        read_index(inputs["index"]),
        layout=target["layout"],
        size=target["size"],
        mean_bgr=target["mean_bgr"],
        num_classes=target["num_classes"],
        batch_size=params.batch_size,
        device=device,
        log=log,
    )
    write_table(iou_table(conf), the_file(outputs), params, inputs, log)


def _digest(samples, index) -> str:
    return samples_digest(samples, read_provenance(index).get("config", {}).get("fingerprint"))


def run_evaluate_snapshots(params: EvaluateSnapshotsParams, inputs, outputs, log=None, *, threads=None, device=None):
    """Rows of every candidate (cached in eval/{model}_snapshots/iter_{i:06d}.csv) -> eval/{model}_snapshots.csv."""
    log = sys.stdout if log is None else log
    device = torch_device(threads, device)
    out = Path(the_file(outputs))
    candidates = list(inputs["candidates"])
    if len(candidates) != len(params.iterations):
        raise ValueError(f"rule evaluate_snapshots: {len(candidates)} checkpoints, {len(params.iterations)} iterations")
    val, train = read_index(inputs["val"]), read_index(inputs["train"])
    kw = dict(target=params.target, batch_size=params.batch_size)
    evaluate = snapshot_evaluator(val, train, **kw, num_workers=int(params.num_workers or 0), device=device, log=log)
    table = evaluate_candidates(
        list(zip(params.iterations, candidates)),
        evaluate,
        cache_dir=out.with_suffix(""),  # eval/{model}_snapshots/iter_{i:06d}.csv
        # what a cached row depends on besides its checkpoint (num_workers changes no number)
        params={**kw, "val": _digest(val, inputs["val"]), "train": _digest(train, inputs["train"])},
        log=log,
    )
    write_table(table, out, params, inputs, log, columns=["iteration", "mIoU", "target_entropy"])
