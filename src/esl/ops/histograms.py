"""Pass 1 of the exact thresholds, shared by the entropy stage (which counts and stores it) and the pseudo-label stage
(which reads it, or counts it itself from a file without it).

Per dataset of an entropy file (`entropy`, `max_prob`), pass 1 is `StreamingRank.hist_hi` of the values per predicted
class: (C, 65536) int64, the high 16 bits of each float32 value. Stored as HDF5 datasets `pass1_{dataset}` (int64,
one chunk per class, gzip) — an artifact contract (docs/ARCHITECTURE.md): names and dtype must not change.
A stored histogram for another class count is not used (the stage counts again); a malformed one is refused.

Bucket b of pass 1 holds the values whose bits are in [b << 16, (b + 1) << 16). Every k / 2^j with 2^j <= 128 has at
most 7 significant bits and so is a bucket boundary: a histogram over 2^j equal bins of [0, 1] is therefore read
exactly off pass 1 (each bucket lies in one bin), equal to `np.histogram` of the values themselves (`entropy_bins`,
the report's per-class entropy histograms, rule `plot_entropy`).
"""

from __future__ import annotations

import h5py
import numpy as np

from esl.ops.ranks import BITS, BUCKETS, StreamingRank

DATASETS = ("entropy", "max_prob")  # the entropy-file maps a threshold rule can rank


def dataset_name(key: str) -> str:
    """The HDF5 dataset holding pass 1 of map `key`: `pass1_entropy`, `pass1_max_prob`."""
    if key not in DATASETS:
        raise ValueError(f"no first pass for {key!r} (known: {', '.join(DATASETS)})")
    return f"pass1_{key}"


class FirstPass:
    """Pass-1 histograms of some maps (`keys`), each held by a `StreamingRank` that is then ready for pass 2.

    `device`: where a fresh count runs and where pass 2 will count (None = NumPy; a torch device such as "cuda" =
    `torch.bincount` there); the histograms are identical either way. `stored` says whether they were read from a
    file (so a pass-2 mismatch means a stale file rather than a bug).
    """

    def __init__(self, num_classes: int, device=None, keys=DATASETS):
        for key in keys:
            dataset_name(key)
        self.num_classes = int(num_classes)
        self.ranks = {key: StreamingRank(self.num_classes, device) for key in keys}
        self.stored = False

    def add(self, label, **maps) -> None:
        """Count a batch: `label` (B, H, W) predicted classes and each kept map by name, e.g. `entropy=...`
        (NumPy arrays, or tensors on the device)."""
        for key, rank in self.ranks.items():
            rank.add(maps[key], label)

    def counts(self, key: str) -> np.ndarray:
        """(C,) int64 pixels per predicted class (the same for every map of one file)."""
        return self.ranks[key].counts()

    def rank(self, key: str) -> StreamingRank:
        """The `StreamingRank` of map `key` with pass 1 done: `plan` it, feed pass 2 with `add_second`."""
        return self.ranks[key]

    def write(self, f: h5py.File) -> None:
        """Store every histogram as `pass1_{key}` ((C, 65536) int64, one chunk per class, gzip)."""
        for key, rank in self.ranks.items():
            hist = rank.hist_hi
            f.create_dataset(dataset_name(key), data=hist, chunks=(1, hist.shape[1]), compression="gzip")

    @classmethod
    def read(cls, f: h5py.File, path, num_classes: int, keys=DATASETS, device=None) -> FirstPass | None:
        """The stored histograms of `keys` in an open entropy file, or None when one is missing or counts another
        number of classes than `num_classes`; a malformed one raises ValueError naming `path` and the dataset."""
        stored = {key: f.get(dataset_name(key)) for key in keys}
        if any(d is None or d.ndim < 1 or d.shape[0] != num_classes for d in stored.values()):
            return None
        first = cls(num_classes, None, ())
        for key, dataset in stored.items():
            try:
                first.ranks[key] = StreamingRank.from_first_pass(dataset[()], device)
            except ValueError as e:
                raise ValueError(f"{path}: {dataset_name(key)}: {e}") from None
        first.stored = True
        return first


# ---- histograms of [0, 1] read off pass 1 ----------------------------------------------------------------------

BINS = 64  # equal bins of [0, 1]: exact from pass 1 for any power of two up to 128


ONE_BUCKET = int(np.float32(1.0).view(np.uint32)) >> BITS  # the bucket starting at 1.0, the entropy's maximum


def bucket_floors(count: int = ONE_BUCKET + 1) -> np.ndarray:
    """(count,) float64: the smallest float32 value of each of the first `count` pass-1 buckets (bits b << 16); the
    default covers [0, 1]."""
    bits = np.arange(count, dtype=np.uint32) << np.uint32(BITS)
    return bits.view(np.float32).astype(np.float64)


def entropy_bins(hist_hi: np.ndarray, bins: int = BINS) -> np.ndarray:
    """(C, bins) int64 pixel counts per predicted class over `bins` equal bins of [0, 1] (the last one closed, as
    `np.histogram`), from pass-1 histograms (C, 65536) of values in [0, 1]; exact for `bins` a power of two <= 128.
    A count outside [0, 1] (a bucket above 1.0's, or a negative/NaN pattern) is refused: not normalised entropy."""
    hist_hi = np.asarray(hist_hi, dtype=np.int64)
    if hist_hi.ndim != 2 or hist_hi.shape[1] != BUCKETS:
        raise ValueError(f"pass-1 histograms must be (C, {BUCKETS}), got {hist_hi.shape}")
    if bins < 1 or bins > 128 or bins & (bins - 1):
        raise ValueError(f"bins={bins} must be a power of two <= 128 (bin edges on bucket boundaries)")
    if hist_hi[:, ONE_BUCKET + 1 :].any():
        raise ValueError("pass-1 histograms count values outside [0, 1]: not normalised entropy")
    # bucket -> bin, non-decreasing (positive floats order like their bits); 1.0 goes into the last bin
    index = np.minimum(np.floor(bucket_floors() * bins).astype(np.int64), bins - 1)
    starts = np.searchsorted(index, np.arange(bins))  # every bin holds buckets: none is empty
    return np.add.reduceat(hist_hi[:, : ONE_BUCKET + 1], starts, axis=1)
