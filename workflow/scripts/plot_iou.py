"""Rule `plot_iou`: target-val mIoU per model and IoU per class grouped by model, from eval/{model}.csv ->
plots/miou.png, plots/class_iou.png (esl.stages.plots)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.plots import IouPlotParams, run_plot_iou

run_plot_iou(IouPlotParams.from_rule(snakemake.params), snakemake.input, snakemake.output)
