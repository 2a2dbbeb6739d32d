"""Rule `entropy`: softmax/upsampling/argmax/max-prob/entropy maps of an infer file, plus a few pictures."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import torch

from esl.datasets import read_index
from esl.entropy import entropy_maps_h5
from esl.h5io import provenance

torch.set_num_threads(snakemake.threads)

images = {s.name: s.image for s in read_index(snakemake.input.index)}
size = snakemake.params.size
size = None if size is None else (int(size[0]), int(size[1]))
device = "cuda" if torch.cuda.is_available() else "cpu"
print(f"device {device}, size {size}, {len(images)} images in the index", flush=True)

entropy_maps_h5(
    snakemake.input.logits,
    snakemake.output.h5,
    size=size,
    batch_size=int(snakemake.params.batch_size),
    device=device,
    prov=provenance(config=dict(snakemake.params.items()), inputs=list(snakemake.input)),
    pictures=int(snakemake.params.pictures),
    pictures_dir=snakemake.output.pictures,
    images=images,
)
