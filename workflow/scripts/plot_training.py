"""Rule `plot_training`: the training curves of every model (loss terms, learning rate, images/s against iteration,
from each training job's metrics.csv) -> plots/training.png (esl.stages.plots)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.plots import TrainingPlotParams, run_plot_training

run_plot_training(TrainingPlotParams.from_rule(snakemake.params), snakemake.input, snakemake.output)
