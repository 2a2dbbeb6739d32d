"""Rule `plot_examples`: a few target-train images with the pretrained model's prediction, each method's round-1
pseudo-labels and the ground truth side by side -> plots/examples.png (esl.stages.plot_maps)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.plot_maps import ExamplesPlotParams, run_plot_examples

run_plot_examples(ExamplesPlotParams.from_rule(snakemake.params), snakemake.input, snakemake.output)
