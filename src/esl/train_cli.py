"""Entry point of the training stages: `python -m esl.train_cli SPEC.json` (one process per GPU under torchrun), or
`launch(spec)` from a workflow script.

A spec is a plain dict (JSON) describing one training job:

    stage       "pretrain" | "selftrain" (also the config section named in error messages)
    params      {"model": …, "train": …, "source": …, "target": … | None}   the rule's params
    input       {"source": index.csv, "target": index.csv | None, "pseudo_labels": h5 | None, "init": model.pt | None}
    output      model.pt to write
    resume      the resumable state file (kept while training is unfinished, deleted once `output` is written);
                snapshots (`train.snapshot_every`) are staged in `snapshots/` beside it and moved next to `output`
    resume_root optional: the folder above the state's folder (the workflow's results/{experiment}/resume), removed
                with it after success when nothing else is left in it
    provenance  stamped into `output`; its `inputs` digests also tie the resumable state to its inputs
    threads     CPU threads in all (shared by the processes)
    device      "auto" (CUDA when visible, else CPU) | "cuda" | "cpu" ("cpu" allows gpus > 1 as CPU processes with gloo)

`train.gpus` > 1 runs `torchrun --standalone --nproc_per_node=gpus -m esl.train_cli SPEC.json` (DDP); `launch` passes
SIGTERM/SIGUSR1 on to it and returns 75 (`EXIT_PREEMPTED`) when training stopped early with its state saved.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from . import datasets
from .adapt import adapter_params, build_adapter
from .data import SegmentationSet
from .device import resolve_device
from .h5io import atomic_path
from .model import initial_model, load_checkpoint, save_checkpoint
from .pretrained import load_pretrained
from .resume import EXIT_PREEMPTED, Preempted, ResumeFile, StopSignals
from .snapshots import clear_staged, discard_staged, publish, snapshot_iterations, snapshot_name
from .train import BATCHNORM_MODES, TrainConfig, train

STAGES = ("pretrain", "selftrain")
DEFAULT_SAVE_EVERY = 200
# Keys that change how a run is carried out, not what it computes: a resumable state made with other values is fine.
OPERATIONAL_KEYS = ("save_every", "num_workers", "log_interval", "compile")


def launch(spec: dict, log=None) -> int:
    """Run a training job from a workflow script; returns the process exit code (0, or 75 when preempted)."""
    log = log if log is not None else sys.stdout
    stage, p = spec["stage"], spec["params"]
    gpus = check_spec(spec)
    if stage == "pretrain" and p["train"].get("checkpoint"):
        # our model.pt or a raw ADVENT state dict (e.g. the released gta2cityscapes_advent.pth)
        path = p["train"]["checkpoint"]
        model, model_kwargs = load_pretrained(path, p["source"]["num_classes"], p["model"])
        print(f"using the given checkpoint {path} (config pretrain.checkpoint); no training", file=log)
        save_checkpoint(spec["output"], model, model_kwargs, spec.get("provenance"))
        return 0
    if gpus == 1:
        return run(spec, log=log)
    spec_path = Path(spec["resume"]).with_name("spec.json")
    with atomic_path(spec_path) as tmp:
        tmp.write_text(json.dumps(spec, indent=1, default=str))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
    cmd += ["-m", "esl.train_cli", str(spec_path)]
    print(f"{stage}: {gpus} processes: {' '.join(cmd)}", file=log, flush=True)
    with StopSignals() as stop:
        threads = str(max(1, int(spec.get("threads", 1)) // gpus))  # (torchrun warns when it has to choose)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        forwarded = False
        while proc.poll() is None:
            if stop() and not forwarded:  # torchrun passes SIGTERM on to the workers, which save and stop
                print(f"{stop.received}: asking the {gpus} training processes to save and stop", file=log, flush=True)
                proc.send_signal(signal.SIGTERM)
                forwarded = True
            time.sleep(0.2)
    rc = proc.returncode
    if rc == 0:
        spec_path.unlink(missing_ok=True)
        _rmdir(spec_path.parent)
        _remove_resume_root(spec)
        return 0
    return EXIT_PREEMPTED if stop() and Path(spec["resume"]).exists() else rc


def check_spec(spec: dict) -> int:
    """Validate what can be checked before any work (one-line errors naming the config key); returns the GPU count."""
    stage, train_p = spec["stage"], spec["params"]["train"]
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r} (known: {', '.join(STAGES)})")
    gpus = int(train_p.get("gpus", 1))
    bn = train_p.get("batchnorm", "train")
    if gpus < 1:
        raise ValueError(f"config {stage}.gpus={gpus} must be >= 1")
    if train_p.get("amp", False) not in (False, None, "bf16"):
        raise ValueError(f"config {stage}.amp={train_p['amp']!r} must be false or bf16")
    if bn not in BATCHNORM_MODES:
        raise ValueError(f"config {stage}.batchnorm={bn!r} is not one of {', '.join(BATCHNORM_MODES)}")
    if gpus > 1:
        if int(train_p["batch_size"]) % gpus:
            raise ValueError(
                f"config {stage}.batch_size={train_p['batch_size']} is not divisible by {stage}.gpus={gpus}"
            )
        device = spec.get("device", "auto")
        if device != "cpu":
            visible = torch.cuda.device_count()
            if visible < gpus:
                raise ValueError(f"config {stage}.gpus={gpus} but only {visible} CUDA devices are visible")
        elif bn == "sync":
            raise ValueError(
                f"config {stage}.batchnorm=sync needs CUDA devices (torch's SyncBatchNorm); not on the CPU"
            )
        if _adapter_method(spec) == "advent":
            raise ValueError(f"config {stage}.gpus={gpus}: AdvEnt's discriminators are not distributed; use gpus: 1")
    return gpus


def run(spec: dict, log=None) -> int:
    """Train in this process (rank $RANK of $WORLD_SIZE when started by torchrun); returns the exit code."""
    log = log if log is not None else sys.stdout
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = _device(spec.get("device", "auto"), int(os.environ.get("LOCAL_RANK", "0")))
    torch.set_num_threads(max(1, int(spec.get("threads", 1)) // world))
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        with StopSignals() as stop:
            return _run(spec, device, rank, world, stop, log)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _run(spec, device, rank, world, stop, log) -> int:
    stage, p, inputs = spec["stage"], spec["params"], spec["input"]
    src, tgt = p["source"], p.get("target")
    num_classes = src["num_classes"]
    cfg = TrainConfig.from_params(p["train"])
    resume = ResumeFile(spec["resume"], resume_params(spec), p["train"].get("save_every") or DEFAULT_SAVE_EVERY)

    if stage == "selftrain" and p["train"].get("init") == "pretrained":
        model, _ = load_checkpoint(inputs["init"], num_classes=num_classes)
    else:  # pretraining, and self-training like the reference: the same initialisation as pretraining
        model = initial_model(num_classes, p["model"], cfg.seed)
    source = SegmentationSet(
        datasets.read_index(inputs["source"]), src["layout"], src["size"], src["mean_bgr"], num_classes
    )
    method = _adapter_method(spec)
    adapter = None
    if method is not None:
        size_t = tgt["size"] if tgt else None
        adapter = build_adapter(method, adapter_params(p["train"], src["size"], size_t), num_classes, device)
    target = None
    if stage == "selftrain":
        labels = inputs["pseudo_labels"]
    else:
        labels = "none"  # MinEnt/AdvEnt see target images without labels
    if stage == "selftrain" or adapter is not None:
        target = SegmentationSet(
            datasets.read_index(inputs["target"]), tgt["layout"], tgt["size"], tgt["mean_bgr"], num_classes, labels
        )
    if rank == 0:
        amp_note = " (CUDA only: float32 here)" if cfg.amp and device.type != "cuda" else ""
        what = f"{len(source)} source" + (f" + {len(target)} target" if target is not None else "")
        terms = method or "source_only"
        if stage == "selftrain":  # the target terms: pseudo-labels, plus AdvEnt's when selftrain.adversarial
            terms = "pseudo-labels" + (f" + {method}" if method else "")
        procs = f", {world} processes" if world > 1 else ""
        print(
            f"{stage} ({terms}) on {what} images, {cfg.iters} iterations, device {device}{procs}, "
            f"batchnorm {cfg.batchnorm}, amp {cfg.amp or 'off'}{amp_note}, "
            f"compile {cfg.compile}, resumable state {resume.path} every {resume.every} iterations",
            file=log,
            flush=True,
        )
    staged = resume.path.parent / "snapshots"
    if rank == 0 and not resume.path.exists():
        clear_staged(staged)  # an earlier attempt's snapshots, with no state to resume them from

    def on_snapshot(iteration, net):
        prov = dict(spec.get("provenance") or {}, iteration=iteration)
        save_checkpoint(staged / snapshot_name(iteration), net, _model_kwargs(p), prov, iteration=iteration)

    try:
        stats = train(
            model,
            source,
            target,
            cfg,
            device,
            log=log,
            adapter=adapter,
            resume=resume,
            stop=stop,
            on_snapshot=on_snapshot,
        )
    except Preempted as e:
        if rank == 0:
            print(f"{stop.received or 'stop request'}: {e}; run the job again to resume", file=log, flush=True)
        return EXIT_PREEMPTED
    if rank == 0:
        print(f"final mean losses: {stats}", file=log, flush=True)
        save_checkpoint(spec["output"], model.cpu(), _model_kwargs(p), spec.get("provenance"))
        shots = snapshot_iterations(cfg.iters, cfg.snapshot_every)
        publish(staged, Path(spec["output"]).parent / "snapshots", shots, state=resume.path)
        resume.remove()
        discard_staged(staged)
        _rmdir(resume.path.parent)  # the job's resume folder, now empty
        _remove_resume_root(spec)
    return 0


def resume_params(spec: dict) -> dict:
    """What a resumable state must have been made with: the rule's params (less `OPERATIONAL_KEYS`) and the
    digests of its input files."""
    p = dict(spec["params"])
    p["train"] = {k: v for k, v in p["train"].items() if k not in OPERATIONAL_KEYS}
    inputs = (spec.get("provenance") or {}).get("inputs", {})
    return json.loads(json.dumps({"stage": spec["stage"], "params": p, "inputs": inputs}, default=str))


def _adapter_method(spec: dict) -> str | None:
    train_p = spec["params"]["train"]
    if spec["stage"] == "pretrain":
        method = train_p.get("method", "source_only")
        return None if method in (None, "source_only") else method
    return "advent" if train_p.get("adversarial") else None  # the reference keeps AdvEnt's terms when asked


def _model_kwargs(p: dict) -> dict:
    return {k: v for k, v in p["model"].items() if k != "init"}


def _device(name: str, local_rank: int) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    device = resolve_device("auto" if name == "auto" else name)
    if device.type == "cuda":
        return torch.device("cuda", local_rank)
    return device


def _remove_resume_root(spec: dict) -> None:
    """After success, `spec["resume_root"]` (optional: the folder holding every job's state folder) goes if empty."""
    if spec.get("resume_root"):
        _rmdir(Path(spec["resume_root"]))


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m esl.train_cli SPEC.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        print(f"{path}: cannot read the training spec ({e})", file=sys.stderr)
        return 2
    return run(spec)


if __name__ == "__main__":
    sys.exit(main())
