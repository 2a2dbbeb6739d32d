"""TODO docstring."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from esl.io.labels import IGNORE

EPS = 1e-30  # inside the log, as ADVENT: 0 · log2(0 + eps) = 0


def self_information(prob: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) probabilities → the weighted self-information map −p·log2(p)/log2(C), same shape."""
    c = prob.shape[1]
    return -prob * torch.log2(prob + EPS) / math.log2(c)


def entropy_loss(prob: torch.Tensor) -> torch.Tensor:
    """Mean over images and pixels of the normalised entropy Σ_c −p_c·log2(p_c)/log2(C) (ADVENT's `entropy_loss`)."""
    n, _, h, w = prob.shape
    return self_information(prob).sum() / (n * h * w)


def bce(logits: torch.Tensor, label: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


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
