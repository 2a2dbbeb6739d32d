"""mIoU of one model on target val -> eval/{model}.csv."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import torch

from esl import datasets
from esl.device import resolve_device
from esl.evaluate import evaluate_model, iou_table
from esl.h5io import provenance, write_csv
from esl.model import load_checkpoint

torch.set_num_threads(snakemake.threads)
p = snakemake.params
tgt = p.target
model, _ = load_checkpoint(snakemake.input.model, num_classes=tgt["num_classes"])
conf = evaluate_model(
    model,
    datasets.read_index(snakemake.input.index),
    layout=tgt["layout"],
    size=tgt["size"],
    mean_bgr=tgt["mean_bgr"],
    num_classes=tgt["num_classes"],
    batch_size=p.batch_size,
    device=resolve_device(),
)
table = iou_table(conf)
write_csv(table, snakemake.output[0], provenance(dict(p.items()), snakemake.input))
print(table.to_string(index=False))
