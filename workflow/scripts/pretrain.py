"""Source pretraining (or adoption of a given checkpoint) -> model.pt; resumable, one or more GPUs
(esl.stages.train)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.train import run_rule

sys.exit(run_rule("pretrain", snakemake.params, snakemake.input, snakemake.output, snakemake.threads))
