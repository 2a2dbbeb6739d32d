"""Rule `plot_snapshots`: target-val mIoU against iteration, one panel per model, with the final, best and selected
models marked -> plots/snapshots.png (esl.stages.report)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.report import Params, run

run(Params.from_rule(snakemake.params), snakemake.input, snakemake.output)
