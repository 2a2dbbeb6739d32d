"""Source pretraining (or adoption of a given checkpoint) -> model.pt."""

import sys

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

import torch

from esl import datasets
from esl.adapt import adapter_params, build_adapter
from esl.data import SegmentationSet
from esl.device import resolve_device
from esl.h5io import provenance
from esl.model import initial_model, save_checkpoint
from esl.pretrained import load_pretrained
from esl.train import TrainConfig, train

torch.set_num_threads(snakemake.threads)
p = snakemake.params
src = p.source
num_classes = src["num_classes"]
model_kwargs = {k: v for k, v in p.model.items() if k != "init"}
prov = provenance(dict(p.items()), snakemake.input)

if p.train.get("checkpoint"):
    # our model.pt or a raw ADVENT state dict (e.g. the released gta2cityscapes_advent.pth)
    model, model_kwargs = load_pretrained(p.train["checkpoint"], num_classes, p.model)
    print(f"using the given checkpoint {p.train['checkpoint']} (config pretrain.checkpoint); no training")
else:
    cfg = TrainConfig.from_params(p.train)
    model = initial_model(num_classes, p.model, cfg.seed)
    source = SegmentationSet(
        datasets.read_index(snakemake.input.source), src["layout"], src["size"], src["mean_bgr"], num_classes
    )
    device = resolve_device()
    method, tgt, target = p.train["method"], p.target, None
    adapter = build_adapter(method, adapter_params(p.train, src["size"], tgt and tgt["size"]), num_classes, device)
    if adapter is not None:  # MinEnt/AdvEnt: target images without labels
        target = SegmentationSet(
            datasets.read_index(snakemake.input.target),
            tgt["layout"],
            tgt["size"],
            tgt["mean_bgr"],
            num_classes,
            labels="none",
        )
    print(f"pretraining ({method}) on {len(source)} source images, {cfg.iters} iterations, device {device}")
    stats = train(model, source, target, cfg, device, adapter=adapter)
    print(f"final mean losses: {stats}")
save_checkpoint(snakemake.output[0], model.cpu(), model_kwargs, prov)
