"""Rule `infer_gather`: the inference shards of one model -> infer/{model}.h5, identical to an unsharded run's
(provenance aside; esl.stages.shards)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.shards import Params, run

run(Params.from_rule(snakemake.params), snakemake.input, snakemake.output)
