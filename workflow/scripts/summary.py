"""One row per model: mIoU, per-class IoU, and the quality of the pseudo-labels it was trained on."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from esl.h5io import provenance, write_csv
from esl.summary import summarize

evals = {Path(f).stem: f for f in snakemake.input.evals}
quality = {Path(f).name.removesuffix("_quality.csv"): f for f in snakemake.input.quality}
table = summarize(snakemake.params.models, evals, quality)
write_csv(table, snakemake.output[0], provenance(dict(snakemake.params.items()), snakemake.input))
print(table.to_string(index=False))
