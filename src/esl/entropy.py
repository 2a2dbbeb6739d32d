"""Entropy maps: softmax, bilinear upsampling of probabilities, argmax / max-prob / normalised entropy.

The per-pixel quantities follow the ESL reference: probabilities are computed in float32 at the network's native
output resolution, upsampled bilinearly (``align_corners=True``) to the pseudo-label size, and then

* ``label = argmax_c p_c`` (first maximum on ties),
* ``max_prob = max_c p_c``,
* ``entropy = -sum_c p_c ln p_c / ln C`` with ``0 ln 0 = 0``, clamped to [0, 1], never NaN, never -0.0.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .background import Background
from .classes import colorize
from .h5io import create_h5, open_h5, read_names, remove_stale_temporaries, require_datasets, write_names
from .progress import Progress
from .thresholds import StreamingRank

MAX_CLASSES = 255  # labels are uint8 and 255 means "ignore"
# Pass 1 of the exact per-class thresholds (`esl.thresholds`), counted while the maps are made: (C, 65536) int64 each.
FIRST_PASS = {"entropy": "pass1_entropy", "max_prob": "pass1_max_prob"}


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


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "image"


def _picture(label: np.ndarray, entropy: np.ndarray, image_path) -> np.ndarray:
    """BGR picture: image | colourised prediction | colour-mapped entropy, each (H, W)."""
    import cv2

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
) -> None:
    """Stream the `logits` of an infer file through `entropy_map` and write an entropy file.

    Output datasets (ARCHITECTURE.md): `label` uint8, `entropy` float32, `max_prob` float32, all (N, H, W) with one
    chunk per image, and `names`; attribute `provenance` (= `prov`) and `num_classes`. The file is written under a
    temporary name and renamed when complete. Also `pass1_entropy` and `pass1_max_prob`: the first pass of the exact
    thresholds (`StreamingRank.hist_hi` of each map per predicted class, (C, 65536) int64, gzip), counted on `device`
    from the very values written, so the pseudo-label stage reads the maps once instead of twice.

    If `pictures_dir` is given it is (re)created atomically, holding PNGs for the first `pictures` images:
    image (read from ``images[name]``, left out when unknown) | prediction | entropy (viridis).
    """
    import cv2

    infer_h5 = Path(infer_h5)
    batch_size = max(1, int(batch_size))
    with open_h5(infer_h5) as fin:
        require_datasets(fin, infer_h5, "logits", "names")
        logits = fin["logits"]
        if logits.ndim != 4:
            raise ValueError(f"{infer_h5}: 'logits' must be (N, C, h, w), got shape {logits.shape}")
        names = read_names(fin)
        n, num_classes, h, w = logits.shape
        if len(names) != n:
            raise ValueError(f"{infer_h5}: {len(names)} names for {n} logit maps")
        height, width = (h, w) if size is None else (int(size[0]), int(size[1]))
        pictures = min(max(0, int(pictures)), n) if pictures_dir is not None else 0

        pic_tmp = None
        if pictures_dir is not None:
            pictures_dir = Path(pictures_dir)
            pictures_dir.parent.mkdir(parents=True, exist_ok=True)
            pic_tmp = pictures_dir.with_name(f"{pictures_dir.name}.tmp-{os.getpid()}")
            remove_stale_temporaries(pictures_dir)  # ours (same pid, an earlier attempt) and killed jobs'
            pic_tmp.mkdir()
        try:
            with create_h5(out_h5, prov) as fout:
                fout.attrs["num_classes"] = num_classes
                shape, chunks = (n, height, width), (1, height, width)
                d_label = fout.create_dataset("label", shape=shape, dtype=np.uint8, chunks=chunks)
                d_entropy = fout.create_dataset("entropy", shape=shape, dtype=np.float32, chunks=chunks)
                d_max_prob = fout.create_dataset("max_prob", shape=shape, dtype=np.float32, chunks=chunks)
                write_names(fout, names)

                # histograms on the GPU with torch.bincount; NumPy's bincount is the faster one on the CPU
                cuda = torch.device(device).type == "cuda"
                ranks = {k: StreamingRank(num_classes, device if cuda else None) for k in FIRST_PASS}

                def write(start, stop, label, max_prob, entropy):  # in the writer thread, in batch order
                    if not cuda:
                        ranks["entropy"].add(entropy, label)
                        ranks["max_prob"].add(max_prob, label)
                    d_label[start:stop] = label
                    d_max_prob[start:stop] = max_prob
                    d_entropy[start:stop] = entropy
                    for i in range(start, min(stop, pictures)):
                        pic = _picture(label[i - start], entropy[i - start], (images or {}).get(names[i]))
                        target = pic_tmp / f"{i:04d}_{_safe_name(names[i])}.png"
                        if not cv2.imwrite(str(target), pic):
                            raise OSError(f"could not write {target}")

                progress = Progress("entropy", n, unit="images")
                writer = Background("entropy-writer")
                try:
                    for start in range(0, n, batch_size):
                        stop = min(start + batch_size, n)
                        x = torch.from_numpy(logits[start:stop]).to(device)
                        try:
                            label, max_prob, entropy = entropy_map(x, (height, width))
                        except ValueError as e:
                            raise ValueError(f"{infer_h5}: images {start}..{stop - 1}: {e}") from None
                        if cuda:
                            ranks["entropy"].add(entropy, label)
                            ranks["max_prob"].add(max_prob, label)
                        maps = (label.cpu().numpy(), max_prob.cpu().numpy(), entropy.cpu().numpy())
                        writer.submit(write, start, stop, *maps)
                        progress.update(stop - start)
                finally:
                    writer.close()
                progress.done()
                for key, name in FIRST_PASS.items():
                    fout.create_dataset(
                        name, data=ranks[key].hist_hi, chunks=(1, ranks[key].hist_hi.shape[1]), compression="gzip"
                    )
                if pic_tmp is not None:
                    if pictures_dir.exists():
                        shutil.rmtree(pictures_dir)
                    os.replace(pic_tmp, pictures_dir)
        finally:
            if pic_tmp is not None and pic_tmp.exists():
                shutil.rmtree(pic_tmp)
