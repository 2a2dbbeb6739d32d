"""Exact per-class rank selection over streamed float32 values, in memory independent of the data size.

Non-negative float32 values order like their uint32 bit patterns. Pass 1 histograms the high 16 bits of every value
per class; `plan` finds, for each class, the high-bits bucket holding the wanted rank and the rank inside it; pass 2
histograms the low 16 bits of only the values in that bucket; `result` reads the exact value off the second
histogram. Memory: two (C, 65536) int64 histograms, whatever the number of values.

Counting runs with NumPy here, or with `torch.bincount` on a device (`esl.ops.ranks_torch`, imported only when a
device is asked for); both give identical histograms. Which values a threshold rule ranks, and how the pass-1
histograms of an entropy file are stored, are `esl.ops.thresholds` and `esl.ops.histograms`.
"""

from __future__ import annotations

import sys

import numpy as np

BITS = 16
BUCKETS = 1 << BITS
_INF_BITS = 0x7F800000  # +inf; everything from here up is inf, NaN or negative
_NEG_ZERO_BITS = 0x80000000


def rank_index(n: int, q: float) -> int:
    """The ESL reference index into the ascending values of a class: ``int(np.round(q * n))``, clipped to n - 1.

    ``np.round`` rounds half to even, so q = 0.5 picks ``x[round_half_even(n / 2)]`` exactly as the reference code
    (for n = 1: x[0]; n = 2: x[1]; n = 3: x[2]; n = 5: x[2]). Returns -1 when n == 0.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    n = int(n)
    if n <= 0:
        return -1
    return min(int(np.round(q * n)), n - 1)


# Values are processed in blocks of this many so that the per-block temporaries stay in the CPU caches.
_BLOCK = 1 << 16

# Which uint16 half of a uint32 holds its high 16 bits.
_HI, _LO = (1, 0) if sys.byteorder == "little" else (0, 1)


def _bits_and_classes(values, classes, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated uint32 bit patterns (−0.0 mapped to +0.0) and integer class ids, both flat and without copies in the
    usual case (float32 values with no −0.0)."""
    values = np.ascontiguousarray(values, dtype=np.float32).ravel()
    classes = np.asarray(classes).ravel()
    if values.shape != classes.shape:
        raise ValueError(f"{values.size} values for {classes.size} class ids")
    if not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"class ids must be integers, got {classes.dtype}")
    if values.size == 0:
        return np.empty(0, np.uint32), np.empty(0, np.int64)
    bits = values.view(np.uint32)
    # Finite values >= 0 are exactly the patterns below +inf's; one reduction checks that in the usual case.
    top = int(bits.max())
    if top >= _INF_BITS:
        bits = bits & np.uint32(0x7FFFFFFF)  # −0.0 -> +0.0; negatives other than −0.0 have patterns above −0.0's
        if int(bits.max()) >= _INF_BITS or top > _NEG_ZERO_BITS:
            _raise_bad_values(values)
    if classes.dtype.kind == "u" and classes.dtype.itemsize == 8:
        classes = classes.astype(np.int64)  # uint64 * intp would promote to float64
    lo = 0 if classes.dtype.kind == "u" else int(classes.min())
    hi = int(classes.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"class ids must be in [0, {num_classes}), got range [{lo}, {hi}]")
    return bits, classes


def _halves(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strided uint16 views of the high and low 16 bits of uint32 `bits` (no copy)."""
    pairs = bits.view(np.uint16).reshape(-1, 2)
    return pairs[:, _HI], pairs[:, _LO]


def _raise_bad_values(values: np.ndarray):
    bad = ~(values >= 0)  # NaN and negatives (-0.0 >= 0 holds)
    bad |= np.isinf(values)
    v = values[bad]
    raise ValueError(
        f"values must be finite and >= 0: {int(np.isnan(v).sum())} NaN, {int(np.isinf(v).sum())} infinite, "
        f"{int((v < 0).sum())} negative"
    )


class StreamingRank:
    """Exact rank selection per class over float32 values >= 0, fed in chunks, in two passes.

    Usage: ``add`` every chunk (pass 1), ``plan(ranks)``, ``add_second`` the very same chunks (pass 2), ``result()``.
    NaN, infinite and negative values raise ValueError; −0.0 counts as +0.0. `hist_hi` and `hist_lo` are
    (num_classes, 65536) int64 whatever the amount of data.

    `device`: None counts with NumPy on the CPU; a torch device (``"cuda"``, ``"cpu"``) counts with
    ``torch.bincount`` there, chunks (NumPy arrays or tensors) being moved to it. Both give identical results.
    """

    def __init__(self, num_classes: int, device=None):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self._torch = None
        if device is not None:
            from esl.ops.ranks_torch import TorchCounts  # torch only when a device is asked for

            self._torch = TorchCounts(self.num_classes, device)
        self._hi = np.zeros((self.num_classes, BUCKETS), dtype=np.int64) if self._torch is None else None
        self._lo = np.zeros((self.num_classes, BUCKETS), dtype=np.int64) if self._torch is None else None
        self._first_total = 0
        self._second_total = 0
        self._bucket: np.ndarray | None = None  # (C,) chosen high-bits bucket, -1 for none
        self._inner: np.ndarray | None = None  # (C,) rank inside the bucket
        # the buckets as uint16 high halves, 0xFFFF for none: finite values >= 0 have high halves < 0x7F80, never that
        self._bucket16: np.ndarray | None = None

    @classmethod
    def from_first_pass(cls, hist_hi, device=None) -> StreamingRank:
        """A `StreamingRank` whose pass 1 is done: `hist_hi` (C, 65536) counted elsewhere (e.g. by the entropy stage).
        Pass 2 checks that it sees as many values, and as many in each chosen bucket."""
        hist_hi = np.asarray(hist_hi)
        if hist_hi.ndim != 2 or hist_hi.shape[1] != BUCKETS or not np.issubdtype(hist_hi.dtype, np.integer):
            raise ValueError(
                f"a first-pass histogram must be integer (C, {BUCKETS}), got {hist_hi.dtype} {hist_hi.shape}"
            )
        if (hist_hi < 0).any():
            raise ValueError("a first-pass histogram cannot hold negative counts")
        sr = cls(hist_hi.shape[0], device)
        if sr._torch is None:
            sr._hi[:] = hist_hi
        else:
            sr._torch.set_hi(hist_hi)
        sr._first_total = int(hist_hi.sum())
        return sr

    @property
    def hist_hi(self) -> np.ndarray:
        return self._hi if self._torch is None else self._torch.hi()

    @property
    def hist_lo(self) -> np.ndarray:
        return self._lo if self._torch is None else self._torch.lo()

    def add(self, values, classes) -> None:
        """Pass 1: count the high 16 bits of `values` per class."""
        if self._bucket is not None:
            raise RuntimeError("add() after plan(): pass 1 is over")
        if self._torch is not None:
            self._first_total += self._torch.add(values, classes)
            return
        bits, cls = _bits_and_classes(values, classes, self.num_classes)
        if not bits.size:
            return
        self._first_total += bits.size
        high, _ = _halves(bits)
        # only the buckets up to the chunk's largest one (values in [0, 1] use a quarter of them): less to add up
        width = int(high.max()) + 1
        index = np.empty(bits.size, np.intp)
        for s in range(0, bits.size, _BLOCK):  # index = class · width + high bits, built block by block in cache
            block = index[s : s + _BLOCK]
            np.multiply(cls[s : s + _BLOCK], np.intp(width), out=block)
            np.add(block, high[s : s + _BLOCK], out=block)
        self._hi[:, :width] += np.bincount(index, minlength=self.num_classes * width).reshape(-1, width)

    def counts(self) -> np.ndarray:
        """(C,) int64 number of values per class seen in pass 1."""
        return self.hist_hi.sum(axis=1)

    def plan(self, ranks) -> None:
        """Choose, per class, the bucket holding the 0-indexed ascending rank ``ranks[c]`` (-1: no rank wanted)."""
        ranks = np.asarray(ranks, dtype=np.int64).ravel()
        if ranks.shape != (self.num_classes,):
            raise ValueError(f"need {self.num_classes} ranks, got {ranks.size}")
        hist_hi = self.hist_hi
        counts = hist_hi.sum(axis=1)
        wrong = (ranks < -1) | (ranks >= counts)
        if wrong.any():
            c = int(np.flatnonzero(wrong)[0])
            raise ValueError(f"class {c}: rank {int(ranks[c])} outside [-1, {int(counts[c])})")
        bucket = np.full(self.num_classes, -1, dtype=np.int64)
        inner = np.zeros(self.num_classes, dtype=np.int64)
        for c in np.flatnonzero(ranks >= 0):
            cum = np.cumsum(hist_hi[c])
            b = int(np.searchsorted(cum, ranks[c], side="right"))  # first bucket with cumulative count > rank
            bucket[c] = b
            inner[c] = ranks[c] - (cum[b - 1] if b > 0 else 0)
        self._bucket, self._inner = bucket, inner
        self._bucket16 = np.where(bucket >= 0, bucket, 0xFFFF).astype(np.uint16)
        self._second_total = 0
        if self._torch is not None:
            self._torch.plan(bucket)
        else:
            self._lo[:] = 0

    def add_second(self, values, classes) -> None:
        """Pass 2: count the low 16 bits of the values that fall in their class's chosen bucket."""
        if self._bucket is None:
            raise RuntimeError("add_second() before plan()")
        if self._torch is not None:
            self._second_total += self._torch.add_second(values, classes)
            return
        bits, cls = _bits_and_classes(values, classes, self.num_classes)
        if not bits.size:
            return
        self._second_total += bits.size
        high, low = _halves(bits)
        wanted = np.empty(min(bits.size, _BLOCK), np.uint16)
        sel = np.empty(wanted.size, bool)
        picked = []
        for s in range(0, bits.size, _BLOCK):  # select, block by block, the values in their class's chosen bucket
            n = min(_BLOCK, bits.size - s)
            np.take(self._bucket16, cls[s : s + n], out=wanted[:n])
            np.equal(wanted[:n], high[s : s + n], out=sel[:n])
            if sel[:n].any():
                picked.append(np.flatnonzero(sel[:n]) + s)
        if not picked:
            return
        k = np.concatenate(picked)
        index = cls[k].astype(np.intp)
        index <<= BITS
        index |= low[k]
        flat = self._lo.reshape(-1)
        if index.size < flat.size // 16:  # few values in the chosen buckets: count them without a full histogram
            where, count = np.unique(index, return_counts=True)
            flat[where] += count
        else:
            flat += np.bincount(index, minlength=flat.size)

    def result(self) -> np.ndarray:
        """(C,) float32 exact values at the planned ranks; NaN where no rank was planned."""
        if self._bucket is None:
            raise RuntimeError("result() before plan()")
        if self._second_total != self._first_total:
            raise RuntimeError(
                f"pass 2 saw {self._second_total} values, pass 1 saw {self._first_total}: the passes differ"
            )
        hist_hi, hist_lo = self.hist_hi, self.hist_lo
        out = np.full(self.num_classes, np.nan, dtype=np.float32)
        for c in np.flatnonzero(self._bucket >= 0):
            b = int(self._bucket[c])
            if hist_lo[c].sum() != hist_hi[c, b]:
                raise RuntimeError(f"class {c}: pass 2 saw different values than pass 1")
            lo = int(np.searchsorted(np.cumsum(hist_lo[c]), self._inner[c], side="right"))
            out[c] = np.array([(b << BITS) | lo], dtype=np.uint32).view(np.float32)[0]
        return out
