"""Rule `evaluate_snapshots`: every snapshot of one model and its final checkpoint, target-val mIoU and target-train
mean entropy -> eval/{model}_snapshots.csv (rows cached per snapshot in eval/{model}_snapshots/;
esl.stages.evaluate)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.stages.evaluate import EvaluateSnapshotsParams, run_evaluate_snapshots

params = EvaluateSnapshotsParams.from_rule(snakemake.params)
run_evaluate_snapshots(params, snakemake.input, snakemake.output, threads=snakemake.threads)
