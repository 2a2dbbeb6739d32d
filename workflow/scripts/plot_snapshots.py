"""Target-val mIoU against iteration, one panel per model, with the final, best and selected models marked."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.h5io import read_csv
from esl.plots import plot_snapshots

p = snakemake.params
tables = {model: read_csv(path) for model, path in zip(p.models, snakemake.input.snapshots)}
plot_snapshots(tables, snakemake.output[0], selection=p.selection)
print(f"wrote {snakemake.output[0]} ({len(tables)} models)")
