"""Rule `summary_seeds`: each seed's summary.csv aggregated per model (n, mean ± std, paired differences against
pretrain and the no-labels control) -> summary_seeds.csv (esl.stages.seeds)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.seeds import Params, run

run(Params.from_rule(snakemake.params), snakemake.input, snakemake.output)
