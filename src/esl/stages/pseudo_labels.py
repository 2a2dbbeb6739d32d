"""Pseudo-labels from entropy maps (rule `pseudo_labels`): per-class thresholds, their application, quality diagnostics.

For each class c, x = the ascending values (entropy for `esl`, max-prob for `mpsl`) of the pixels predicted c over
the whole target-train set, n = len(x), t_c = x[rank_index(n, q)] (q = 0.5; 0 when n = 0), then

* `esl`:  t_c = max(t_c, floor) (floor 0.1), keep a pixel's argmax if entropy <= t_c of its class;
* `mpsl`: t_c = min(t_c, cap) (cap 0.9), keep a pixel's argmax if max_prob >= t_c of its class;
* `cbst`: on max-prob counted from the top, t_c = x_desc[rank_index(n, p)] (p = 0.2), keep if max_prob >= t_c;

other pixels get 255. `nolabels` is the control, not a method: it keeps no pixel, so self-training on its labels sees
the target images (through BatchNorm's statistics and any adaptation term) but no target label; what a method gains
over it is what its pseudo-labels teach. The rules are `esl.ops.thresholds.METHODS`: a new rule is one more entry there.

Thresholds are exact (`esl.ops.ranks.StreamingRank`) and post-processed in float32 (so the floor is float32(0.1), as
with the reference's float32 arrays); comparisons are against those exact float32 values. One path: pass 1 of the
ranked map (`esl.ops.histograms.FirstPass`, as the entropy stage stored it, or counted here by streaming the map once),
ranks planned from its pixel counts, pass 2 over the map, the rule's post-processing; then pass 3 applies them.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable

import numpy as np

from esl.io.h5 import create_h5, open_h5, read_names, require_datasets, write_names
from esl.io.images import read_label
from esl.io.labels import IGNORE
from esl.io.layouts import LAYOUTS, check_num_classes, read_index
from esl.io.provenance import provenance
from esl.io.tables import write_csv
from esl.ops.histograms import FirstPass, dataset_name
from esl.ops.quality import QUALITY_COLUMNS, THRESHOLD_COLUMNS, Quality, check_ground_truth, threshold_table
from esl.ops.thresholds import METHODS, apply_thresholds, method_params
from esl.runtime.progress import Progress
from esl.stages.params import StageParams, input_files, torch_device

__all__ = [
    "QUALITY_COLUMNS",
    "THRESHOLD_COLUMNS",
    "Params",
    "Quality",
    "check_ground_truth",
    "compute_thresholds",
    "ground_truth_reader",
    "pseudo_labels_h5",
    "run",
    "threshold_table",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Params(StageParams):
    """Rule `pseudo_labels`'s params: the method and its config section (`pseudo_labels.{method}`), the target
    layout and the class count (for the ground-truth diagnostics)."""

    rule = "pseudo_labels"
    method: str
    params: dict | None
    layout: str
    num_classes: int

    def check(self) -> None:
        if self.method not in METHODS:
            raise ValueError(
                f"config pseudo_labels.methods: unknown method {self.method!r} (known: {', '.join(METHODS)})"
            )
        try:
            method_params(self.method, self.params)
        except ValueError as e:
            raise ValueError(f"config pseudo_labels.{self.method}: {e}") from None
        if self.layout not in LAYOUTS:
            raise ValueError(f"config data.target.layout={self.layout!r} must be one of {', '.join(LAYOUTS)}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise ValueError(f"config data.num_classes={self.num_classes!r} must be an integer")
        try:
            check_num_classes(self.layout, self.num_classes)
        except ValueError as e:
            raise ValueError(f"config data.num_classes: {e}") from None


def run(params: Params, inputs, outputs, log=None, *, threads=None, device=None) -> dict:
    """Pseudo-labels of `inputs["entropy"]` into `outputs` h5/thresholds/quality; the ground truth of
    `inputs["index"]` (when it lists labels) only feeds the quality table. Histograms count on CUDA when it is the
    device (`torch.bincount`), else with NumPy: the same result either way."""
    out = sys.stdout if log is None else log
    device = torch_device(threads, device)
    gt_labels, n_labels = ground_truth_reader(params, inputs["entropy"], inputs.get("index"))
    quality = "on" if gt_labels is not None else "off"
    print(f"method {params.method}, {n_labels} ground-truth maps, quality {quality}", file=out, flush=True)
    return pseudo_labels_h5(
        inputs["entropy"],
        outputs["h5"],
        method=params.method,
        params=dict(params.params or {}),
        prov=provenance(config=params.as_dict(), inputs=input_files(inputs)),
        gt_labels=gt_labels,
        quality_csv=outputs["quality"],
        thresholds_csv=outputs["thresholds"],
        num_classes=params.num_classes,
        device=device if device.type == "cuda" else None,
        log=log,
    )


def ground_truth_reader(params: Params, entropy_h5, index) -> tuple[Callable | None, int]:
    """(name -> target-train ground truth at the pseudo-label size, or None for unlabelled images; the number of
    labelled images). None instead of a reader when the index (if any) lists no label: a diagnostic only."""
    labels = {s.name: s.label for s in read_index(index) if s.label} if index else {}
    if not labels:
        return None, 0
    with open_h5(entropy_h5) as f:
        require_datasets(f, entropy_h5, "label")
        size = tuple(f["label"].shape[1:])

    def read(name):
        path = labels.get(name)
        return None if path is None else read_label(params.layout, path, size, num_classes=params.num_classes)

    return read, len(labels)


class _Maps:
    """The `label` map and one value map (`value_name`) of an open entropy file, read a few images at a time."""

    def __init__(self, f, path, value_name: str, chunk_images: int = 4, log=None):
        require_datasets(f, path, "label", value_name, "names")
        self.label, self.values = f["label"], f[value_name]
        if self.label.ndim != 3 or self.values.shape != self.label.shape:
            raise ValueError(
                f"{path}: 'label' {self.label.shape} and {value_name!r} {self.values.shape} must be equal (N, H, W)"
            )
        self.f, self.path, self.value_name = f, path, value_name
        self.chunk_images, self.log = max(1, int(chunk_images)), log
        self.n = self.label.shape[0]

    def names(self) -> list[str]:
        names = read_names(self.f)
        if len(names) != self.n:
            raise ValueError(f"{self.path}: {len(names)} names for {self.n} maps")
        return names

    def chunks(self, what: str, values: bool = True):
        """(start, stop, label, values or None) chunk by chunk, with progress lines naming `what`."""
        progress = Progress(what, self.n, unit="images", stream=self.log)
        for start in range(0, self.n, self.chunk_images):
            stop = min(start + self.chunk_images, self.n)
            yield start, stop, self.label[start:stop], self.values[start:stop] if values else None
            progress.update(stop - start)
        progress.done()

    def stream(self, add: Callable, what: str) -> None:
        """`add(values, label)` for every chunk; its ValueError names the file and the images."""
        for start, stop, label, values in self.chunks(what):
            try:
                add(values, label)
            except ValueError as e:
                raise ValueError(f"{self.path}: images {start}..{stop - 1}: {e}") from None


def compute_thresholds(
    entropy_h5, method: str, params: dict | None, num_classes: int, chunk_images: int = 4, device=None, log=None
) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds of `method` over an entropy file: pass 1 (stored, or counted here), ranks, pass 2, post-processing.
    Histograms count on `device` (None = NumPy, or a torch device such as "cuda"): the same exact result either way.

    Returns (float32 (C,) post-processed thresholds, NaN for the nolabels control; int64 (C,) pixels per class).
    """
    p = method_params(method, params)
    m = METHODS[method]
    with open_h5(entropy_h5) as f:
        maps = _Maps(f, entropy_h5, m.dataset, chunk_images, log)
        if m.keep == "none":  # the control ranks nothing: the pixel counts only, for the thresholds table
            return np.full(num_classes, np.nan, np.float32), _pixel_counts(maps, num_classes)
        first = _first_pass(maps, num_classes, device)
        counts, rank = first.counts(m.dataset), first.rank(m.dataset)
        rank.plan(m.ranks(counts, p))
        maps.stream(rank.add_second, "pseudo_labels pass 2/3")
    try:
        selected = rank.result()
    except RuntimeError as e:
        stale = f" (a stale {dataset_name(m.dataset)}?)" if first.stored else ""
        raise ValueError(f"{entropy_h5}: {e}{stale}") from None
    return m.thresholds(selected, p), counts


def _first_pass(maps: _Maps, num_classes: int, device) -> FirstPass:
    """Pass 1 of the ranked map: as the entropy stage stored it, else counted by streaming the map once."""
    key = maps.value_name
    first = FirstPass.read(maps.f, maps.path, num_classes, keys=(key,), device=device)
    if first is None:
        first = FirstPass(num_classes, device, keys=(key,))
        maps.stream(first.rank(key).add, "pseudo_labels pass 1/3")
    return first


def _pixel_counts(maps: _Maps, num_classes: int) -> np.ndarray:
    """(C,) int64 pixels per predicted class: from the stored pass 1 if any, else counted from the labels."""
    first = FirstPass.read(maps.f, maps.path, num_classes, keys=(maps.value_name,))
    if first is not None:
        return first.counts(maps.value_name)
    counts = np.zeros(num_classes, np.int64)
    for _, _, label, _ in maps.chunks("pseudo_labels nolabels: pixels per predicted class", values=False):
        counts += np.bincount(label.ravel(), minlength=256)[:num_classes]
    return counts


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
    log=None,
) -> dict:
    """Pseudo-labels of the images of an entropy file, with a thresholds CSV and a quality CSV.

    Writes `out_h5` (`label` uint8 (N, H, W), one chunk per image, 255 = ignore; `names`; attrs `method`,
    `thresholds` float64 (C,), `params` JSON, `provenance`) atomically; then `thresholds_csv` (class_id, class_name,
    n_pixels = pixels predicted c, n_kept = pixels pseudo-labelled c, threshold) and `quality_csv` (`Quality`:
    against target-train ground truth, `gt_labels(name)` → (H, W) integer trainIds, 255 = unlabelled, or None to
    leave an image out; no `gt_labels` → NaN metrics). Returns {"thresholds", "counts", "kept", "quality"}.
    """
    p = method_params(method, params)
    m = METHODS[method]
    thresholds, counts = compute_thresholds(entropy_h5, method, p, num_classes, chunk_images, device, log)
    kept = np.zeros(num_classes, dtype=np.int64)
    quality = Quality(num_classes)
    with open_h5(entropy_h5) as fin:
        maps = _Maps(fin, entropy_h5, m.dataset, chunk_images, log)
        names = maps.names()
        with create_h5(out_h5, prov) as fout:
            out = _create_output(fout, method, thresholds, p, names, maps.label.shape)
            for start, stop, label, values in maps.chunks("pseudo_labels pass 3/3"):
                pseudo = apply_thresholds(label, values, thresholds, m.keep)
                out[start:stop] = pseudo
                kept += np.bincount(pseudo[pseudo != IGNORE].ravel(), minlength=num_classes)[:num_classes]
                if gt_labels is not None:
                    quality.add_images(pseudo, names[start:stop], gt_labels)
            write_csv(threshold_table(thresholds, counts, kept), thresholds_csv, prov)
            table = quality.table()
            write_csv(table, quality_csv, prov)
    return {"thresholds": thresholds, "counts": counts, "kept": kept, "quality": table}


def _create_output(f, method: str, thresholds: np.ndarray, params: dict, names, shape):
    """The pseudo-label file's attributes, names and (empty) `label` dataset."""
    n, height, width = shape
    f.attrs["method"] = method
    f.attrs["thresholds"] = thresholds.astype(np.float64)
    f.attrs["params"] = json.dumps(params, sort_keys=True)
    out = f.create_dataset("label", shape=(n, height, width), dtype=np.uint8, chunks=(1, height, width))
    write_names(f, names)
    return out
