"""Self-training on source labels + target pseudo-labels -> model.pt; resumable, on one GPU or several
(esl.stages.train)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.train import run_rule

sys.exit(run_rule("selftrain", snakemake.params, snakemake.input, snakemake.output, snakemake.threads))
