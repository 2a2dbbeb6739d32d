"""Rule `export`: one model's predictions on a target split as a benchmark server's zip (esl.stages.export)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.export import Params, run

run(Params.from_rule(snakemake.params), snakemake.input, snakemake.output, threads=snakemake.threads)
