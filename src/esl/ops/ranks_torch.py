"""The histograms of `esl.ops.ranks.StreamingRank` as torch tensors on a device, counted with `torch.bincount`.

Same bins as the NumPy path (class · 65536 + high or low 16 bits of the float32 pattern), so both give identical
histograms; pass 2 sends unselected values to one extra bin that is dropped, so no shape depends on the data.
"""

from __future__ import annotations

import numpy as np
import torch

from esl.ops.ranks import _INF_BITS, BITS, BUCKETS, _raise_bad_values


class TorchCounts:
    """Pass-1 (`add`) and pass-2 (`add_second` inside the planned buckets) histograms on `device`.

    Signed int32 views of the float32 bits: finite values >= 0 are 0 <= raw < 0x7F800000, −0.0 is −2**31."""

    def __init__(self, num_classes: int, device):
        self.device = torch.device(device)
        self.num_classes = num_classes
        size = (num_classes, BUCKETS)
        self._hi = torch.zeros(size, dtype=torch.int64, device=self.device)
        self._lo = torch.zeros(size, dtype=torch.int64, device=self.device)
        self._bucket = None

    def _prepare(self, values, classes):
        v = torch.as_tensor(values).to(self.device, non_blocking=True)
        c = torch.as_tensor(classes).to(self.device, non_blocking=True)
        if v.numel() != c.numel():
            raise ValueError(f"{v.numel()} values for {c.numel()} class ids")
        if c.is_floating_point() or c.is_complex() or c.dtype == torch.bool:
            raise ValueError(f"class ids must be integers, got {c.dtype}")
        if v.numel() == 0:
            return None, None
        raw = v.to(torch.float32).contiguous().view(torch.int32).reshape(-1)
        c = c.reshape(-1).to(torch.int64)
        bad = ((raw >= _INF_BITS) | ((raw < 0) & (raw != -(2**31)))).any()
        lo, hi, bad = torch.stack([c.min(), c.max(), bad.to(torch.int64)]).tolist()  # one synchronisation
        if bad:
            _raise_bad_values(v.float().cpu().numpy().ravel())
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(f"class ids must be in [0, {self.num_classes}), got range [{lo}, {hi}]")
        return raw & 0x7FFFFFFF, c

    def add(self, values, classes) -> int:
        bits, c = self._prepare(values, classes)
        if bits is None:
            return 0
        index = c * BUCKETS + (bits >> BITS)
        self._hi += torch.bincount(index, minlength=self.num_classes * BUCKETS).view(self.num_classes, BUCKETS)
        return bits.numel()

    def plan(self, bucket: np.ndarray) -> None:
        self._bucket = torch.as_tensor(bucket, dtype=torch.int64).to(self.device)
        self._lo.zero_()

    def add_second(self, values, classes) -> int:
        bits, c = self._prepare(values, classes)
        if bits is None:
            return 0
        trash = self.num_classes * BUCKETS  # unselected values go to one extra bin, dropped: no data-dependent shapes
        sel = (bits >> BITS) == self._bucket[c]
        index = torch.where(sel, c * BUCKETS + (bits & (BUCKETS - 1)), trash)
        self._lo += torch.bincount(index, minlength=trash + 1)[:trash].view(self.num_classes, BUCKETS)
        return bits.numel()

    def set_hi(self, hist: np.ndarray) -> None:
        self._hi.copy_(torch.from_numpy(np.ascontiguousarray(hist, dtype=np.int64)))

    def hi(self) -> np.ndarray:
        return self._hi.cpu().numpy()

    def lo(self) -> np.ndarray:
        return self._lo.cpu().numpy()
