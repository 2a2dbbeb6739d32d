"""Rule `evaluate_ensemble`: mIoU of a weighted ensemble (summed upsampled logits, as ADVENT's eval_UDA.py) on target
val -> eval/{name}.csv (esl.stages.evaluate)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.evaluate import EvaluateEnsembleParams, run_evaluate_ensemble

params = EvaluateEnsembleParams.from_rule(snakemake.params)
run_evaluate_ensemble(params, snakemake.input, snakemake.output, threads=snakemake.threads)
