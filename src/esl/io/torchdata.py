"""Torch datasets over dataset samples: images with ground-truth labels, or with pseudo-labels read from HDF5."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from esl.io.h5 import open_h5, read_names, require_datasets
from esl.io.images import read_image, read_label


def to_tensor(image_bgr: np.ndarray, mean_bgr) -> torch.Tensor:
    """Caffe-style input: BGR float, mean subtracted, no std (what ADVENT's weights expect)."""
    x = image_bgr.astype(np.float32) - np.asarray(mean_bgr, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def device_mean(mean_bgr, device) -> torch.Tensor:
    """The mean as a float32 tensor on `device`, made once for `normalize`."""
    return torch.as_tensor(mean_bgr, dtype=torch.float32).to(device)


def normalize(images: torch.Tensor, mean_bgr, channels_last: bool = False) -> torch.Tensor:
    """A batch of uint8 (N, H, W, 3) BGR images (`SegmentationSet(..., raw=True)`) as `to_tensor` makes them:
    float32 (N, 3, H, W), mean subtracted; bit-identical, on whatever device `images` is on.

    Inference moves the uint8 batch to the GPU and converts it there: 4x fewer bytes through the workers' shared
    memory, pinning and the host-to-device copy. The (N, H, W, 3) batch permuted to (N, 3, H, W) already has the
    channels_last layout, so channels_last costs no copy; otherwise the result is made contiguous. Pass `mean_bgr`
    as a float32 tensor on the device (`device_mean`) in a loop: a list is copied to the GPU on every call, and that
    blocking copy waits for the work already queued."""
    mean = torch.as_tensor(mean_bgr, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    x = images.permute(0, 3, 1, 2).float() - mean
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class SegmentationSet(Dataset):
    """Items are (image CHW float32, label HW int64 or None-as-empty, index); with `raw=True` the image is the uint8
    HW×3 BGR array instead, for `normalize` on the device.

    labels: "gt" reads each sample's label file through its layout; "none" returns images only; a path to a pseudo-label
    HDF5 file reads `label` by sample name from that file (resized with nearest to `size` when it differs).
    Labels for training are read at `size`; for evaluation set `label_size=None` to keep each label at its own size.
    """

    def __init__(
        self, samples, layout: str, size, mean_bgr, num_classes: int, labels="gt", label_size="input", raw=False
    ):
        self.samples, self.layout, self.mean_bgr, self.num_classes = list(samples), layout, mean_bgr, num_classes
        self.raw = raw
        self.size = tuple(size) if size is not None else None
        self.labels = labels
        self.label_size = self.size if label_size == "input" else label_size
        self._h5 = None
        self._rows = None
        if labels not in ("gt", "none"):
            with open_h5(labels) as f:
                require_datasets(f, labels, "label", "names")
                names = read_names(f)
            rows = {n: i for i, n in enumerate(names)}
            missing = [s.name for s in self.samples if s.name not in rows]
            if missing:
                raise ValueError(f"{labels}: no pseudo-label for {len(missing)} images, e.g. {missing[0]!r}")
            self._rows = [rows[s.name] for s in self.samples]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        s = self.samples[i]
        image = read_image(s.image, self.size)
        image = torch.from_numpy(image) if self.raw else to_tensor(image, self.mean_bgr)
        if self.labels == "none":
            label = torch.empty(0, dtype=torch.int64)
        elif self.labels == "gt":
            label = read_label(self.layout, s.label, self.label_size, num_classes=self.num_classes)
            label = torch.from_numpy(label.astype(np.int64))
        else:
            if self._h5 is None:  # opened lazily so every DataLoader worker has its own handle
                self._h5 = h5py.File(self.labels, "r")
            label = self._h5["label"][self._rows[i]]
            if self.label_size is not None and label.shape != tuple(self.label_size):
                h, w = self.label_size
                label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
            label = torch.from_numpy(label.astype(np.int64))
        return image, label, i


def collate_keep_labels(batch):
    """Stack images; keep labels as a list (evaluation labels may differ in size)."""
    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch], [b[2] for b in batch]


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


def loader(dataset, schedule: BatchSchedule, num_workers: int) -> DataLoader:
    """Batches of `dataset` in the order of `schedule`, decoded by `num_workers` processes (0: here)."""
    return DataLoader(
        dataset,
        batch_sampler=schedule,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if num_workers else None,  # batches decoded ahead per worker
        persistent_workers=False,
    )
