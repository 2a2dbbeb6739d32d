"""Source pretraining (or adoption of a given checkpoint) -> model.pt; resumable, one or more GPUs
(esl.stages.train)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from esl.io.provenance import provenance
from esl.stages.train import launch
from esl.stages.train_job import TrainJob

p = snakemake.params
job = TrainJob.from_rule(
    "pretrain",
    p,
    snakemake.input,
    snakemake.output.model,
    provenance=provenance(dict(p.items()), snakemake.input),
    threads=snakemake.threads,
    metrics=snakemake.output.metrics,
)
sys.exit(launch(job))
