"""The training loop of DeepLabv2: SGD with the poly schedule, CE(main) + aux_weight·CE(aux), ignore 255.

`train` covers both stages of the paper: source pretraining (no target, or MinEnt/AdvEnt's terms on unlabelled target
images through an `Adapter`) and ESL self-training (source labels plus target pseudo-labels, each term
CE(main) + aux_weight·CE(aux)). Its arguments:

* source, target: datasets yielding (image, label, index). target may be None (source-only pretraining); a target
  whose labels are empty tensors (images only) contributes only the adapter's terms.
* resume: where to keep the resumable state. An existing state is loaded first (training continues after its
  iteration); a new one is written every `resume.every` iterations and when `stop()` turns true, after which
  `Preempted` is raised. Resumed runs end with the same weights as uninterrupted ones.
* on_snapshot(i, model): called by process 0 after iteration i when i is a multiple of `cfg.snapshot_every` below
  `cfg.iters` (the final model is the caller's), before the resumable state of that iteration is saved.

Distributed (torch.distributed initialised, one process per device): the model runs under DistributedDataParallel,
each process takes its share of every global batch (`esl.io.torchdata.BatchSchedule`), the losses are normalised by
the global count of labelled pixels, and the processes agree every iteration on whether to stop.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from esl.io.labels import IGNORE
from esl.io.torchdata import BatchSchedule, loader
from esl.models.adapters import Adapter
from esl.ops.losses import seg_loss
from esl.ops.optim import PARAM_GROUPS, make_optimizer, poly_lr
from esl.runtime.device import autocast, check_amp, place, to_input, use_channels_last
from esl.runtime.distributed import world as _world
from esl.runtime.progress import MetricsLog, Progress
from esl.runtime.resume import Preempted, ResumeError, ResumeFile, rng_state, set_rng_state

BATCHNORM_MODES = ("train", "frozen", "sync")


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
    section: str = "train"  # the config section these values come from, named in error messages

    def __post_init__(self):  # the one place these choices are checked (besides the schema)
        check_amp(self.amp, f"{self.section}.amp")
        if self.batchnorm not in BATCHNORM_MODES:
            modes = ", ".join(BATCHNORM_MODES)
            raise ValueError(f"config {self.section}.batchnorm={self.batchnorm!r} is not one of {modes}")
        if self.param_groups not in PARAM_GROUPS:
            modes = ", ".join(PARAM_GROUPS)
            raise ValueError(f"config {self.section}.param_groups: {self.param_groups!r} is not one of {modes}")

    @classmethod
    def from_params(cls, params: dict, section: str = "train") -> TrainConfig:
        """The settings of a config section (`pretrain`/`selftrain`); keys that are not settings are left out."""
        known = {k: params[k] for k in cls.__dataclass_fields__ if k in params and params[k] is not None}
        return cls(**{**known, "section": section})


def _float(outputs):
    return tuple(None if o is None else o.float() for o in outputs)


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
    metrics: MetricsLog | None = None,
) -> dict:
    """Train `model` in place for iterations start_iter..cfg.iters−1; returns mean losses (see the module docstring
    for `target`, `resume`, distributed runs and `on_snapshot`)."""
    rank, world = _world()
    log = log if log is not None else sys.stderr
    device = torch.device(device)
    channels_last = _prepare(model, cfg, device, world)
    optimizer = optimizer if optimizer is not None else make_optimizer(model, cfg)
    running, seen = {}, 0
    restored = _restore(resume, model, optimizer, adapter, metrics, rank, world) if resume is not None else None
    if restored is not None:
        running, seen, start_iter = restored
        if rank == 0:
            print(f"resuming from {resume.path} after iteration {start_iter}/{cfg.iters}", file=log, flush=True)
    net, forward = model, _forward(model, cfg, device, world)

    def run(images):
        with autocast(device, cfg.amp):
            return _float(forward(to_input(images, device, channels_last)))  # losses and adapters in float32

    src_batches, tgt_batches = _batches(source, target, cfg, start_iter, rank, world)
    stream = log if rank == 0 else _NULL
    progress = Progress("train", cfg.iters - start_iter, unit="it", interval=cfg.log_interval, stream=stream)
    for it in range(start_iter, cfg.iters):
        terms = _step(run, optimizer, adapter, cfg, it, src_batches, tgt_batches, world, device)
        want_stop, terms = _agree(bool(stop is not None and stop()), terms, world, device)
        for k, v in terms.items():
            running[k] = running.get(k, 0.0) + v
        seen += 1
        if metrics is not None:
            metrics.add(it + 1, optimizer.param_groups[0]["lr"], terms)
        progress.update(1, extra="".join(f" loss_{k} {v / seen:.4f}" for k, v in running.items()))
        done = it + 1
        if done == cfg.iters:
            break
        if on_snapshot is not None and cfg.snapshot_every and done % cfg.snapshot_every == 0 and rank == 0:
            on_snapshot(done, net)
        if resume is not None and (want_stop or done % resume.every == 0):
            state = {"iteration": done, "running": running, "seen": seen}
            if metrics is not None:
                state["metrics"] = metrics.state_dict()
            _save_state(resume, state, net, optimizer, adapter, rank, world)
        if want_stop:
            where = f"state saved to {resume.path}" if resume is not None else "no resumable state kept"
            raise Preempted(f"training stopped on request after iteration {done}/{cfg.iters}; {where}")
    progress.done()
    return {k: v / max(seen, 1) for k, v in running.items()}


def _prepare(model, cfg: TrainConfig, device, world: int) -> bool:
    """The model on its device and memory format, SyncBatchNorm when asked, in training mode; returns channels_last."""
    channels_last = use_channels_last(device, cfg.channels_last)
    place(model, device, channels_last)
    if cfg.batchnorm == "sync" and world > 1:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the top module; same parameters and buffers
    set_train_mode(model, cfg.batchnorm)
    return channels_last


def _restore(resume: ResumeFile, model, optimizer, adapter, metrics, rank: int, world: int):
    """(running losses, iterations seen, next iteration) from an existing resumable state, or None."""
    state = resume.load(map_location="cpu")  # load_state_dict puts each tensor where its counterpart is
    if state is None:
        return None
    if len(state["rng"]) != world:
        raise ResumeError(
            f"{resume.path}: saved by {len(state['rng'])} processes, now {world}; delete it to start over"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if adapter is not None:
        adapter.load_state_dict(state["adapter"])
    if metrics is not None and "metrics" in state:
        metrics.load_state_dict(state["metrics"])
    set_rng_state(state["rng"][rank])
    return dict(state["running"]), int(state["seen"]), int(state["iteration"])


def _forward(net, cfg: TrainConfig, device, world: int):
    """The network as the loop calls it: under DistributedDataParallel with several processes, compiled if asked."""
    model = net
    if world > 1:
        model = nn.parallel.DistributedDataParallel(
            net,
            device_ids=[device.index] if device.type == "cuda" else None,
            # without the aux loss the aux head gets no gradient from the segmentation loss
            find_unused_parameters=bool(getattr(net, "multi_level", False) and not cfg.aux_weight),
        )
    return torch.compile(model) if cfg.compile else model


def _batches(source, target, cfg: TrainConfig, start: int, rank: int, world: int):
    """Iterators over this process's source and target batches from iteration `start` (target: None if no target)."""
    src_sched = BatchSchedule(len(source), cfg.batch_size, cfg.seed, start, cfg.iters, rank, world)
    src_batches = iter(loader(source, src_sched, cfg.num_workers))
    if target is None:
        return src_batches, None
    # An unrelated seed offset: the target order must not mirror the source order.
    tgt_sched = BatchSchedule(len(target), cfg.batch_size, cfg.seed + 10_000_019, start, cfg.iters, rank, world)
    return src_batches, iter(loader(target, tgt_sched, cfg.num_workers))


def _step(run, optimizer, adapter, cfg: TrainConfig, it: int, src_batches, tgt_batches, world: int, device) -> dict:
    """One SGD iteration at the poly learning rate: source loss, then target loss (pseudo-labels and/or the adapter's
    terms), each backpropagated before the next forward pass; returns this process's loss terms."""
    for group in optimizer.param_groups:
        group["lr"] = poly_lr(group["initial_lr"], it, cfg.poly_iters or cfg.iters, cfg.power)
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
        terms.update(adapter.update(_detach((aux, main)), _detach((aux_t, main_t)), it))
    return terms


def _detach(outputs):
    return tuple(None if o is None else o.detach() for o in outputs)


def _agree(want_stop: bool, terms: dict, world: int, device) -> tuple[bool, dict]:
    """One small all-reduce when distributed: the processes stop together and log the global mean losses."""
    if world == 1:
        return want_stop, terms
    keys = sorted(terms)
    packed = torch.tensor([float(want_stop)] + [terms[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(packed)
    return bool(packed[0].item() > 0), dict(zip(keys, (packed[1:] / world).tolist()))


def set_train_mode(model: nn.Module, batchnorm: str = "train") -> None:
    """model.train(), with BatchNorm layers in eval mode (running statistics, not updated) when `frozen`."""
    model.train()
    if batchnorm == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


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
