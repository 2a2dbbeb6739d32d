"""Rule `select_model`: the snapshot a choice picks (best: target-val mIoU; selected: evaluate.selection, label-free)
-> chosen/{model}_{choice}.pt (esl.stages.snapshots)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.snapshots import SelectModelParams, run_select_model

run_select_model(SelectModelParams.from_rule(snakemake.params), snakemake.input, snakemake.output)
