"""Target inference: main-head logits at the network's native resolution, cached as float16 in HDF5.

On CUDA the fast path runs batches in channels_last memory format, optionally under bf16 autocast (`amp="bf16"`),
with images decoded by DataLoader worker processes into pinned memory as uint8, copied without blocking and converted
to the network's float input on the GPU (`esl.data.normalize`, a quarter of the float32 bytes); the float16 logits
are copied back into pinned host buffers asynchronously and written to HDF5 by a writer thread (a bounded queue), so
writes overlap the next batches' compute. On the CPU the computation is plain float32 (`amp` is ignored), with the
writer thread still overlapping the HDF5 writes.
"""

from __future__ import annotations

import queue
from contextlib import nullcontext

import torch
from torch.utils.data import DataLoader

from .background import Background
from .data import SegmentationSet, device_mean, normalize
from .h5io import create_h5, write_names
from .progress import Progress

QUEUE_DEPTH = 3  # batches waiting for the writer (each holds one pinned/host buffer)


def autocast(device: torch.device, amp):
    """bf16 autocast on CUDA when `amp == "bf16"`; a no-op otherwise (the CPU keeps float32)."""
    if amp == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


class _Writer(Background):
    """Writes (start, count, host buffer, cuda event or None) batches into an HDF5 dataset in the background, and
    hands the host buffers back for reuse once written."""

    def __init__(self, dataset, depth: int = QUEUE_DEPTH):
        super().__init__("infer-writer", depth)
        self.dataset = dataset
        self.free: queue.Queue = queue.Queue()  # host buffers the writer is done with

    def _write(self, start, count, buf, event):
        if event is not None:
            event.synchronize()
        self.dataset[start : start + count] = buf[:count].numpy()

    def done(self, fn, args):
        self.free.put(args[2])

    def buffer(self, shape, pinned: bool) -> torch.Tensor:
        """A host buffer of at least `shape` float16 (reused once the writer has written it)."""
        try:
            buf = self.free.get_nowait()
            if tuple(buf.shape[1:]) == tuple(shape[1:]) and buf.shape[0] >= shape[0]:
                return buf
        except queue.Empty:
            pass
        return torch.empty(shape, dtype=torch.float16, pin_memory=pinned)

    def put(self, start, count, buf, event):
        self.submit(self._write, start, count, buf, event)


@torch.no_grad()
def infer_logits(
    model,
    samples,
    *,
    layout,
    size,
    mean_bgr,
    out_h5,
    prov,
    batch_size=8,
    device="cpu",
    num_workers=0,
    log=None,
    amp=False,
    channels_last=None,
):
    """Run `model` on every sample; write `logits` float16 (N, C, h, w) with one chunk per image, and `names`.

    amp: False (float32) or "bf16" (autocast, CUDA only; the CPU stays float32). channels_last: None = on CUDA only.
    num_workers: DataLoader processes decoding images (0 = in this process)."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    if amp not in ("bf16", False, None):
        raise ValueError(f"config infer.amp={amp!r} must be false or bf16")
    channels_last = cuda if channels_last is None else bool(channels_last)
    dataset = SegmentationSet(samples, layout, size, mean_bgr, model.num_classes, labels="none", raw=True)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=cuda,
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
    )
    model.to(device).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    n = len(dataset)
    mean = device_mean(mean_bgr, device)
    progress = Progress("infer", n, unit="img", stream=log)
    with create_h5(out_h5, prov) as f:
        writer = None
        try:
            for images, _, idx in loader:
                images = normalize(images.to(device, non_blocking=True), mean, channels_last)
                with autocast(device, amp):
                    _, main = model(images)
                main = main.to(torch.float16).contiguous()
                if writer is None:
                    c, h, w = main.shape[1:]
                    ds = f.create_dataset("logits", shape=(n, c, h, w), dtype="float16", chunks=(1, c, h, w))
                    writer = _Writer(ds)
                buf = writer.buffer((batch_size, *main.shape[1:]), pinned=cuda)
                count = main.shape[0]
                event = None
                if cuda:
                    buf[:count].copy_(main, non_blocking=True)
                    event = torch.cuda.Event()
                    event.record()
                else:
                    buf[:count].copy_(main)
                writer.put(int(idx[0]), count, buf, event)
                progress.update(count)
        finally:
            if writer is not None:
                writer.close()
        write_names(f, [s.name for s in samples])
        f.attrs["input_size"] = list(size)
    progress.done()
