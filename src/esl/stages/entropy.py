"""Entropy maps of an infer file (rule `entropy`): argmax / max-prob / normalised entropy per pixel, a few pictures.

The per-pixel quantities are `esl.ops.entropy.entropy_map`'s (the ESL reference): softmax in float32 at the network's
native output resolution, probabilities upsampled bilinearly (``align_corners=True``) to the pseudo-label size, then

* ``label = argmax_c p_c`` (first maximum on ties),
* ``max_prob = max_c p_c``,
* ``entropy = -sum_c p_c ln p_c / ln C`` with ``0 ln 0 = 0``, clamped to [0, 1], never NaN, never -0.0.

The same pass counts pass 1 of the pseudo-label stage's exact thresholds (`esl.ops.histograms.FirstPass`) from the
very values it writes, so that stage reads the maps once less. Batches are computed on the device (the GPU when
present) while a writer thread writes the previous ones, their pictures and (on the CPU) their histograms.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from esl.io.files import remove_stale_temporaries
from esl.io.h5 import create_h5, open_h5, read_names, require_datasets, write_names
from esl.io.labels import colorize
from esl.io.layouts import read_index
from esl.io.provenance import provenance
from esl.ops.entropy import entropy_map
from esl.ops.histograms import FirstPass
from esl.runtime.background import Background
from esl.runtime.progress import Progress
from esl.stages.params import StageParams, check_int, input_files, torch_device


@dataclasses.dataclass(frozen=True, kw_only=True)
class Params(StageParams):
    """Rule `entropy`'s params: the maps' size [height, width] (None: the logits' own), how many pictures to draw,
    and the batch size (`infer.batch_size`)."""

    rule = "entropy"
    size: list | tuple | None
    pictures: int
    batch_size: int

    def check(self) -> None:
        size = self.size
        if size is not None and (
            not isinstance(size, (list, tuple))
            or len(size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size)
        ):
            raise ValueError(f"config entropy.size={size!r} must be null or [height, width], positive integers")
        check_int(self.pictures, "entropy.pictures")
        check_int(self.batch_size, "infer.batch_size", low=1)

    @property
    def out_size(self) -> tuple[int, int] | None:
        return None if self.size is None else (int(self.size[0]), int(self.size[1]))


def run(params: Params, inputs, outputs, log=None, *, threads=None, device=None) -> None:
    """Entropy maps of `inputs["logits"]` into `outputs["h5"]`, pictures into `outputs["pictures"]` (image panels
    from `inputs["index"]` when given)."""
    out = sys.stdout if log is None else log
    device = torch_device(threads, device)
    index = inputs.get("index")
    images = {s.name: s.image for s in read_index(index)} if index else {}
    print(f"device {device}, size {params.out_size}, {len(images)} images in the index", file=out, flush=True)
    entropy_maps_h5(
        inputs["logits"],
        outputs["h5"],
        size=params.out_size,
        batch_size=params.batch_size,
        device=device,
        prov=provenance(config=params.as_dict(), inputs=input_files(inputs)),
        pictures=params.pictures,
        pictures_dir=outputs.get("pictures"),
        images=images,
        log=log,
    )


def entropy_maps_h5(
    infer_h5,
    out_h5,
    *,
    size: tuple[int, int] | None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    prov: dict,
    pictures: int = 0,
    pictures_dir=None,
    images: dict | None = None,
    log=None,
) -> None:
    """Stream the `logits` of an infer file through `entropy_map` and write an entropy file.

    Output datasets (ARCHITECTURE.md): `label` uint8, `entropy` float32, `max_prob` float32, all (N, H, W) with one
    chunk per image, and `names`; attribute `provenance` (= `prov`) and `num_classes`. The file is written under a
    temporary name and renamed when complete. Also `pass1_entropy` and `pass1_max_prob` (`FirstPass`), counted on
    `device` from the very values written.

    If `pictures_dir` is given it is (re)created atomically, holding PNGs for the first `pictures` images:
    image (read from ``images[name]``, left out when unknown) | prediction | entropy (viridis).
    """
    infer_h5 = Path(infer_h5)
    with open_h5(infer_h5) as fin:
        logits, names = _read_logits(fin, infer_h5)
        n, num_classes, h, w = logits.shape
        out_size = (h, w) if size is None else (int(size[0]), int(size[1]))
        with _Pictures(pictures_dir, pictures, names, images) as drawer:
            with create_h5(out_h5, prov) as fout:
                fout.attrs["num_classes"] = num_classes
                cuda = torch.device(device).type == "cuda"
                # histograms on the GPU with torch.bincount; NumPy's bincount is the faster one on the CPU
                first = FirstPass(num_classes, device if cuda else None)
                write = _MapWriter(fout, names, out_size, None if cuda else first, drawer)
                progress = Progress("entropy", n, unit="images", stream=log)
                writer = Background("entropy-writer")
                try:
                    for start, stop, maps in _entropy_batches(logits, infer_h5, out_size, batch_size, device):
                        if cuda:
                            first.add(maps[0], max_prob=maps[1], entropy=maps[2])
                        writer.submit(write, start, stop, *(m.cpu().numpy() for m in maps))
                        progress.update(stop - start)
                finally:
                    writer.close()
                progress.done()
                first.write(fout)
                drawer.publish()


def _read_logits(f, path):
    """The `logits` dataset (N, C, h, w) of an open infer file and its N names."""
    require_datasets(f, path, "logits", "names")
    logits = f["logits"]
    if logits.ndim != 4:
        raise ValueError(f"{path}: 'logits' must be (N, C, h, w), got shape {logits.shape}")
    names = read_names(f)
    if len(names) != logits.shape[0]:
        raise ValueError(f"{path}: {len(names)} names for {logits.shape[0]} logit maps")
    return logits, names


def _entropy_batches(logits, path, size, batch_size: int, device):
    """(start, stop, (label, max_prob, entropy) tensors on `device`) per batch of `batch_size` images."""
    n, batch_size = logits.shape[0], max(1, int(batch_size))
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x = torch.from_numpy(logits[start:stop]).to(device)
        try:
            maps = entropy_map(x, size)
        except ValueError as e:
            raise ValueError(f"{path}: images {start}..{stop - 1}: {e}") from None
        yield start, stop, maps


class _MapWriter:
    """Creates the maps' datasets and, called in the writer thread in batch order, writes a batch of NumPy maps, its
    pictures and (`first`, on the CPU) its pass-1 histograms."""

    def __init__(self, f, names, size, first: FirstPass | None, drawer):
        shape, chunks = (len(names), *size), (1, *size)
        self.label = f.create_dataset("label", shape=shape, dtype=np.uint8, chunks=chunks)
        self.entropy = f.create_dataset("entropy", shape=shape, dtype=np.float32, chunks=chunks)
        self.max_prob = f.create_dataset("max_prob", shape=shape, dtype=np.float32, chunks=chunks)
        write_names(f, names)
        self.first, self.drawer = first, drawer

    def __call__(self, start, stop, label, max_prob, entropy):
        if self.first is not None:
            self.first.add(label, max_prob=max_prob, entropy=entropy)
        self.label[start:stop] = label
        self.max_prob[start:stop] = max_prob
        self.entropy[start:stop] = entropy
        self.drawer.draw(start, label, entropy)


class _Pictures:
    """The pictures folder: made under a temporary name (a context), drawn into batch by batch, put in place by
    `publish`. Without a folder nothing is drawn."""

    def __init__(self, folder, count: int, names: list[str], images: dict | None):
        self.folder = None if folder is None else Path(folder)
        self.count = 0 if folder is None else min(max(0, int(count)), len(names))
        self.names, self.images = names, images or {}
        self.tmp: Path | None = None

    def __enter__(self) -> _Pictures:
        if self.folder is not None:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = self.folder.with_name(f"{self.folder.name}.tmp-{os.getpid()}")
            remove_stale_temporaries(self.folder)  # ours (same pid, an earlier attempt) and killed jobs'
            self.tmp.mkdir()
        return self

    def __exit__(self, *exc) -> None:
        if self.tmp is not None and self.tmp.exists():
            shutil.rmtree(self.tmp)

    def draw(self, start: int, label: np.ndarray, entropy: np.ndarray) -> None:
        """The pictures of the batch of images start, start + 1, ... that are among the first `count`."""
        for i in range(start, min(start + len(label), self.count)):
            pic = _picture(label[i - start], entropy[i - start], self.images.get(self.names[i]))
            target = self.tmp / f"{i:04d}_{_safe_name(self.names[i])}.png"
            if not cv2.imwrite(str(target), pic):
                raise OSError(f"could not write {target}")

    def publish(self) -> None:
        if self.tmp is not None:
            if self.folder.exists():
                shutil.rmtree(self.folder)
            os.replace(self.tmp, self.folder)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "image"


def _picture(label: np.ndarray, entropy: np.ndarray, image_path) -> np.ndarray:
    """BGR picture: image | colourised prediction | colour-mapped entropy, each (H, W)."""
    height, width = label.shape
    panels = []
    if image_path is not None and Path(image_path).is_file():
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is not None:
            panels.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR))
    panels.append(np.ascontiguousarray(colorize(label)[..., ::-1]))  # RGB -> BGR
    heat = np.round(255.0 * np.clip(entropy, 0.0, 1.0)).astype(np.uint8)
    panels.append(cv2.applyColorMap(heat, cv2.COLORMAP_VIRIDIS))
    return np.concatenate(panels, axis=1)
