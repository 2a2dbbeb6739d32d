"""Rule `plot_seeds`: each seed's target-val mIoU per model, with the mean ± std -> plots/seeds.png
(esl.stages.seeds)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.seeds import Params, run_plot

run_plot(Params.from_rule(snakemake.params), snakemake.input, snakemake.output)
