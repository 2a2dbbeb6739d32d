"""One row per model (and ensemble): mIoU, per-class IoU, the quality of the pseudo-labels it was trained on, and the
best (target-val) and selected (label-free) snapshots."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from esl.h5io import provenance, write_csv
from esl.summary import summarize

p = snakemake.params
evals = {Path(f).stem: f for f in snakemake.input.evals}
quality = {Path(f).name.removesuffix("_quality.csv"): f for f in snakemake.input.quality}
snapshots = {Path(f).name.removesuffix("_snapshots.csv"): f for f in snakemake.input.snapshots}
table = summarize(p.models, evals, quality, snapshots, final_iters=p.final_iters, selection=p.selection)
write_csv(table, snakemake.output[0], provenance(dict(p.items()), snakemake.input))
print(table.to_string(index=False))
