"""Target-train logits of one model -> infer/{model}.h5 (or one shard of it: infer/{model}.shard{i}of{K}.h5)."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import torch

from esl import datasets
from esl.device import resolve_device
from esl.h5io import provenance
from esl.infer import infer_logits
from esl.model import load_checkpoint
from esl.shards import shard_slice

torch.set_num_threads(snakemake.threads)
p = snakemake.params
tgt = p.target
model, _ = load_checkpoint(snakemake.input.model, num_classes=tgt["num_classes"])
samples = datasets.read_index(snakemake.input.index)
if p.get("shard"):
    i, k = p.shard
    try:
        part = shard_slice(len(samples), i, k, p.batch_size)
    except ValueError as e:
        raise ValueError(f"config infer.shards={k}: {e}") from None
    print(f"shard {i} of {k}: images {part.start}..{part.stop - 1} of {len(samples)}")
    samples = samples[part]
infer_logits(
    model,
    samples,
    layout=tgt["layout"],
    size=tgt["size"],
    mean_bgr=tgt["mean_bgr"],
    out_h5=snakemake.output[0],
    prov=provenance(dict(p.items()), snakemake.input),
    batch_size=p.batch_size,
    device=resolve_device(),
    amp=p.get("amp") or False,
    num_workers=int(p.get("num_workers") or 0),
)
