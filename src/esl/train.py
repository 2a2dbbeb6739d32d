"""Training of DeepLabv2: SGD with the poly schedule, CE(main) + aux_weight·CE(aux), ignore 255.

`train` covers both stages of the paper: source pretraining (no target) and ESL self-training (source labels plus
target pseudo-labels, each term CE(main) + aux_weight·CE(aux)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from .classes import IGNORE
from .progress import Progress


@dataclass
class TrainConfig:
    iters: int
    batch_size: int
    lr: float
    lr_classifier_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    power: float = 0.9
    poly_iters: int | None = None  # the schedule's horizon; ADVENT decays over 250k iterations but stops at 120k
    aux_weight: float = 0.1
    target_weight: float = 1.0
    seed: int = 1234
    num_workers: int = 0

    @classmethod
    def from_params(cls, params: dict) -> TrainConfig:
        known = {k: params[k] for k in cls.__dataclass_fields__ if k in params and params[k] is not None}
        return cls(**known)


class BatchSchedule(Sampler):
    """Deterministic batches: batch i holds positions i·B .. i·B+B−1 of a stream of per-epoch permutations.

    Epoch e is `randperm(n)` seeded with `seed + e`, so batch i depends only on (n, B, seed, i): training can resume at
    any iteration with the same data order.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int):
        self.n, self.batch_size, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self._perm_epoch, self._perm = None, None

    def _at(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g).tolist(), epoch
        return self._perm[offset]

    def batch(self, i: int) -> list[int]:
        return [self._at(i * self.batch_size + j) for j in range(self.batch_size)]

    def __iter__(self):
        for i in range(self.start, self.stop):
            yield self.batch(i)

    def __len__(self):
        return self.stop - self.start


def poly_lr(base: float, it: int, horizon: int, power: float) -> float:
    return base * (1.0 - it / horizon) ** power


def seg_loss(aux, main, label, aux_weight: float) -> torch.Tensor:
    """CE(main) + aux_weight·CE(aux) with logits upsampled (bilinear, align_corners=True) to the label size.

    A batch whose labels are all 255 contributes 0 (not NaN)."""
    size = label.shape[-2:]
    loss = _ce(main, label, size)
    if aux is not None and aux_weight:
        loss = loss + aux_weight * _ce(aux, label, size)
    return loss


def _ce(logits, label, size):
    up = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
    total = F.cross_entropy(up, label, ignore_index=IGNORE, reduction="sum")
    return total / (label != IGNORE).sum().clamp(min=1)


def _loader(dataset, schedule: BatchSchedule, num_workers: int):
    return DataLoader(
        dataset,
        batch_sampler=schedule,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


def train(model, source, target, cfg: TrainConfig, device, log=None, start_iter: int = 0, optimizer=None) -> dict:
    """Train `model` in place for iterations start_iter..cfg.iters−1; returns loss statistics.

    source, target: datasets yielding (image, label, index); target may be None (source-only pretraining).
    """
    model.to(device).train()
    if optimizer is None:
        optimizer = make_optimizer(model, cfg)
    horizon = cfg.poly_iters or cfg.iters
    src_batches = iter(
        _loader(source, BatchSchedule(len(source), cfg.batch_size, cfg.seed, start_iter, cfg.iters), cfg.num_workers)
    )
    tgt_batches = None
    if target is not None:
        sched = BatchSchedule(len(target), cfg.batch_size, cfg.seed + 10_000_019, start_iter, cfg.iters)
        tgt_batches = iter(_loader(target, sched, cfg.num_workers))
    progress = Progress("train", cfg.iters - start_iter, unit="it", stream=log)
    running = {"source": 0.0, "target": 0.0}
    seen = 0
    for it in range(start_iter, cfg.iters):
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(group["initial_lr"], it, horizon, cfg.power)
        images, labels, _ = next(src_batches)
        aux, main = model(images.to(device, non_blocking=True))
        loss_s = seg_loss(aux, main, labels.to(device, non_blocking=True), cfg.aux_weight)
        loss = loss_s
        if tgt_batches is not None:
            images_t, labels_t, _ = next(tgt_batches)
            aux_t, main_t = model(images_t.to(device, non_blocking=True))
            loss_t = seg_loss(aux_t, main_t, labels_t.to(device, non_blocking=True), cfg.aux_weight)
            loss = loss + cfg.target_weight * loss_t
            running["target"] += loss_t.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running["source"] += loss_s.item()
        seen += 1
        extra = f" loss_src {running['source'] / seen:.4f}"
        if tgt_batches is not None:
            extra += f" loss_tgt {running['target'] / seen:.4f}"
        progress.update(1, extra=extra)
    progress.done()
    return {k: v / max(seen, 1) for k, v in running.items()}


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        model.param_groups(cfg.lr, cfg.lr_classifier_mult),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )
