"""Rule `infer`: target-train logits of one model -> infer/{model}.h5, or in a shard job (Snakemake's scatter-gather,
params.shard = [index, K]) its contiguous run of whole batches -> infer/{model}.{i}-of-{K}.h5 (esl.stages.infer)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.infer import Params, run

run(Params.from_rule(snakemake.params), snakemake.input, snakemake.output, threads=snakemake.threads)
