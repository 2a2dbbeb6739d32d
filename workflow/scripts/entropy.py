"""Rule `entropy`: softmax/upsampling/argmax/max-prob/entropy maps of an infer file, plus a few pictures
(esl.stages.entropy)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.entropy import Params, run

params = Params.from_rule(snakemake.params)
run(params, snakemake.input, snakemake.output, threads=snakemake.threads)
