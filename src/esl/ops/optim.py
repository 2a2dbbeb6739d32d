"""SGD as ADVENT's published models were trained with it: torch 0.4.1's step over ADVENT's duplicated parameter list.

ADVENT lists the backbone by walking `modules()` of conv1, bn1, layer1..4 and yielding each module's (recursive)
`parameters()`, so a tensor appears once per module that contains it: 3 entries for a conv in a Bottleneck, 4 for a
downsample conv, 1 for conv1. torch 0.4.1's SGD stepped every entry in turn, adding the weight decay in place to the
gradient (so it accumulates over a tensor's entries) and keeping one momentum buffer per tensor. Current torch does not
reproduce this (on CPU the decay is out of place and the first step makes a buffer per entry; on CUDA the foreach path
batches the duplicates), so `ReferenceSGD` holds each tensor once with its number of entries and replays the 0.4.1
semantics itself, the same on any device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # the training loop's settings; only names are needed here
    from esl.stages.train_loop import TrainConfig

BACKBONE = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")


def advent_backbone_entries(model: nn.Module) -> list[nn.Parameter]:
    """ADVENT's `get_1x_lr_params_no_scale`: for every module in (and below) each backbone part, pre-order, each
    trainable parameter it contains, recursively."""
    modules = [m for name in BACKBONE for m in getattr(model, name).modules()]
    return [p for m in modules for p in m.parameters() if p.requires_grad]


def count_entries(entries) -> tuple[list[nn.Parameter], list[int]]:
    """The distinct tensors of a parameter list, in order of first appearance, and how many entries each has."""
    counts: dict[nn.Parameter, int] = {}
    for p in entries:
        counts[p] = counts.get(p, 0) + 1  # tensors hash by identity
    return list(counts), list(counts.values())


def reference_param_groups(model, lr: float, classifier_mult: float = 10.0) -> list[dict]:
    """`model.param_groups`, the backbone with its multiplicities in ADVENT's list (the classifiers appear once each
    there, as here)."""
    groups = model.param_groups(lr, classifier_mult)
    params, multiplicity = count_entries(advent_backbone_entries(model))
    if {id(p) for p in params} != {id(p) for p in groups[0]["params"]}:
        raise ValueError("ADVENT's backbone parameter list does not hold exactly the model's backbone parameters")
    groups[0].update(params=params, multiplicity=multiplicity)
    return groups


class ReferenceSGD(torch.optim.Optimizer):
    """SGD with torch 0.4.1's semantics over a list in which the group's i-th tensor appears `multiplicity[i]` times.

    Each step, for each tensor p with a gradient g, m = its multiplicity times: d += weight_decay·p (d starts as g and
    keeps the decay added by the earlier entries); buf = d at the tensor's first entry ever, otherwise
    buf = momentum·buf + (1 − dampening)·d; p −= lr·buf (d itself without momentum). No Nesterov (0.4.1's differs).
    A group holds "params" (each tensor once) and "multiplicity" (default 1 each); p.grad is not modified.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"invalid SGD settings: lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay))

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        multiplicity = list(group.get("multiplicity", [1] * len(group["params"])))
        if len(multiplicity) != len(group["params"]) or not all(isinstance(m, int) and m >= 1 for m in multiplicity):
            raise ValueError("multiplicity: one integer >= 1 per parameter of the group")
        group["multiplicity"] = multiplicity

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, dampening, wd = (group[k] for k in ("lr", "momentum", "dampening", "weight_decay"))
            for p, m in zip(group["params"], group["multiplicity"]):
                if p.grad is None:
                    continue
                d = p.grad.clone() if wd else p.grad  # 0.4.1 decayed p.grad itself; a copy gives the same numbers
                state = self.state[p]
                for _ in range(m):
                    if wd:
                        d.add_(p, alpha=wd)
                    update = d
                    if momentum:
                        update = state.get("momentum_buffer")
                        if update is None:
                            update = state["momentum_buffer"] = d.clone()
                        else:
                            update.mul_(momentum).add_(d, alpha=1 - dampening)
                    p.add_(update, alpha=-lr)
        return loss


PARAM_GROUPS = ("unique", "reference")  # esl.optim


def poly_lr(base: float, it: int, horizon: int, power: float) -> float:
    return base * (1.0 - it / horizon) ** power


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD over `model.param_groups`; `reference`: ADVENT's duplicated backbone listing with torch 0.4.1's step
    (`cfg.param_groups` is checked by `TrainConfig`)."""
    if cfg.param_groups == "reference":
        groups = reference_param_groups(model, cfg.lr, cfg.lr_classifier_mult)
        return ReferenceSGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        model.param_groups(cfg.lr, cfg.lr_classifier_mult),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
    )
