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


class Adapter:
    """Extra target-side training terms (MinEnt, AdvEnt) plugged into `train`.

    `target_loss` is added to the target loss before its backward pass; `update` runs after the segmentation
    network's optimiser step with detached outputs of both domains (e.g. to train discriminators)."""

    def target_loss(self, aux_t, main_t, it: int) -> torch.Tensor | float:
        return 0.0

    def update(self, src_outputs, tgt_outputs, it: int) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def train(
    model,
    source,
    target,
    cfg: TrainConfig,
    device,
    log=None,
    start_iter: int = 0,
    optimizer=None,
    adapter: Adapter | None = None,
) -> dict:
    """Train `model` in place for iterations start_iter..cfg.iters−1; returns mean losses.

    source, target: datasets yielding (image, label, index). target may be None (source-only pretraining); a target
    whose labels are empty tensors (images only) contributes only the adapter's terms.
    """
    model.to(device).train()
    if optimizer is None:
        optimizer = make_optimizer(model, cfg)
    horizon = cfg.poly_iters or cfg.iters
    src_sched = BatchSchedule(len(source), cfg.batch_size, cfg.seed, start_iter, cfg.iters)
    src_batches = iter(_loader(source, src_sched, cfg.num_workers))
    tgt_batches = None
    if target is not None:
        # An unrelated seed offset: the target order must not mirror the source order.
        tgt_sched = BatchSchedule(len(target), cfg.batch_size, cfg.seed + 10_000_019, start_iter, cfg.iters)
        tgt_batches = iter(_loader(target, tgt_sched, cfg.num_workers))
    progress = Progress("train", cfg.iters - start_iter, unit="it", stream=log)
    running: dict[str, float] = {}
    seen = 0
    for it in range(start_iter, cfg.iters):
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(group["initial_lr"], it, horizon, cfg.power)
        optimizer.zero_grad(set_to_none=True)
        images, labels, _ = next(src_batches)
        aux, main = model(images.to(device, non_blocking=True))
        loss_s = seg_loss(aux, main, labels.to(device, non_blocking=True), cfg.aux_weight)
        loss_s.backward()  # before the target pass, so only one domain's graph is alive at a time
        terms = {"src": loss_s.item()}
        if tgt_batches is not None:
            images_t, labels_t, _ = next(tgt_batches)
            aux_t, main_t = model(images_t.to(device, non_blocking=True))
            loss_t = torch.zeros((), device=device)
            if labels_t.numel():
                ce_t = seg_loss(aux_t, main_t, labels_t.to(device, non_blocking=True), cfg.aux_weight)
                loss_t = loss_t + cfg.target_weight * ce_t
                terms["tgt"] = ce_t.item()
            if adapter is not None:
                extra = adapter.target_loss(aux_t, main_t, it)
                loss_t = loss_t + extra
                terms["adapt"] = float(extra.detach()) if torch.is_tensor(extra) else float(extra)
            if loss_t.requires_grad:
                loss_t.backward()
        optimizer.step()
        if adapter is not None and tgt_batches is not None:
            detach = lambda out: tuple(None if o is None else o.detach() for o in out)  # noqa: E731
            terms.update(adapter.update(detach((aux, main)), detach((aux_t, main_t)), it))
        for k, v in terms.items():
            running[k] = running.get(k, 0.0) + v
        seen += 1
        progress.update(1, extra="".join(f" loss_{k} {v / seen:.4f}" for k, v in running.items()))
    progress.done()
    return {k: v / max(seen, 1) for k, v in running.items()}


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        model.param_groups(cfg.lr, cfg.lr_classifier_mult),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )
