"""Target inference: main-head logits at the network's native resolution, cached as float16 in HDF5 (rule `infer`).

On CUDA the fast path runs batches in channels_last memory format, optionally under bf16 autocast (`amp="bf16"`),
with images decoded by DataLoader worker processes into pinned memory as uint8, copied without blocking and converted
to the network's float input on the GPU (`esl.io.torchdata.normalize`, a quarter of the float32 bytes); the float16
logits are copied back into pinned host buffers asynchronously and written to HDF5 by a writer thread (a bounded
queue), so writes overlap the next batches' compute. On the CPU the computation is plain float32 (`amp` is ignored),
with the writer thread still overlapping the HDF5 writes. Device, autocast and memory format follow
`esl.runtime.device`.

A shard job (Snakemake's scatter-gather, params `shard = [index, K]`) infers its contiguous run of whole batches
(`esl.stages.shards.shard_slice`) into `infer/{model}.{i}-of-{K}.h5`; rule `infer_gather` concatenates them.
"""

from __future__ import annotations

import dataclasses
import queue
import sys

import torch
from torch.utils.data import DataLoader

from esl.io.h5 import create_h5, write_names
from esl.io.layouts import read_index
from esl.io.provenance import provenance
from esl.io.torchdata import SegmentationSet, device_mean, normalize
from esl.models.checkpoints import load_checkpoint
from esl.runtime.background import Background
from esl.runtime.device import autocast, check_amp, place, to_input, use_channels_last
from esl.runtime.progress import Progress
from esl.stages.params import StageParams, check_input, check_int, input_files, optional, the_file, torch_device
from esl.stages.shards import shard_slice

QUEUE_DEPTH = 3  # batches waiting for the writer (each holds one pinned/host buffer)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Params(StageParams):
    """Rule `infer`'s params: `shard` = [index (0-based), K] in shard jobs only; `target` = the target domain's
    input params (layout, size, mean_bgr, num_classes)."""

    rule = "infer"
    shard: list | None = optional()
    target: dict
    batch_size: int
    amp: bool | str | None = False
    num_workers: int | None = 0

    def check(self) -> None:
        check_input(self.rule, "target", self.target)
        check_int(self.batch_size, "infer.batch_size", low=1)
        check_amp(self.amp, "infer.amp")
        check_int(self.num_workers, "infer.num_workers", none_ok=True)
        if self.shard is not None:
            if len(self.shard) != 2 or not 0 <= int(self.shard[0]) < int(self.shard[1]):
                raise ValueError(f"rule infer: params shard={self.shard!r} must be [index, K] with 0 <= index < K")


def run(params: Params, inputs, outputs, log=None, *, threads=None, device=None) -> None:
    """Infer the logits of `inputs["model"]` on the images of `inputs["index"]` (this shard's) into the output."""
    log = sys.stdout if log is None else log
    device = torch_device(threads, device)
    target = params.target
    model, _ = load_checkpoint(inputs["model"], num_classes=target["num_classes"])
    samples = shard_samples(read_index(inputs["index"]), params.shard, params.batch_size, log)
    infer_logits(
        model,
        samples,
        layout=target["layout"],
        size=target["size"],
        mean_bgr=target["mean_bgr"],
        out_h5=the_file(outputs),
        prov=provenance(params.as_dict(), input_files(inputs)),
        batch_size=params.batch_size,
        device=device,
        amp=params.amp or False,
        num_workers=int(params.num_workers or 0),
        log=log,
    )


def shard_samples(samples: list, shard, batch_size: int, log=None) -> list:
    """The samples shard `[index, K]` infers (all of them for None); a bad K names config `infer.shards`."""
    if not shard:
        return samples
    i, k = shard
    try:
        part = shard_slice(len(samples), i, k, batch_size)
    except ValueError as e:
        raise ValueError(f"config infer.shards={k}: {e}") from None
    print(f"shard {i} of {k}: images {part.start}..{part.stop - 1} of {len(samples)}", file=log)
    return samples[part]


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

    def stage(self, start: int, main: torch.Tensor, batch_size: int, cuda: bool) -> None:
        """Copy a batch of float16 logits into a host buffer (asynchronously on CUDA) and queue its write."""
        buf = self.buffer((batch_size, *main.shape[1:]), pinned=cuda)
        count = main.shape[0]
        event = None
        if cuda:
            buf[:count].copy_(main, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        else:
            buf[:count].copy_(main)
        self.put(start, count, buf, event)


def _loader(dataset, batch_size: int, num_workers: int, pinned: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=pinned,
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
    )


def _forward(model, images, device, mean, channels_last: bool, amp) -> torch.Tensor:
    """The main head's logits of a uint8 batch, as contiguous float16."""
    images = normalize(to_input(images, device, False), mean, channels_last)
    with autocast(device, amp):
        _, main = model(images)
    return main.to(torch.float16).contiguous()


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
    check_amp(amp, "infer.amp")
    channels_last = use_channels_last(device, channels_last)
    dataset = SegmentationSet(samples, layout, size, mean_bgr, model.num_classes, labels="none", raw=True)
    loader = _loader(dataset, batch_size, num_workers, pinned=cuda)
    place(model, device, channels_last).eval()
    n = len(dataset)
    mean = device_mean(mean_bgr, device)
    progress = Progress("infer", n, unit="img", stream=log)
    with create_h5(out_h5, prov) as f:
        writer = None
        try:
            for images, _, idx in loader:
                main = _forward(model, images, device, mean, channels_last, amp)
                if writer is None:
                    c, h, w = main.shape[1:]
                    ds = f.create_dataset("logits", shape=(n, c, h, w), dtype="float16", chunks=(1, c, h, w))
                    writer = _Writer(ds)
                writer.stage(int(idx[0]), main, batch_size, cuda)
                progress.update(main.shape[0])
        finally:
            if writer is not None:
                writer.close()
        write_names(f, [s.name for s in samples])
        f.attrs["input_size"] = list(size)
    progress.done()
