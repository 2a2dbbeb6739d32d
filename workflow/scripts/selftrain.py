"""Self-training on source labels + target pseudo-labels -> model.pt."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import torch

from esl import datasets
from esl.adapt import adapter_params, build_adapter
from esl.data import SegmentationSet
from esl.device import resolve_device
from esl.h5io import provenance
from esl.model import initial_model, load_checkpoint, save_checkpoint
from esl.train import TrainConfig, train

torch.set_num_threads(snakemake.threads)
p = snakemake.params
src, tgt = p.source, p.target
num_classes = src["num_classes"]
model_kwargs = {k: v for k, v in p.model.items() if k != "init"}
cfg = TrainConfig.from_params(p.train)

if p.train["init"] == "pretrained":
    model, _ = load_checkpoint(snakemake.input.init, num_classes=num_classes)
else:  # like the reference: the same initialisation as pretraining
    model = initial_model(num_classes, p.model, cfg.seed)

source = SegmentationSet(
    datasets.read_index(snakemake.input.source), src["layout"], src["size"], src["mean_bgr"], num_classes
)
target = SegmentationSet(
    datasets.read_index(snakemake.input.target),
    tgt["layout"],
    tgt["size"],
    tgt["mean_bgr"],
    num_classes,
    labels=snakemake.input.pseudo_labels,
)
device = resolve_device()
print(f"self-training on {len(source)} source + {len(target)} target images, {cfg.iters} iterations, device {device}")
# The reference keeps AdvEnt's adversarial terms while self-training (config selftrain.adversarial).
adapter = None
if p.train.get("adversarial", False):
    adapter = build_adapter("advent", adapter_params(p.train, src["size"], tgt["size"]), num_classes, device)
print(f"adversarial (AdvEnt) terms: {'on' if adapter is not None else 'off'}")
stats = train(model, source, target, cfg, device, adapter=adapter)
print(f"final mean losses: {stats}")
save_checkpoint(snakemake.output[0], model.cpu(), model_kwargs, provenance(dict(p.items()), snakemake.input))
