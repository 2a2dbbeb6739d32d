"""Every snapshot of one model and its final checkpoint: target-val mIoU and target-train mean entropy ->
eval/{model}_snapshots.csv (rows cached per snapshot in eval/{model}_snapshots/)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

import torch

from esl import datasets
from esl.device import resolve_device
from esl.h5io import provenance, write_csv
from esl.snapshots import evaluate_candidates, samples_digest, snapshot_evaluator

torch.set_num_threads(snakemake.threads)
p = snakemake.params
out = Path(snakemake.output[0])
val, train = datasets.read_index(snakemake.input.val), datasets.read_index(snakemake.input.train)
evaluate = snapshot_evaluator(
    val,
    train,
    target=p.target,
    batch_size=p.batch_size,
    num_workers=p.num_workers,
    device=resolve_device(),
    log=sys.stdout,
)
table = evaluate_candidates(
    list(zip(p.iterations, snakemake.input.candidates)),
    evaluate,
    cache_dir=out.with_suffix(""),  # eval/{model}_snapshots/iter_{i:06d}.csv
    # what a cached row depends on besides its checkpoint (num_workers changes no number)
    params={"target": p.target, "batch_size": p.batch_size, "val": samples_digest(val), "train": samples_digest(train)},
    log=sys.stdout,
)
write_csv(table, out, provenance(dict(p.items()), snakemake.input))
print(table[["iteration", "mIoU", "target_entropy"]].to_string(index=False))
