"""Rule `evaluate`: mIoU of one model on target val -> eval/{model}.csv (esl.stages.evaluate)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.evaluate import EvaluateParams, run_evaluate

params = EvaluateParams.from_rule(snakemake.params)
run_evaluate(params, snakemake.input, snakemake.output, threads=snakemake.threads)
