"""Self-training on source labels + target pseudo-labels -> model.pt; resumable, on one GPU or several
(esl.train_cli)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from esl.h5io import provenance
from esl.train_cli import launch

p, inp, wc = snakemake.params, snakemake.input, snakemake.wildcards
resume_root = Path(snakemake.output.model).parents[2] / "resume"
spec = {
    "stage": "selftrain",
    "params": {k: getattr(p, k) for k in ("model", "train", "source", "target")},
    "input": {
        "source": inp.source,
        "target": inp.target,
        "pseudo_labels": inp.pseudo_labels,
        "init": inp.get("init") or None,
    },
    "output": snakemake.output.model,
    # results/{experiment}/resume/selftrain_{method}_r{k}/state.pt: not an output, so a failed job keeps it
    "resume": str(resume_root / f"selftrain_{wc.method}_r{wc.k}/state.pt"),
    "resume_root": str(resume_root),  # removed after success when empty
    "provenance": provenance(dict(p.items()), snakemake.input),
    "threads": snakemake.threads,
    "device": "auto",
}
sys.exit(launch(spec))
