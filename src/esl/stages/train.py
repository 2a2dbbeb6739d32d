"""The training stages (rules `pretrain` and `selftrain`): a `TrainJob` (esl.stages.train_job) run in this process
or under torchrun (`python -m esl.stages.train JOB.json` in each process).

`launch(job)`: adopt a given checkpoint (`pretrain.checkpoint`), or train in this process (`train.gpus: 1`), or start
`train.gpus` processes under torchrun (DistributedDataParallel), passing SIGTERM/SIGUSR1 on. Returns 0, or 75
(`EXIT_PREEMPTED`) when training stopped early with its state saved: running the job again resumes it.

When training ends, the resumable state becomes a *finished* state (the final model staged beside it, the mean
losses) before the outputs are written from the staging; it is removed once they are in place. A stop signal that
comes after the last iteration stops nothing (the job writes its outputs and exits 0), but a signal that the
processes above this one do not ignore may have ended the job anyway (Slurm signals every process of the job step):
then the finished state is kept, and the job's next start writes the outputs from it without training
("finished state found"). Under torchrun, process 0 leaves the finished state and the launcher puts the outputs into
place. docs/CLUSTER.md, "Pre-emption, time limits, retries".

One module, though long: `launch` and `run` share that finished-state protocol (the staging beside the resumable
state, `_finished_state`, `_complete`, `_remove_or_keep`), which either may carry out, and this module is also
torchrun's entry point; the job itself and the training loop are esl.stages.train_job and esl.stages.train_loop.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist

from esl.io.files import atomic_path
from esl.io.layouts import read_index
from esl.io.tables import write_csv
from esl.io.torchdata import SegmentationSet
from esl.models.adapters import adapter_params, build_adapter
from esl.models.checkpoints import initial_model, load_checkpoint, load_pretrained, save_checkpoint
from esl.runtime.device import resolve_device
from esl.runtime.distributed import env_rank, torchrun
from esl.runtime.progress import MetricsLog
from esl.runtime.resume import EXIT_PREEMPTED, Preempted, ResumeFile, StopSignals, ignored_signals
from esl.stages.snapshots import clear_staged, discard_staged, publish, snapshot_iterations, snapshot_name
from esl.stages.train_job import DEFAULT_SAVE_EVERY, TrainJob
from esl.stages.train_loop import TrainConfig, train


def launch(job: TrainJob, log=None) -> int:
    """Run a training job from a workflow script; returns the process exit code (0, or 75 when preempted)."""
    log = log if log is not None else sys.stdout
    if job.stage == "pretrain" and job.train.get("checkpoint"):
        return _adopt_checkpoint(job, log)
    if job.gpus == 1:
        return run(job, log=log)
    shielded = ignored_signals()  # before any handler of ours: what the processes above this one ignore
    resume = _resume_file(job)
    with StopSignals() as stop:
        state = _finished_state(resume)
        if state is not None:  # an earlier attempt trained to the end: no torchrun
            _complete(job, resume, log, found=state)
            _remove_or_keep(job, resume, stop.seen, shielded, log)
            return 0
    job_file = Path(job.resume).with_name("job.json")
    with atomic_path(job_file) as tmp:
        tmp.write_text(job.to_json())
    print(f"{job.stage}: DistributedDataParallel", file=log, flush=True)
    rc, signals = torchrun("esl.stages.train", str(job_file), job.gpus, job.threads, log)
    with StopSignals() as stop:
        finished = _finished_state(resume) is not None
        if rc != 0 and not finished:
            return EXIT_PREEMPTED if signals and resume.path.exists() else rc
        # Process 0 trained to the end and left a finished state; the outputs are put into place here (also when a
        # signal after the last iteration ended torchrun with an error), and the state removed.
        job_file.unlink(missing_ok=True)
        if finished:
            if rc != 0:
                print(f"torchrun exited with {rc} after training had finished", file=log, flush=True)
            _complete(job, resume, log)
            _remove_or_keep(job, resume, [*signals, *stop.seen], shielded, log)
        _rmdir(job_file.parent)
        _remove_resume_root(job)
    return 0


def _adopt_checkpoint(job: TrainJob, log) -> int:
    """Our model.pt or a raw ADVENT state dict (e.g. the released gta2cityscapes_advent.pth) instead of training."""
    path = job.train["checkpoint"]
    model, model_kwargs = load_pretrained(path, job.source["num_classes"], job.model)
    print(f"using the given checkpoint {path} (config pretrain.checkpoint); no training", file=log)
    save_checkpoint(job.output, model, model_kwargs, job.provenance)
    if job.metrics:
        _write_metrics(job, [])  # nothing trained here: the header only
    return 0


def run(job: TrainJob, log=None) -> int:
    """Train in this process (rank $RANK of $WORLD_SIZE when started by torchrun); returns the exit code."""
    log = log if log is not None else sys.stdout
    rank, local_rank, world = env_rank()
    shielded = ignored_signals()  # before StopSignals replaces the dispositions this process inherited
    # The handlers stay until this returns, so a signal after the last iteration neither stops nor kills it.
    with StopSignals() as stop:
        resume = _resume_file(job)
        state = _finished_state(resume)
        if state is not None:  # an earlier attempt trained to the end; its outputs may have been deleted since
            if rank == 0 and world == 1:  # (under torchrun the launcher does this)
                _complete(job, resume, log, found=state)
                _remove_or_keep(job, resume, stop.seen, shielded, log)
            return 0
        device = resolve_device(job.device, local_rank)
        torch.set_num_threads(max(1, job.threads // world))
        if world > 1:
            if device.type == "cuda":
                torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        try:
            return _train_job(job, device, rank, world, stop, shielded, log)
        finally:
            if world > 1:
                dist.destroy_process_group()


def _train_job(job: TrainJob, device, rank: int, world: int, stop, shielded, log) -> int:
    cfg = job.config
    resume = _resume_file(job)
    model = _initial_model(job, cfg)
    adapter = _adapter(job, device)
    source, target = _datasets(job)
    if rank == 0:
        _announce(job, cfg, source, target, device, world, resume, log)
    staged = _staged_snapshots(resume)
    if rank == 0 and not resume.path.exists():
        clear_staged(staged)  # an earlier attempt's snapshots, with no state to resume them from
        _staged_model(resume).unlink(missing_ok=True)  # and its final model, if it died while removing its state

    images_per_iter = cfg.batch_size * (2 if target is not None else 1)
    metrics = MetricsLog(cfg.iters, images_per_iter)

    def on_snapshot(iteration, net):
        prov = dict(job.provenance, iteration=iteration)
        save_checkpoint(staged / snapshot_name(iteration), net, _model_kwargs(job), prov, iteration=iteration)

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
            metrics=metrics,
        )
    except Preempted as e:
        if rank == 0:
            print(f"{stop.received or 'stop request'}: {e}; run the job again to resume", file=log, flush=True)
        return EXIT_PREEMPTED
    if rank == 0:
        print(f"final mean losses: {stats}", file=log, flush=True)
        _finish(job, model, cfg, resume, stats, metrics)
        if world == 1:  # under torchrun the launcher puts the outputs into place and removes the state (launch)
            _complete(job, resume, log)
            _remove_or_keep(job, resume, stop.seen, shielded, log)
    return 0


def _resume_file(job: TrainJob) -> ResumeFile:
    return ResumeFile(job.resume, job.resume_params(), job.train.get("save_every") or DEFAULT_SAVE_EVERY)


def _staged_snapshots(resume: ResumeFile) -> Path:
    return resume.path.parent / "snapshots"


def _staged_model(resume: ResumeFile) -> Path:
    return resume.path.with_name("model.pt")


def _initial_model(job: TrainJob, cfg: TrainConfig):
    if job.stage == "selftrain" and job.train.get("init") == "pretrained":
        return load_checkpoint(job.inputs.init, num_classes=job.source["num_classes"])[0]
    # pretraining, and self-training like the reference: the same initialisation as pretraining
    return initial_model(job.source["num_classes"], job.model, cfg.seed)


def _datasets(job: TrainJob):
    """The source set (images + labels) and the target set: pseudo-labels when self-training, images only for
    MinEnt/AdvEnt, None for source-only pretraining."""
    src, tgt, n = job.source, job.target, job.source["num_classes"]
    source = SegmentationSet(read_index(job.inputs.source), src["layout"], src["size"], src["mean_bgr"], n)
    if job.stage != "selftrain" and job.adapter_method is None:
        return source, None
    labels = job.inputs.pseudo_labels if job.stage == "selftrain" else "none"
    return source, SegmentationSet(
        read_index(job.inputs.target), tgt["layout"], tgt["size"], tgt["mean_bgr"], n, labels
    )


def _adapter(job: TrainJob, device):
    method = job.adapter_method
    if method is None:
        return None
    size_t = job.target["size"] if job.target else None
    settings = adapter_params(job.train, job.source["size"], size_t)
    return build_adapter(method, settings, job.source["num_classes"], device)


def _announce(job, cfg, source, target, device, world, resume, log) -> None:
    amp_note = " (CUDA only: float32 here)" if cfg.amp and device.type != "cuda" else ""
    what = f"{len(source)} source" + (f" + {len(target)} target" if target is not None else "")
    method = job.adapter_method
    terms = method or "source_only"
    if job.stage == "selftrain":  # the target terms: pseudo-labels, plus AdvEnt's when selftrain.adversarial
        terms = "pseudo-labels" + (f" + {method}" if method else "")
    procs = f", {world} processes" if world > 1 else ""
    print(
        f"{job.stage} ({terms}) on {what} images, {cfg.iters} iterations, device {device}{procs}, "
        f"batchnorm {cfg.batchnorm}, amp {cfg.amp or 'off'}{amp_note}, "
        f"compile {cfg.compile}, resumable state {resume.path} every {resume.every} iterations",
        file=log,
        flush=True,
    )


def _finish(job: TrainJob, model, cfg: TrainConfig, resume: ResumeFile, stats: dict, metrics: MetricsLog) -> None:
    """The final model staged beside the resumable state, then the state replaced by the finished state (in this
    order: a kill in between leaves the last periodic state, which resumes). The snapshots are staged already; the
    finished state holds the training curve, so a retry writes metrics.csv too."""
    save_checkpoint(_staged_model(resume), model.cpu(), _model_kwargs(job), job.provenance)
    resume.save({"iteration": cfg.iters, "finished": True, "stats": stats, "metrics": metrics.rows})


def _finished_state(resume: ResumeFile) -> dict | None:
    """The finished state of an earlier attempt, or None. Only a state with its staged model is read (a periodic
    state is large); one made with other parameters is refused like any state (ResumeError)."""
    if not _staged_model(resume).is_file():
        return None
    state = resume.load()
    return state if state is not None and state.get("finished") else None


def _complete(job: TrainJob, resume: ResumeFile, log, found: dict | None = None) -> None:
    """model.pt and the snapshots put into place from the staging (links; idempotent). found: the finished state
    of an earlier attempt, announced."""
    cfg = job.config
    if found is not None:
        print(
            f"finished state found: {resume.path} (training ended after iteration {found['iteration']}/{cfg.iters}); "
            f"writing the outputs from it without training",
            file=log,
            flush=True,
        )
        print(f"final mean losses: {found['stats']}", file=log, flush=True)
    with atomic_path(job.output) as tmp:
        _link_or_copy(_staged_model(resume), tmp)
    shots = snapshot_iterations(cfg.iters, cfg.snapshot_every)
    publish(_staged_snapshots(resume), Path(job.output).parent / "snapshots", shots, state=resume.path)
    also = f" and {len(shots)} snapshots" if shots else ""
    if job.metrics:
        state = found if found is not None else _finished_state(resume)
        _write_metrics(job, (state or {}).get("metrics") or [])
        also += f" and {job.metrics}"
    print(f"wrote {job.output}{also}", file=log, flush=True)


METRICS_COLUMNS = ("iteration", "lr")  # then loss_<term> per term, then images_per_s (esl.runtime.progress)


def _write_metrics(job: TrainJob, rows: list[dict]) -> None:
    """metrics.csv: the training curve (`MetricsLog` rows); only the header for a given checkpoint."""
    table = pd.DataFrame(rows) if rows else pd.DataFrame(columns=[*METRICS_COLUMNS, "images_per_s"])
    write_csv(table, job.metrics, job.provenance)


def _remove_or_keep(job: TrainJob, resume: ResumeFile, signals, shielded, log) -> None:
    """Remove the finished state, the staged model and snapshots (in this order: a kill at any point leaves either a
    finished state or a complete job) — unless a stop signal came after the last iteration that the processes above
    this one do not ignore: it may have ended the job (Slurm signals all its processes), whose retry then needs the
    state."""
    fatal = [s for s in dict.fromkeys(signals) if s not in shielded]
    if fatal:
        print(
            f"{', '.join(fatal)} after the last iteration: the outputs are complete, but the job may count as failed "
            f"(the signal reaches its other processes too); keeping the finished state {resume.path}, from which "
            f"its next start writes the outputs without training",
            file=log,
            flush=True,
        )
        return
    if signals:
        print(f"{', '.join(dict.fromkeys(signals))} after the last iteration: ignored", file=log, flush=True)
    resume.remove()
    _staged_model(resume).unlink(missing_ok=True)
    discard_staged(_staged_snapshots(resume))
    _rmdir(resume.path.parent)  # the job's resume folder, now empty
    _remove_resume_root(job)


def _link_or_copy(source: Path, dest: Path) -> None:
    """A hard link while the staged file lives (then the output's only name), a copy across file systems."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _model_kwargs(job: TrainJob) -> dict:
    return {k: v for k, v in job.model.items() if k != "init"}


def _remove_resume_root(job: TrainJob) -> None:
    if job.resume_root:
        _rmdir(Path(job.resume_root))


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m esl.stages.train JOB.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        job = TrainJob.from_json(path.read_text())
    except (OSError, ValueError, TypeError) as e:
        print(f"{path}: cannot read the training job ({e})", file=sys.stderr)
        return 2
    return run(job)


if __name__ == "__main__":
    sys.exit(main())
