"""Where and how the network runs: the device, bf16 autocast and the channels_last memory format, one policy for
training, inference and evaluation.

* Device: `auto` is CUDA when visible, else the CPU; a process started by torchrun takes the GPU of its local rank.
* `amp`: false (float32) or "bf16" (autocast of the network's forward pass). CUDA only: the CPU always computes in
  float32, so a CPU run with `amp: bf16` is bit-identical to one without.
* channels_last: None = on CUDA only (faster convolutions there; no effect on results beyond float rounding).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

AMP_MODES = (False, None, "bf16")


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """`auto` → cuda:{local_rank} when CUDA is visible, else cpu; `cuda` → cuda:{local_rank}; anything else as is."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def check_amp(amp, key: str) -> None:
    """One-line refusal of an `amp` value, naming the config key (e.g. `infer.amp`)."""
    if amp not in AMP_MODES:
        raise ValueError(f"config {key}={amp!r} must be false or bf16")


def autocast(device: torch.device, amp):
    """bf16 autocast on CUDA when `amp == "bf16"`; a no-op otherwise (the CPU keeps float32)."""
    if amp == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def use_channels_last(device: torch.device, requested: bool | None) -> bool:
    """channels_last unless told otherwise on CUDA; contiguous (NCHW) on the CPU unless asked for."""
    return device.type == "cuda" if requested is None else bool(requested)


def place(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """Move `model` to `device`, in channels_last format when asked; returns it."""
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def to_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A batch on `device` in the model's memory format (non-blocking from pinned memory)."""
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images
