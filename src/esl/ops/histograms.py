"""Pass 1 of the exact thresholds, shared by the entropy stage (which counts and stores it) and the pseudo-label stage
(which reads it, or counts it itself from a file without it).

Per dataset of an entropy file (`entropy`, `max_prob`), pass 1 is `StreamingRank.hist_hi` of the values per predicted
class: (C, 65536) int64, the high 16 bits of each float32 value. Stored as HDF5 datasets `pass1_{dataset}` (int64,
one chunk per class, gzip) — an artifact contract (docs/ARCHITECTURE.md): names and dtype must not change.
A stored histogram for another class count is not used (the stage counts again); a malformed one is refused.
"""

from __future__ import annotations

import h5py
import numpy as np

from esl.ops.ranks import StreamingRank

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
