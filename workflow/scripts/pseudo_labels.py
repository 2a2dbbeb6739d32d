"""Rule `pseudo_labels`: per-class thresholds (esl, mpsl) over an entropy file, pseudo-labels and diagnostics."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import h5py
import torch

from esl.datasets import read_index, read_label
from esl.h5io import provenance
from esl.pseudo_labels import pseudo_labels_h5

with h5py.File(snakemake.input.entropy, "r") as f:
    size = tuple(f["label"].shape[1:])
layout, num_classes = snakemake.params.layout, int(snakemake.params.num_classes)


def read_gt(path):
    """Target-train ground truth at the pseudo-label size: a diagnostic only, never used for training."""
    return read_label(layout, path, size, num_classes=num_classes)


labels = {s.name: s.label for s in read_index(snakemake.input.index) if s.label}
use_gt = bool(getattr(snakemake.params, "use_gt", True)) and bool(labels)
print(f"method {snakemake.params.method}, {len(labels)} ground-truth maps, quality {'on' if use_gt else 'off'}")

params = dict(snakemake.params.params or {})
pseudo_labels_h5(
    snakemake.input.entropy,
    snakemake.output.h5,
    method=str(snakemake.params.method),
    params=params,
    prov=provenance(config=dict(snakemake.params.items()), inputs=list(snakemake.input)),
    gt_labels=(lambda name: read_gt(labels[name]) if name in labels else None) if use_gt else None,
    quality_csv=snakemake.output.quality,
    thresholds_csv=snakemake.output.thresholds,
    num_classes=num_classes,
    device="cuda" if torch.cuda.is_available() else None,  # histograms on the GPU when present: same result
)
