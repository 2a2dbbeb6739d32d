"""Rule `plot_pseudo_labels`: per-class thresholds per method, pseudo-label precision and coverage per class, from
the pseudo-label tables -> plots/thresholds.png, plots/pseudo_label_quality.png (esl.stages.plots)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.plots import PseudoLabelPlotParams, run_plot_pseudo_labels

run_plot_pseudo_labels(PseudoLabelPlotParams.from_rule(snakemake.params), snakemake.input, snakemake.output)
