"""Rule `pseudo_labels`: per-class thresholds over an entropy file, pseudo-labels and diagnostics
(esl.stages.pseudo_labels)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.pseudo_labels import Params, run

params = Params.from_rule(snakemake.params)
run(params, snakemake.input, snakemake.output, threads=snakemake.threads)
