"""Source pretraining (or adoption of a given checkpoint) -> model.pt; resumable, one or more GPUs (esl.train_cli)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from esl.h5io import provenance
from esl.train_cli import launch

p = snakemake.params
resume_root = Path(snakemake.output.model).parents[1] / "resume"
spec = {
    "stage": "pretrain",
    "params": {k: getattr(p, k) for k in ("model", "train", "source", "target")},
    "input": {"source": snakemake.input.source, "target": snakemake.input.get("target") or None},
    "output": snakemake.output.model,
    # results/{experiment}/resume/pretrain/state.pt: not an output, so a failed or preempted job keeps it; not a param,
    # so the cache key (the rule's params) stays free of the experiment name.
    "resume": str(resume_root / "pretrain/state.pt"),
    "resume_root": str(resume_root),  # removed after success when empty
    "provenance": provenance(dict(p.items()), snakemake.input),
    "threads": snakemake.threads,
    "device": "auto",
}
sys.exit(launch(spec))
