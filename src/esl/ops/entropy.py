"""Per-pixel argmax, max-probability and normalised entropy of a batch of logits (torch, any device).

Used by the entropy stage (`esl.stages.entropy`) and by the label-free snapshot criterion of evaluation: softmax in
float32 at the network's native resolution, probabilities (not logits) upsampled bilinearly with
``align_corners=True``, then ``label = argmax p`` (first maximum on ties), ``max_prob = max p`` and
``entropy = -sum p ln p / ln C`` with ``0 ln 0 = 0``, in [0, 1], never NaN, never -0.0.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_CLASSES = 255  # labels are uint8 and 255 means "ignore"


def entropy_map(
    logits: torch.Tensor, size: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel argmax label (uint8), max probability (float32) and normalised entropy (float32).

    `logits` is (B, C, h, w) of any float dtype on any device; `size` is the output (H, W) (None: keep (h, w)).
    The softmax is taken in float32 at native resolution, then the *probabilities* are upsampled bilinearly with
    ``align_corners=True``. Results are (B, H, W) tensors on the device of `logits`.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, C, h, w), got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    num_classes = logits.shape[1]
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"need 1..{MAX_CLASSES} classes for uint8 labels, got {num_classes}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("logits contain NaN or infinite values")

    prob = torch.softmax(logits.float(), dim=1)
    if size is not None and tuple(size) != tuple(prob.shape[-2:]):
        prob = F.interpolate(prob, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=True)
    # A convex combination of non-negative values is non-negative; the clamp only guards against surprises.
    prob = prob.clamp_(min=0.0)

    label = prob.argmax(dim=1)
    max_prob = prob.gather(1, label.unsqueeze(1)).squeeze(1)
    if num_classes == 1:
        entropy = torch.zeros_like(max_prob)
    else:
        # xlogy(0, 0) == 0, so classes whose probability underflowed to 0 contribute exactly nothing.
        entropy = torch.special.xlogy(prob, prob).sum(dim=1).neg_().div_(math.log(num_classes))
        entropy = entropy.clamp_(0.0, 1.0).add_(0.0)  # -0.0 + 0.0 == +0.0
    return label.to(torch.uint8), max_prob.contiguous(), entropy.contiguous()
