"""Benchmark harness: each stage against a faithful "reference style" implementation, same data, machine and run.

Stages (figures: images/s or pixels/s, same-run ratios, peak memory):

* inference — reference: batch 1, float32, full softmax upsampled to the input size and copied to the host, argmax /
  max-prob / entropy in NumPy (the 2020-era code). Ours: `esl.stages.infer.infer_logits` (batches, DataLoader
  workers decoding PNGs, bf16 + channels_last on CUDA, writer thread) and then `esl.stages.entropy.entropy_maps_h5` on
  the same device; also the bare forward at the same batch (random tensor already on the device, no data loading, no
  writing).
* thresholds — reference: all values concatenated in float64, per class a NumPy sort and the median index. Ours:
  `esl.ops.ranks.StreamingRank`, two streamed passes over chunks (NumPy; torch.bincount on the GPU), checked exact.
  Peak memory (tracemalloc: NumPy's host allocations) at N and N/4 pixels shows what depends on N.
* training — reference: a plain batch-1 float32 step (source CE + target CE, SGD), as the reference code.
  Ours: `esl.stages.train_loop.train` with its defaults, and on CUDA with bf16 autocast + channels_last (+ frozen
  BatchNorm).
* workflow — wall time of `snakemake -n` (the whole DAG planned in a fresh directory) and, with `--pipeline`, of the
  toy default end to end (`snakemake --cores 2` on config/config.yaml in a temporary directory).

CPU (default): the toy network at 64x128, small N. GPU: `--gpu` (DeepLabv2-R101, random weights, 512x1024, 19 classes).
Usage: python bench/run_all.py [--gpu] [--size H W] [--classes C] [--n N] [--pipeline] [--json FILE] [--only STAGES]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from esl.io.images import read_image  # noqa: E402
from esl.io.layouts import Sample
from esl.io.torchdata import to_tensor
from esl.models.deeplabv2 import build_model
from esl.ops.ranks import StreamingRank, rank_index
from esl.ops.thresholds import ascending_ranks
from esl.runtime.device import autocast
from esl.stages.entropy import entropy_maps_h5
from esl.stages.infer import infer_logits
from esl.stages.train_loop import TrainConfig, train

MEAN = [104.00698793, 116.66876762, 122.67891434]
ROWS: list[dict] = []


def row(stage, variant, rate, unit, ratio=None, mem=None, note=""):
    r = {"stage": stage, "variant": variant, "rate": rate, "unit": unit, "ratio": ratio, "peak_mem": mem, "note": note}
    ROWS.append(r)
    ratio_s = "" if ratio is None else f"{ratio:8.2f}x"
    print(f"  {stage:11s} {variant:44s} {rate:12.2f} {unit:9s} {ratio_s:>9s}  {mem or '':>12s}  {note}", flush=True)
    return r


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def gpu_peak(device, reset=False):
    if device.type != "cuda":
        return None
    if reset:
        torch.cuda.reset_peak_memory_stats()
        return None
    return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB gpu"


def rss():
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB rss"


# ------------------------------------------------------------------------------------------------------------ data


def write_images(root: Path, n_files: int, size, seed=0) -> list[Path]:
    """Smooth random BGR PNGs (they compress like photos, unlike noise) at `size` = (H, W)."""
    rng = np.random.default_rng(seed)
    h, w = size
    paths = []
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        small = rng.integers(0, 256, size=(max(2, h // 32), max(2, w // 32), 3), dtype=np.uint8)
        image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        image = np.clip(image.astype(np.int16) + rng.integers(-8, 9, size=image.shape), 0, 255).astype(np.uint8)
        paths.append(root / f"img{i:04d}.png")
        cv2.imwrite(str(paths[-1]), image)
    return paths


def samples_of(paths, n):
    return [Sample(f"s{i:05d}", str(paths[i % len(paths)]), None) for i in range(n)]


def best_rate(fn, units, device, repeat):
    """units / the shortest of `repeat` timed calls (a shared machine's noise only ever slows a run down)."""
    best = math.inf
    for _ in range(max(1, repeat)):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return units / best


# ------------------------------------------------------------------------------------------------------- inference


def reference_entropy_numpy(prob: np.ndarray):
    """The reference's per-image maps from host probabilities (C, H, W) float32."""
    label = prob.argmax(axis=0).astype(np.uint8)
    max_prob = prob.max(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(prob * np.log(prob), axis=0) / math.log(prob.shape[0])
    return label, max_prob, ent.astype(np.float32)


@torch.no_grad()
def reference_infer(model, samples, size, device):
    """Batch 1, float32, softmax upsampled on the device, full probability map copied to the host, NumPy entropy."""
    model.eval()
    for s in samples:
        x = to_tensor(read_image(s.image, size), MEAN)[None].to(device)
        _, main = model(x)
        prob = F.interpolate(torch.softmax(main, dim=1), size=size, mode="bilinear", align_corners=True)
        reference_entropy_numpy(prob[0].cpu().numpy())


@torch.no_grad()
def bare_forward(model, batch, size, device, amp, channels_last, iters):
    model.eval()
    x = torch.randn(batch, 3, *size, device=device) * 50
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, amp):
        for _ in range(2):
            model(x)
        sync(device)
        t = time.perf_counter()
        for _ in range(iters):
            model(x)
        sync(device)
    return batch * iters / (time.perf_counter() - t)


def bench_inference(args, device, model, tmp: Path):
    size = tuple(args.size)
    cuda = device.type == "cuda"
    paths = write_images(tmp / "images", min(args.n, 64), size)
    samples = samples_of(paths, args.n)
    n_ref = min(args.n, args.ref_n)
    amp = "bf16" if cuda else False

    model.to(device)
    reference_infer(model, samples[:1], size, device)  # warm-up
    sync(device)
    gpu_peak(device, reset=True)
    ref = best_rate(lambda: reference_infer(model, samples[:n_ref], size, device), n_ref, device, args.repeat)
    row("inference", "reference: batch 1 fp32, host softmax+entropy", ref, "img/s", 1.0, gpu_peak(device) or rss())

    common = dict(layout="trainids", size=list(size), mean_bgr=MEAN, prov={}, batch_size=args.batch, device=device)
    common.update(num_workers=args.workers, amp=amp, log=open(os.devnull, "w"))
    infer_logits(model, samples[: args.batch * 2], out_h5=tmp / "warm.h5", **common)  # warm-up (cudnn, workers)
    gpu_peak(device, reset=True)
    fast = best_rate(
        lambda: infer_logits(model, samples, out_h5=tmp / "infer.h5", **common), args.n, device, args.repeat
    )
    what = f"ours: infer_logits b{args.batch} {'bf16 cl ' if cuda else 'fp32 '}w{args.workers}"
    row("inference", what, fast, "img/s", fast / ref, gpu_peak(device) or rss(), "PNG decode, HDF5 write included")

    gpu_peak(device, reset=True)

    def entropy_stage():
        entropy_maps_h5(tmp / "infer.h5", tmp / "entropy.h5", size=size, batch_size=args.batch, device=device, prov={})

    ent = best_rate(entropy_stage, args.n, device, args.repeat)
    row("inference", f"ours: entropy_maps_h5 ({device.type})", ent, "img/s", ent / ref, gpu_peak(device) or rss())
    both = 1.0 / (1.0 / fast + 1.0 / ent)
    row("inference", "ours: infer + entropy stages, sequential", both, "img/s", both / ref, None, "vs reference")

    gpu_peak(device, reset=True)
    bare = bare_forward(model, args.batch, size, device, amp, cuda, args.bare_iters)
    row(
        "inference",
        f"bare forward b{args.batch} {'bf16 cl' if cuda else 'fp32'} (no I/O)",
        bare,
        "img/s",
        bare / ref,
        gpu_peak(device) or rss(),
        f"ours infer = {100 * fast / bare:.0f}% of bare",
    )
    (tmp / "entropy.h5").unlink()
    return {"reference": ref, "fast": fast, "bare": bare, "entropy": ent}


# ------------------------------------------------------------------------------------------------------ thresholds


def threshold_chunks(n_pixels, chunk, num_classes, seed=0, pool=6):
    """A pool of distinct (entropy-like values, class) chunks, cycled to n_pixels: the same stream for every method."""
    rng = np.random.default_rng(seed)
    chunks = []
    for _ in range(pool):
        cls = rng.integers(0, num_classes, size=chunk).astype(np.uint8)
        # per-class skewed values in [0, 1], like normalised entropy
        v = rng.beta(0.5 + (cls % 5) * 0.3, 3.0).astype(np.float32)
        chunks.append((v, cls))
    count = max(1, n_pixels // chunk)
    return [chunks[i % pool] for i in range(count)]


def reference_thresholds(chunks, num_classes, q=0.5):
    values = np.concatenate([v for v, _ in chunks]).astype(np.float64)
    classes = np.concatenate([c for _, c in chunks])
    out = np.zeros(num_classes)
    for c in range(num_classes):
        x = np.sort(values[classes == c])
        r = rank_index(x.size, q)
        out[c] = x[r] if r >= 0 else 0.0
    return out


def streaming_thresholds(chunks, num_classes, device=None, q=0.5):
    sr = StreamingRank(num_classes, device)
    if device is not None and torch.device(device).type == "cuda":
        chunks = [(torch.from_numpy(v).pin_memory(), torch.from_numpy(c).pin_memory()) for v, c in chunks]
    for v, c in chunks:
        sr.add(v, c)
    sr.plan(ascending_ranks(sr.counts(), q, False))
    for v, c in chunks:
        sr.add_second(v, c)
    return np.nan_to_num(sr.result().astype(np.float64), nan=0.0)


def pass2_only(chunks, num_classes, hist_hi, q=0.5):
    """The pseudo-label stage when the entropy stage stored pass 1 (`pass1_*`): plan and pass 2 only."""
    sr = StreamingRank.from_first_pass(hist_hi)
    sr.plan(ascending_ranks(sr.counts(), q, False))
    for v, c in chunks:
        sr.add_second(v, c)
    return np.nan_to_num(sr.result().astype(np.float64), nan=0.0)


def first_pass(chunks, num_classes):
    sr = StreamingRank(num_classes)
    for v, c in chunks:
        sr.add(v, c)
    return sr.hist_hi


def measure(fn):
    """(result, seconds, tracemalloc peak bytes)."""
    tracemalloc.start()
    t = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, secs, peak


def bench_thresholds(args, device):
    c = args.classes
    results = {}
    for n_pix in (args.pixels // 4, args.pixels):
        chunks = threshold_chunks(n_pix, args.chunk, c)
        n = sum(v.size for v, _ in chunks)
        want, t_ref, m_ref = measure(lambda chunks=chunks: reference_thresholds(chunks, c))
        got, t_np, m_np = measure(lambda chunks=chunks: streaming_thresholds(chunks, c))
        assert np.array_equal(got, want), "streaming thresholds differ from the sort"
        tag = f"{n / 1e6:.0f} Mpx"
        row(
            "thresholds",
            f"reference: float64 sort per class, {tag}",
            n / t_ref,
            "px/s",
            1.0,
            f"{m_ref / 2**20:.0f} MiB",
        )
        row(
            "thresholds",
            f"ours: 2-pass NumPy histograms, {tag}",
            n / t_np,
            "px/s",
            t_ref / t_np,
            f"{m_np / 2**20:.0f} MiB",
            "exact",
        )
        results[n_pix] = {"reference": n / t_ref, "numpy": n / t_np, "mem_ref": m_ref, "mem_np": m_np}
        hist, t_p1, _ = measure(lambda chunks=chunks: first_pass(chunks, c))
        got, t_p2, m_p2 = measure(lambda chunks=chunks, hist=hist: pass2_only(chunks, c, hist))
        assert np.array_equal(got, want), "pass-2-only thresholds differ from the sort"
        row(
            "thresholds",
            f"ours: pass 2 only (pass 1 in entropy stage), {tag}",
            n / t_p2,
            "px/s",
            t_ref / t_p2,
            f"{m_p2 / 2**20:.0f} MiB",
            f"exact; pass 1 alone {n / t_p1 / 1e6:.0f} Mpx/s",
        )
        results[n_pix]["pass2_only"] = n / t_p2
        if device.type == "cuda":
            streaming_thresholds(chunks[:2], c, device)  # warm-up
            sync(device)
            gpu_peak(device, reset=True)
            t = time.perf_counter()
            got = streaming_thresholds(chunks, c, device)
            t_gpu = time.perf_counter() - t
            assert np.array_equal(got, want), "GPU thresholds differ from the sort"
            row(
                "thresholds",
                f"ours: 2-pass torch.bincount (cuda), {tag}",
                n / t_gpu,
                "px/s",
                t_ref / t_gpu,
                gpu_peak(device),
                "exact, host chunks copied",
            )
            results[n_pix]["gpu"] = n / t_gpu
    return results


# -------------------------------------------------------------------------------------------------------- training


class Pool(torch.utils.data.Dataset):
    """`n` items cycling over a few pre-made random (image, label) pairs: no data cost in the timings."""

    def __init__(self, n, size, classes, seed):
        g = torch.Generator().manual_seed(seed)
        self.items = [
            (torch.randn(3, *size, generator=g) * 50, torch.randint(0, classes, size, generator=g)) for _ in range(2)
        ]
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image, label = self.items[i % 2]
        return image, label, i


def reference_train(model, src, tgt, iters, device):
    """The reference's step at batch 1, float32: source CE(main)+0.1 CE(aux), target CE likewise, one SGD step."""
    model.to(device).train()
    opt = torch.optim.SGD(model.param_groups(2.5e-4), lr=2.5e-4, momentum=0.9, weight_decay=5e-4)

    def loss(x, y):
        aux, main = model(x.to(device)[None])
        y = y.to(device)[None]
        up = lambda z: F.interpolate(z, size=y.shape[-2:], mode="bilinear", align_corners=True)  # noqa: E731
        return F.cross_entropy(up(main), y, ignore_index=255) + 0.1 * F.cross_entropy(up(aux), y, ignore_index=255)

    for it in range(iters):
        opt.zero_grad()
        xs, ys, _ = src[it]
        loss(xs, ys).backward()
        xt, yt, _ = tgt[it]
        loss(xt, yt).backward()
        opt.step()


def timed(fn, device, iters, repeat=1):
    fn(2)  # warm-up (cudnn autotuning, allocator)
    sync(device)
    gpu_peak(device, reset=True)
    return best_rate(lambda: fn(iters), iters, device, repeat)


def bench_training(args, device, make_model):
    src = Pool(10_000, tuple(args.train_source_size), args.classes, 1)
    tgt = Pool(10_000, tuple(args.size), args.classes, 2)
    iters = args.train_iters
    model = make_model()
    ref = timed(lambda k: reference_train(model, src, tgt, k, device), device, iters, args.repeat)
    row("training", "reference: batch 1 fp32 step", ref, "it/s", 1.0, gpu_peak(device) or rss())

    def ours(**kw):
        m = make_model()
        null = open(os.devnull, "w")

        def run(k):
            cfg = TrainConfig(iters=k, batch_size=1, lr=2.5e-4, poly_iters=10**6, log_interval=1e9, **kw)
            train(m, src, tgt, cfg, device, log=null)

        return timed(run, device, iters, args.repeat)

    out = {"reference": ref}
    variants = [("ours: train() defaults", {})]
    if device.type == "cuda":
        variants += [
            ("ours: train() channels_last fp32", {"channels_last": True}),
            ("ours: train() bf16 + channels_last", {"amp": "bf16"}),
            ("ours: train() bf16 + cl + batchnorm frozen", {"amp": "bf16", "batchnorm": "frozen"}),
        ]
    for name, kw in variants:
        rate = ours(**kw)
        row("training", name, rate, "it/s", rate / ref, gpu_peak(device) or rss())
        out[name] = rate
    return out


# -------------------------------------------------------------------------------------------------------- workflow


def bench_workflow(args, tmp: Path):
    snakemake = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    if not Path(snakemake).exists():
        print("  workflow    snakemake not installed here: skipped", flush=True)
        return {}
    work = tmp / "wf"
    work.mkdir()
    cmd = [
        snakemake,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(REPO / "config/config.yaml"),
    ]
    t = time.perf_counter()
    subprocess.run(cmd + ["-n", "--quiet"], check=True, capture_output=True)
    dry = time.perf_counter() - t
    row("workflow", "snakemake -n (whole toy DAG, fresh dir)", dry, "s", None, None)
    out = {"dry_run_s": dry}
    if args.pipeline:
        t = time.perf_counter()
        subprocess.run(cmd + ["--cores", "2", "--quiet"], check=True, capture_output=True)
        wall = time.perf_counter() - t
        row("workflow", "toy default end to end, --cores 2", wall, "s", None, rss(), f"{wall / 60:.1f} min (goal <= 8)")
        out["pipeline_s"] = wall
    return out


# ------------------------------------------------------------------------------------------------------------ main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", action="store_true", help="CUDA, DeepLabv2-R101 at 512x1024 unless --size says otherwise")
    ap.add_argument("--size", type=int, nargs=2, default=None, help="target input H W")
    ap.add_argument("--classes", type=int, default=19)
    ap.add_argument("--n", type=int, default=None, help="images for inference")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None, help="inference DataLoader workers")
    ap.add_argument("--ref-n", type=int, default=None, help="images for the (slow) reference inference")
    ap.add_argument("--pixels", type=int, default=None, help="pixels for the threshold stage")
    ap.add_argument("--chunk", type=int, default=None, help="pixels per streamed chunk")
    ap.add_argument("--train-iters", type=int, default=None)
    ap.add_argument("--pipeline", action="store_true", help="also time the whole toy pipeline (minutes)")
    ap.add_argument("--only", default="inference,thresholds,training,workflow")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    gpu = args.gpu
    if gpu and not torch.cuda.is_available():
        sys.exit("--gpu: no CUDA device visible")
    device = torch.device("cuda" if gpu else "cpu")
    defaults = dict(
        size=[512, 1024] if gpu else [64, 128],
        n=256 if gpu else 256,
        batch=16 if gpu else 16,
        workers=12 if gpu else 0,
        ref_n=6 if gpu else 16,
        pixels=100_000_000 if gpu else 20_000_000,
        chunk=4 * 512 * 1024 if gpu else 1 << 21,
        train_iters=20 if gpu else 10,
    )
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.train_source_size = [720, 1280] if gpu else args.size
    args.bare_iters = 10 if gpu else 5
    args.repeat = 1 if gpu else 3  # best of 3 on a (shared) CPU
    if gpu:
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(os.cpu_count() or 1)
    arch = dict(layers=(3, 4, 23, 3), width=64) if gpu else dict(layers=(1, 1, 1, 1), width=16)

    def make_model():
        """Random weights, BatchNorm running statistics set from one random batch: sane activations in eval mode
        (ImageNet/trained weights have them; raw random ones overflow float16 logits through 101 layers)."""
        torch.manual_seed(0)
        model = build_model(args.classes, **arch).to(device)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average: exactly this batch's statistics
        model.train()
        with torch.no_grad():
            model(torch.randn(2, 3, *args.size, device=device) * 50)
        return model.eval()

    dev_name = torch.cuda.get_device_name(0) if gpu else f"{platform.processor() or platform.machine()} CPU"
    print(
        f"device {dev_name}, {os.cpu_count()} CPU cores, torch {torch.__version__}, model {arch}, "
        f"input {args.size}, {args.classes} classes, command: {' '.join(sys.argv)}",
        flush=True,
    )
    print(f"  {'stage':11s} {'variant':44s} {'rate':>12s} {'unit':9s} {'ratio':>9s}  {'peak memory':>12s}", flush=True)
    stages = set(args.only.split(","))
    results = {"device": dev_name, "cpu_cores": os.cpu_count(), "torch": torch.__version__, "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="esl-bench-") as tmp:
        tmp = Path(tmp)
        if "thresholds" in stages:
            results["thresholds"] = {str(k): v for k, v in bench_thresholds(args, device).items()}
        if "inference" in stages:
            results["inference"] = bench_inference(args, device, make_model(), tmp)
        if "training" in stages:
            results["training"] = bench_training(args, device, make_model)
        if "workflow" in stages:
            results["workflow"] = bench_workflow(args, tmp)
    results["rows"] = ROWS
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
