"""Target inference: main-head logits at the network's native resolution, cached as float16 in HDF5."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from .data import SegmentationSet
from .h5io import create_h5, write_names
from .progress import Progress


@torch.no_grad()
def infer_logits(
    model, samples, *, layout, size, mean_bgr, out_h5, prov, batch_size=8, device="cpu", num_workers=0, log=None
):
    """Run `model` on every sample; write `logits` float16 (N, C, h, w) with one chunk per image, and `names`."""
    dataset = SegmentationSet(samples, layout, size, mean_bgr, model.num_classes, labels="none")
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    model.to(device).eval()
    n = len(dataset)
    progress = Progress("infer", n, unit="img", stream=log)
    with create_h5(out_h5, prov) as f:
        logits_ds = None
        for images, _, idx in loader:
            _, main = model(images.to(device, non_blocking=True))
            main = main.to(torch.float16).cpu().numpy()
            if logits_ds is None:
                c, h, w = main.shape[1:]
                logits_ds = f.create_dataset("logits", shape=(n, c, h, w), dtype="float16", chunks=(1, c, h, w))
            logits_ds[idx[0] : idx[0] + len(idx)] = main
            progress.update(len(idx))
        write_names(f, [s.name for s in samples])
        f.attrs["input_size"] = list(size)
    progress.done()
