"""mIoU of a weighted ensemble (summed upsampled logits, as ADVENT's eval_UDA.py) on target val -> eval/{name}.csv."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import torch

from esl import datasets
from esl.device import resolve_device
from esl.evaluate import evaluate_ensemble, iou_table
from esl.h5io import provenance, write_csv
from esl.pretrained import load_pretrained

torch.set_num_threads(snakemake.threads)
p = snakemake.params
tgt = p.target
name = snakemake.wildcards.ensemble
members = []
for path, weight in zip(snakemake.input.models, p.ensemble["weights"]):
    # our model.pt or a raw ADVENT state dict (e.g. a released MinEnt model)
    model, _ = load_pretrained(path, tgt["num_classes"], p.model, key=f"config evaluate.ensembles ({name})")
    members.append((model, weight))
    print(f"{path}: weight {weight}")
conf = evaluate_ensemble(
    members,
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
