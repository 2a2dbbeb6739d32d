"""Training of DeepLabv2: SGD with the poly schedule, CE(main) + aux_weight·CE(aux), ignore 255.

`train` covers both stages of the paper: source pretraining (no target) and ESL self-training (source labels plus
target pseudo-labels, each term CE(main) + aux_weight·CE(aux)).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler

from .classes import IGNORE
from .infer import autocast
from .optim import ReferenceSGD, reference_param_groups
from .progress import Progress
from .resume import Preempted, ResumeError, ResumeFile, rng_state, set_rng_state

BATCHNORM_MODES = ("train", "frozen", "sync")
PARAM_GROUPS = ("unique", "reference")  # esl.optim


@dataclass
class TrainConfig:
    iters: int
    batch_size: int
    lr: float
    lr_classifier_mult: float = 10.0
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # "unique": each tensor once; "reference": ADVENT's duplicated listing stepped as torch 0.4.1 did (`esl.optim`)
    param_groups: str = "unique"
    power: float = 0.9
    poly_iters: int | None = None  # the schedule's horizon; ADVENT decays over 250k iterations but stops at 120k
    aux_weight: float = 0.1
    target_weight: float = 1.0
    seed: int = 1234
    num_workers: int = 0
    # BatchNorm: "train" = statistics of each process's batch (ADVENT; affine frozen either way), "frozen" = running
    # statistics, never updated (eval-mode BN), "sync" = statistics of the global batch across processes.
    batchnorm: str = "train"
    # Speed (CUDA only; the CPU computes exactly as without them): bf16 autocast of the network's forward passes
    # ("bf16" or False), channels_last memory format (None = on CUDA), torch.compile of the network.
    amp: str | bool = False
    channels_last: bool | None = None
    compile: bool = False
    log_interval: float = 10.0  # seconds between progress lines
    snapshot_every: int = 0  # iterations between snapshots (`on_snapshot`); 0 = none

    @classmethod
    def from_params(cls, params: dict) -> TrainConfig:
        known = {k: params[k] for k in cls.__dataclass_fields__ if k in params and params[k] is not None}
        return cls(**known)


class BatchSchedule(Sampler):
    """Deterministic batches: batch i holds positions i·B .. i·B+B−1 of a stream of per-epoch permutations.

    Epoch e is `randperm(n)` seeded with `seed + e`, so batch i depends only on (n, B, seed, i): training can resume at
    any iteration with the same data order. With `world` processes, process `rank` takes positions rank, rank+world, …
    of each global batch of B, so the union over the processes is the single-process batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"batch size {batch_size} is not divisible by the number of processes {world}")
        self.n, self.batch_size, self.seed, self.start, self.stop = n, batch_size, seed, start, stop
        self.rank, self.world = rank, world
        self._perm_epoch, self._perm = None, None

    def _at(self, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.seed + epoch)
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g).tolist(), epoch
        return self._perm[offset]

    def batch(self, i: int) -> list[int]:
        return [self._at(i * self.batch_size + j) for j in range(self.rank, self.batch_size, self.world)]

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
        prefetch_factor=4 if num_workers else None,  # batches decoded ahead per worker
        persistent_workers=False,
    )


def _float(outputs):
    return tuple(None if o is None else o.float() for o in outputs)


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
    resume: ResumeFile | None = None,
    stop: Callable[[], bool] | None = None,
    on_snapshot: Callable[[int, nn.Module], None] | None = None,
) -> dict:
    """Train `model` in place for iterations start_iter..cfg.iters−1; returns mean losses.

    source, target: datasets yielding (image, label, index). target may be None (source-only pretraining); a target
    whose labels are empty tensors (images only) contributes only the adapter's terms.

    resume: where to keep the resumable state. An existing state is loaded first (training continues after its
    iteration); a new one is written every `resume.every` iterations and when `stop()` turns true, after which
    `Preempted` is raised. Resumed runs end with the same weights as uninterrupted ones.

    Distributed (torch.distributed initialised, one process per device): the model runs under
    DistributedDataParallel, each process takes its share of every global batch (`BatchSchedule`), the losses are
    normalised by the global count of labelled pixels, and the processes agree every iteration on whether to stop.

    on_snapshot(i, model): called by process 0 after iteration i when i is a multiple of `cfg.snapshot_every` below
    `cfg.iters` (the final model is the caller's), before the resumable state of that iteration is saved.
    """
    rank, world = _world()
    log = log if log is not None else sys.stderr
    device = torch.device(device)
    model.to(device)
    if cfg.batchnorm not in BATCHNORM_MODES:
        raise ValueError(f"batchnorm: {cfg.batchnorm!r} is not one of {', '.join(BATCHNORM_MODES)}")
    if cfg.amp not in (False, None, "bf16"):
        raise ValueError(f"amp: {cfg.amp!r} must be false or bf16")
    channels_last = device.type == "cuda" if cfg.channels_last is None else bool(cfg.channels_last)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.batchnorm == "sync" and world > 1:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the top module; same parameters and buffers
    set_train_mode(model, cfg.batchnorm)
    if optimizer is None:
        optimizer = make_optimizer(model, cfg)
    running: dict[str, float] = {}
    seen = 0
    if resume is not None:
        state = resume.load(map_location="cpu")  # load_state_dict puts each tensor where its counterpart is
        if state is not None:
            if len(state["rng"]) != world:
                raise ResumeError(
                    f"{resume.path}: saved by {len(state['rng'])} processes, now {world}; delete it to start over"
                )
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if adapter is not None:
                adapter.load_state_dict(state["adapter"])
            set_rng_state(state["rng"][rank])
            running, seen, start_iter = dict(state["running"]), int(state["seen"]), int(state["iteration"])
            if rank == 0:
                print(f"resuming from {resume.path} after iteration {start_iter}/{cfg.iters}", file=log, flush=True)
    net = model
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            net,
            device_ids=[device.index] if device.type == "cuda" else None,
            # without the aux loss the aux head gets no gradient from the segmentation loss
            find_unused_parameters=bool(getattr(net, "multi_level", False) and not cfg.aux_weight),
        )
    forward = torch.compile(model) if cfg.compile else model

    def run(images):
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, cfg.amp):
            return _float(forward(images))  # losses and adapters in float32

    horizon = cfg.poly_iters or cfg.iters
    src_sched = BatchSchedule(len(source), cfg.batch_size, cfg.seed, start_iter, cfg.iters, rank, world)
    src_batches = iter(_loader(source, src_sched, cfg.num_workers))
    tgt_batches = None
    if target is not None:
        # An unrelated seed offset: the target order must not mirror the source order.
        tgt_sched = BatchSchedule(
            len(target), cfg.batch_size, cfg.seed + 10_000_019, start_iter, cfg.iters, rank, world
        )
        tgt_batches = iter(_loader(target, tgt_sched, cfg.num_workers))
    progress = Progress(
        "train", cfg.iters - start_iter, unit="it", interval=cfg.log_interval, stream=log if rank == 0 else _NULL
    )
    for it in range(start_iter, cfg.iters):
        for group in optimizer.param_groups:
            group["lr"] = poly_lr(group["initial_lr"], it, horizon, cfg.power)
        optimizer.zero_grad(set_to_none=True)
        images, labels, _ = next(src_batches)
        images_t, labels_t, _ = next(tgt_batches) if tgt_batches is not None else (None, None, None)
        scale_s, scale_t = _loss_scales(labels, labels_t, world, device)
        aux, main = run(images)
        loss_s = seg_loss(aux, main, labels.to(device, non_blocking=True), cfg.aux_weight) * scale_s
        loss_s.backward()  # before the target pass, so only one domain's graph is alive at a time
        terms = {"src": loss_s.item()}
        if tgt_batches is not None:
            aux_t, main_t = run(images_t)
            loss_t = torch.zeros((), device=device)
            if labels_t.numel():
                ce_t = seg_loss(aux_t, main_t, labels_t.to(device, non_blocking=True), cfg.aux_weight) * scale_t
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
        want_stop = bool(stop is not None and stop())
        if world > 1:  # one small all-reduce: the processes stop together and log the global losses
            keys = sorted(terms)
            packed = torch.tensor([float(want_stop)] + [terms[k] for k in keys], dtype=torch.float64, device=device)
            dist.all_reduce(packed)
            want_stop = bool(packed[0].item() > 0)
            terms = dict(zip(keys, (packed[1:] / world).tolist()))
        for k, v in terms.items():
            running[k] = running.get(k, 0.0) + v
        seen += 1
        progress.update(1, extra="".join(f" loss_{k} {v / seen:.4f}" for k, v in running.items()))
        done = it + 1
        if done == cfg.iters:
            break
        if on_snapshot is not None and cfg.snapshot_every and done % cfg.snapshot_every == 0 and rank == 0:
            on_snapshot(done, net)
        if resume is not None and (want_stop or done % resume.every == 0):
            state = {"iteration": done, "running": running, "seen": seen}
            _save_state(resume, state, net, optimizer, adapter, rank, world)
        if want_stop:
            where = f"state saved to {resume.path}" if resume is not None else "no resumable state kept"
            raise Preempted(f"training stopped on request after iteration {done}/{cfg.iters}; {where}")
    progress.done()
    return {k: v / max(seen, 1) for k, v in running.items()}


def set_train_mode(model: nn.Module, batchnorm: str = "train") -> None:
    """model.train(), with BatchNorm layers in eval mode (running statistics, not updated) when `frozen`."""
    model.train()
    if batchnorm == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _loss_scales(labels, labels_t, world: int, device) -> tuple[float, float]:
    """Factors that turn each process's loss (mean over its own labelled pixels) into its share of the mean over the
    global batch's labelled pixels: DDP averages gradients over processes, so world·local/global. 1 when alone."""
    if world == 1:
        return 1.0, 1.0
    local = [float((lab != IGNORE).sum()) if lab is not None else 0.0 for lab in (labels, labels_t)]
    total = torch.tensor(local, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return tuple(world * n / max(t, 1.0) for n, t in zip(local, total.tolist()))


def _save_state(resume: ResumeFile, state: dict, net, optimizer, adapter, rank: int, world: int) -> None:
    """Every process hands its RNG states to process 0, which writes the file; the others wait for it."""
    rng = rng_state()
    states = [rng]
    if world > 1:
        states = [None] * world if rank == 0 else None
        dist.gather_object(rng, states, dst=0)
    if rank == 0:
        state = dict(state, model=net.state_dict(), optimizer=optimizer.state_dict(), rng=states)
        state["adapter"] = adapter.state_dict() if adapter is not None else {}
        resume.save(state)
    if world > 1:
        dist.barrier()


class _NullStream:
    def write(self, text):
        return len(text)

    def flush(self):
        pass


_NULL = _NullStream()


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD over `model.param_groups`; `reference`: ADVENT's duplicated backbone listing with torch 0.4.1's step."""
    if cfg.param_groups not in PARAM_GROUPS:
        raise ValueError(f"param_groups: {cfg.param_groups!r} is not one of {', '.join(PARAM_GROUPS)}")
    if cfg.param_groups == "reference":
        groups = reference_param_groups(model, cfg.lr, cfg.lr_classifier_mult)
        return ReferenceSGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.param_groups(cfg.lr, cfg.lr_classifier_mult),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )
