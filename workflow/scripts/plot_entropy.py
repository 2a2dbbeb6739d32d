"""Rule `plot_entropy`: per-class histograms of the normalised entropy of a model's target-train predictions, read off
the pass-1 histograms of entropy/{model}.h5 (no new pass), with the ESL thresholds made from them ->
plots/entropy_{model}.png (esl.stages.plot_maps)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.plot_maps import EntropyPlotParams, run_plot_entropy

run_plot_entropy(EntropyPlotParams.from_rule(snakemake.params), snakemake.input, snakemake.output)
