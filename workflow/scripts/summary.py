"""Rule `summary`: one row per model (and ensemble): mIoU, per-class IoU, the quality of the pseudo-labels it was
trained on, and the best (target-val) and selected (label-free) snapshots -> summary.csv (esl.stages.summary)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.summary import Params, run

run(Params.from_rule(snakemake.params), snakemake.input, snakemake.output)
