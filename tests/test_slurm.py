"""The tiny config on a real Slurm through `snakemake --profile slurm`, compared with the local run.

Tests marked `slurm` need the local cluster of scripts/slurm/start.sh (see tests/conftest.py for how they are
selected); they fail, never skip, when it is not running. One Slurm run is shared by all of them.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO, SNAKEMAKE, TINY, TINY_CORES, planned_jobs, write_config

from esl.io.provenance import read_provenance
from esl.io.tables import read_csv

SLURM_RUN_TIMEOUT = 1500  # seconds; the run takes a few minutes on 2 cores
GPU_RULES = {"pretrain", "infer", "selftrain", "evaluate", "evaluate_snapshots", "evaluate_ensemble"}
PLOT_RULES = {"plot_snapshots", "plot_training", "plot_iou", "plot_pseudo_labels", "plot_entropy", "plot_examples"}
# Slurm jobs per log folder: the profile groups toy+index ("data") and entropy+pseudo_labels ("labels").
EXPECTED_SLURM_JOBS = {
    "group_data_index_toy": 1,
    "rule_pretrain": 1,
    "rule_infer": 1,
    "group_labels_entropy_pseudo_labels": 1,
    "rule_selftrain": 2,
    "rule_evaluate": 3,
    "rule_evaluate_snapshots": 3,
    "rule_evaluate_ensemble": 1,
    "rule_plot_snapshots": 1,
    "rule_plot_iou": 1,
    "rule_plot_pseudo_labels": 1,
    "rule_plot_entropy": 1,
    "rule_plot_examples": 1,
    "rule_plot_training": 1,
    "rule_summary": 1,
}


def require_slurm() -> None:
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
        problem = proc.stderr.strip().splitlines()[-1] if proc.returncode else None
        if proc.returncode == 0 and not {"idle", "mix", "alloc"} & set(proc.stdout.split()):
            problem = f"no usable node (sinfo: {' '.join(proc.stdout.split()) or 'none'})"
    except (OSError, subprocess.TimeoutExpired) as e:
        problem = f"{type(e).__name__}: {e}"
    if problem:
        pytest.fail(
            f"Slurm is not running ({problem}); start it with scripts/slurm/start.sh (as root), "
            "then `source ${ESL_SLURM_DIR:-/tmp/esl-slurm}/env.sh`",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    """The tiny config run by `snakemake --profile slurm --cache pretrain` in a fresh workdir."""
    require_slurm()
    base = tmp_path_factory.mktemp("slurm")
    workdir, cache = base / "work", base / "cache"
    workdir.mkdir()
    cache.mkdir()
    write_config(workdir, TINY)
    (workdir / "slurm").symlink_to(REPO / "slurm")  # so that `--profile slurm` is found as written in the docs
    planned = planned_jobs(workdir)
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "--configfile",
        "config.yaml",
        "--profile",
        "slurm",
        # The profile's 10 s suits a real cluster; the first check after 2 s saves ~1 min here.
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--verbose",  # logs the sbatch calls
        # Named: a bare --cache is not passed on to the Slurm jobs, and there (not in this process) the cache is used.
        "--cache",
        "pretrain",
    ]
    out = workdir / "snakemake.out"
    try:
        with open(out, "w") as f:
            proc = subprocess.run(
                cmd,
                cwd=workdir,
                env={**os.environ, "SNAKEMAKE_OUTPUT_CACHE": str(cache)},
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=SLURM_RUN_TIMEOUT,
            )
    except subprocess.TimeoutExpired:
        pytest.fail(f"snakemake --profile slurm did not finish in {SLURM_RUN_TIMEOUT} s; see {out}", pytrace=False)
    output = out.read_text()
    assert proc.returncode == 0, f"snakemake --profile slurm failed (full output: {out}):\n{output[-5000:]}"
    return workdir, cache, planned, output


@pytest.mark.slurm
def test_both_profiles_are_used(slurm_run):
    _, _, _, output = slurm_run
    assert re.search(r"Using profiles? slurm and workflow specific profile \S*profiles/default", output), output[:2000]


@pytest.mark.slurm
def test_every_job_ran_once_inside_a_slurm_job(slurm_run):
    workdir, _, planned, output = slurm_run
    assert len(planned) == 25  # 15 + evaluate_snapshots ×3, evaluate_ensemble, plot_snapshots, the 5 other plots
    logs = sorted((workdir / "logs/slurm").rglob("*.log"))
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", output)
    assert sorted(Path(p) for _, p in submitted) == logs
    assert sorted(int(p.stem) for p in logs) == sorted(int(i) for i, _ in submitted)  # <jobid>.log
    assert Counter(p.relative_to(workdir / "logs/slurm").parts[0] for p in logs) == EXPECTED_SLURM_JOBS

    # Inside each Slurm job, the jobstep executor runs the job(s) it was given with --target-jobs.
    ran = Counter()
    for log in logs:
        text = log.read_text()
        commands = [line for line in text.splitlines() if "Command:" in line and "--executor slurm-jobstep" in line]
        assert len(commands) == 1, f"{log}: {len(commands)} jobstep commands"
        targets = re.search(r"--target-jobs (.*?) --", commands[0]).group(1).split()
        # a single run's empty seed_dir wildcard (config seeds) is left out of job_name's spelling
        ran.update(re.sub(r"(?<=[:,])seed_dir=(,|$)", "", t).rstrip(":,") for t in targets)
        assert "Finished jobid" in text, log
    assert ran == Counter(planned)


@pytest.mark.slurm
def test_gpu_rules_asked_slurm_for_a_gpu(slurm_run):
    workdir, _, _, output = slurm_run
    calls = [shlex.split(line.split("sbatch call: ", 1)[1]) for line in output.splitlines() if "sbatch call: " in line]
    assert len(calls) == sum(EXPECTED_SLURM_JOBS.values())
    asked = {}
    for call in calls:
        rule = call[call.index("--comment") + 1].removeprefix("rule_").split("_wildcards_")[0]
        asked[rule] = asked.get(rule, set()) | {a for a in call if a.startswith("--gpus")}
    assert asked == {
        "data_index_toy": set(),
        "labels_entropy_pseudo_labels": set(),
        "summary": set(),
        **{rule: set() for rule in PLOT_RULES},
        **{rule: {"--gpus=1"} for rule in GPU_RULES},
    }


@pytest.mark.slurm
def test_pretrained_model_went_into_the_cache(slurm_run):
    workdir, cache, _, _ = slurm_run
    model = workdir / "results/tiny/pretrain/model.pt"
    assert model.is_symlink() and model.resolve().parent == cache.resolve()
    assert len(list(cache.iterdir())) == 3  # the model, its training curve and its one snapshot


@pytest.mark.slurm
def test_artifacts_equal_the_local_run(slurm_run, tiny_run):
    workdir, _, _, _ = slurm_run
    differences = compare_results(tiny_run / "results/tiny", workdir / "results/tiny")
    assert not differences, "Slurm and local runs differ:\n" + "\n".join(differences[:20])


# ----------------------------------------------------------------------------------------------------- preemption

# Pretraining long enough to be signalled mid-run (tens of iterations: a few seconds on 2 cores), with periodic
# states and two snapshots. Run to its model only.
PREEMPT = {**TINY, "pretrain": {**TINY["pretrain"], "iters": 30, "save_every": 10, "snapshot_every": 10}}
ITERS = PREEMPT["pretrain"]["iters"]
PRETRAIN, PRETRAIN_LOG = "results/tiny/pretrain/model.pt", "results/tiny/logs/pretrain.log"
PRETRAIN_OUTPUTS = [
    PRETRAIN,
    "results/tiny/pretrain/snapshots/iter_000010.pt",
    "results/tiny/pretrain/snapshots/iter_000020.pt",
]
PREEMPT_RUN_TIMEOUT = 900  # seconds; one or two pretraining attempts after the data job


@pytest.fixture(scope="module")
def preempt_reference(tmp_path_factory):
    """PREEMPT's pretraining run locally, uninterrupted (the same threads as in its Slurm job)."""
    workdir = tmp_path_factory.mktemp("preempt-local")
    write_config(workdir, PREEMPT)
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "--cores", str(TINY_CORES)]
    proc = subprocess.run([*cmd, PRETRAIN], cwd=workdir, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


def signalled_slurm_run(base: Path, moment: str):
    """PREEMPT's pretraining through `snakemake --profile slurm --retries 1`; its first attempt gets
    `scancel --signal=USR1` (every process of the job's steps, as Slurm's `--signal=USR1@secs` without `B:`) as soon as
    its log has a line starting with `moment`. Returns (workdir, the first attempt's log, the pretrain jobs' Slurm
    ids in submission order)."""
    require_slurm()
    workdir = base / "work"
    workdir.mkdir()
    write_config(workdir, PREEMPT)
    (workdir / "slurm").symlink_to(REPO / "slurm")
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "--profile", "slurm"]
    cmd += ["--slurm-init-seconds-before-status-checks", "2", "--retries", "1", "--verbose", PRETRAIN]
    out, log = workdir / "snakemake.out", workdir / PRETRAIN_LOG
    first, frozen, scancel = "", False, None
    with open(out, "w") as f:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + PREEMPT_RUN_TIMEOUT
        while proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"snakemake --profile slurm did not finish in {PREEMPT_RUN_TIMEOUT} s; see {out}")
            text = log.read_text() if log.exists() else ""
            if not frozen:  # the first attempt's log, until the retry (if any) rewrites the file
                frozen = not text.startswith(first)
                first = first if frozen else text
            if scancel is None and any(line.startswith(moment) for line in text.splitlines()):
                jobid = running_pretrain_job(workdir)
                steps = squeue("-s", "-j", jobid, "-o", "%i").split()  # the job's srun step: Snakemake, training
                scancel = subprocess.run(["scancel", "--signal=USR1", jobid], capture_output=True, text=True)
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = out.read_text()
    assert proc.returncode == 0, f"snakemake --profile slurm failed (full output: {out}):\n{output[-5000:]}"
    assert scancel is not None, f"the log never had a line starting with {moment!r}:\n{first}"
    assert scancel.returncode == 0, f"scancel: {scancel.stderr}"
    assert f"{jobid}.0" in steps, f"job {jobid} had no running step left to signal: {steps}"  # signalled too late
    jobids = [
        i
        for i, p in re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)", output)
        if "/rule_pretrain/" in p
    ]
    return workdir, first, jobids


def running_pretrain_job(workdir: Path) -> str:
    """The Slurm id of this workdir's running pretrain job (the queue may hold other runs' jobs)."""
    ids = [
        i
        for i, comment, cwd in (line.split("|", 2) for line in squeue("-t", "R", "-o", "%i|%k|%Z").splitlines())
        if comment.startswith("rule_pretrain") and Path(cwd).resolve() == workdir.resolve()
    ]
    assert len(ids) == 1, ids
    return ids[0]


def squeue(*args: str) -> str:
    return subprocess.run(["squeue", "-h", *args], capture_output=True, text=True, check=True).stdout


def assert_same_pretraining(reference: Path, workdir: Path) -> None:
    for rel in PRETRAIN_OUTPUTS:
        differences = compare_checkpoints(reference / rel, workdir / rel)
        assert not differences, f"{rel}: " + "; ".join(differences[:5])
    assert not (workdir / "results/tiny/resume").exists()  # the resumable state is gone after success


@pytest.mark.slurm
def test_a_job_signalled_during_training_resumes_on_its_retry(tmp_path, preempt_reference):
    """USR1 right after the first iteration: the training saves its state and exits 75, the job fails, Snakemake's
    retry resumes; the model and snapshots are bit-identical to the local uninterrupted run's."""
    workdir, first, jobids = signalled_slurm_run(tmp_path, "train 1/")
    stopped = re.search(rf"SIGUSR1: training stopped on request after iteration (\d+)/{ITERS}", first)
    assert stopped, f"the first attempt was not stopped mid-run:\n{first}"
    assert len(jobids) == 2, jobids
    final = (workdir / PRETRAIN_LOG).read_text()
    assert f"resuming from results/tiny/resume/pretrain/state.pt after iteration {stopped[1]}/{ITERS}" in final, final
    assert_same_pretraining(preempt_reference, workdir)


@pytest.mark.slurm
def test_a_job_signalled_after_training_succeeds_without_retraining(tmp_path, preempt_reference):
    """USR1 right after the last iteration (the outputs being written, or the training process or the job's Snakemake
    exiting): it stops, kills and fails nothing; the one attempt succeeds, bit-identical to the local run. (Before,
    the job's Snakemake died of it, the job failed, its model was deleted and the retry trained again.)"""
    workdir, first, jobids = signalled_slurm_run(tmp_path, "train done:")
    final = (workdir / PRETRAIN_LOG).read_text()
    assert len(jobids) == 1, f"{len(jobids)} pretrain jobs; the last attempt's log:\n{final}"
    assert final == first and final.count(f"train done: {ITERS} it") == 1 and "resuming" not in final, final
    assert f"wrote {PRETRAIN} and 2 snapshots" in final, final
    assert_same_pretraining(preempt_reference, workdir)


# ------------------------------------------------------------------------------------------------------ comparing


def artifacts(root: Path) -> list[str]:
    """Result files, without the logs (they hold times and hosts) and Snakemake's directory markers."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != "logs" and p.name != ".snakemake_timestamp"
    )


def compare_results(a: Path, b: Path) -> list[str]:
    """Every artifact compared exactly: same code, same data, same thread counts (each job's threads are the same in
    a Slurm job and in the local run), so even float arrays and weights are bitwise equal on the CPU. Provenance is
    compared by its parameters only (it also records times, and digests of inputs that hold times)."""
    diffs = []
    files = artifacts(a)
    if files != artifacts(b):
        return [f"file lists differ: {sorted(set(files) ^ set(artifacts(b)))}"]
    for rel in files:
        pa, pb = a / rel, b / rel
        if rel.endswith(".h5"):
            diffs += [f"{rel}: {d}" for d in compare_h5(pa, pb)]
        elif rel.endswith(".csv"):
            ta, tb = read_csv(pa), read_csv(pb)
            if rel.endswith("metrics.csv"):  # images/s is a measured speed; every other column must be equal
                ta, tb = ta.drop(columns="images_per_s"), tb.drop(columns="images_per_s")
            if not ta.equals(tb):
                detail = ta.compare(tb) if ta.shape == tb.shape else f"shapes {ta.shape} vs {tb.shape}"
                diffs.append(f"{rel}: tables differ\n{detail}")
            if read_provenance(pa)["config"] != read_provenance(pb)["config"]:
                diffs.append(f"{rel}: provenance parameters differ")
        elif rel.endswith(".pt"):
            diffs += [f"{rel}: {d}" for d in compare_checkpoints(pa, pb)]
        elif rel.endswith(".png"):
            # the training curves also draw images/s, a measured speed: their pixels differ from run to run
            diffs += [f"{rel}: {d}" for d in compare_png(pa, pb, pixels=not rel.endswith("plots/training.png"))]
        elif pa.read_bytes() != pb.read_bytes():
            diffs.append(f"{rel}: bytes differ")
    return diffs


def compare_png(pa: Path, pb: Path, pixels: bool = True) -> list[str]:
    """Pictures by their pixels (with `pixels`, else their size) and the parameters of their provenance (the plots
    carry it as a PNG text chunk, with the time they were made)."""
    from PIL import Image

    with Image.open(pa) as ia, Image.open(pb) as ib:
        ia.load()
        ib.load()
        diffs = []
        if pixels and (d := array_difference(np.asarray(ia), np.asarray(ib))) is not None:
            diffs.append(f"pixels: {d}")
        elif ia.size != ib.size:
            diffs.append(f"sizes {ia.size} vs {ib.size}")
        configs = [json.loads(i.text["provenance"])["config"] if "provenance" in i.text else None for i in (ia, ib)]
        if configs[0] != configs[1]:
            diffs.append("provenance parameters differ")
    return diffs


def array_difference(x, y) -> str | None:
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape or x.dtype != y.dtype:
        return f"{x.dtype}{x.shape} vs {y.dtype}{y.shape}"
    if np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
        return None
    if x.dtype.kind in "fiu":
        return f"max abs difference {np.nanmax(np.abs(x.astype(np.float64) - y.astype(np.float64)))}"
    return "values differ"


def compare_h5(pa: Path, pb: Path) -> list[str]:
    diffs = []
    with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
        if sorted(fa) != sorted(fb) or sorted(fa.attrs) != sorted(fb.attrs):
            return [f"datasets/attributes differ: {sorted(fa)} {sorted(fa.attrs)} vs {sorted(fb)} {sorted(fb.attrs)}"]
        for name in fa:
            if (d := array_difference(fa[name][()], fb[name][()])) is not None:
                diffs.append(f"dataset {name}: {d}")
        for name in fa.attrs:
            if name == "provenance":
                if json.loads(fa.attrs[name])["config"] != json.loads(fb.attrs[name])["config"]:
                    diffs.append("provenance parameters differ")
            elif (d := array_difference(fa.attrs[name], fb.attrs[name])) is not None:
                diffs.append(f"attribute {name}: {d}")
    return diffs


def compare_checkpoints(pa: Path, pb: Path) -> list[str]:
    ca, cb = (torch.load(p, map_location="cpu", weights_only=True) for p in (pa, pb))
    diffs = []
    if sorted(ca) != sorted(cb) or ca["model"] != cb["model"] or ca["num_classes"] != cb["num_classes"]:
        diffs.append("checkpoint keys or model settings differ")
    if ca["provenance"].get("config") != cb["provenance"].get("config"):
        diffs.append("provenance parameters differ")
    sa, sb = ca["state_dict"], cb["state_dict"]
    if list(sa) != list(sb):
        return diffs + ["state dict keys differ"]
    for key in sa:
        if not torch.equal(sa[key], sb[key]):
            diffs.append(f"weight {key}: max abs difference {(sa[key].double() - sb[key].double()).abs().max()}")
    return diffs


# -------------------------------------------------------------------------------------------------------- bad input

HIDE_SLURM_PLUGIN = """
import pkgutil, sys
real = pkgutil.iter_modules
pkgutil.iter_modules = lambda *a, **k: (m for m in real(*a, **k) if "executor_plugin_slurm" not in m.name)
sys.argv[0] = "snakemake"
from snakemake.cli import main
main()
"""


def test_slurm_profile_without_the_plugin_fails_with_one_clear_line(tmp_path):
    """Snakemake refuses `executor: slurm` while parsing the command line, before anything runs; the docs name the
    fix for this line (pip install snakemake-executor-plugin-slurm)."""
    write_config(tmp_path, TINY)
    (tmp_path / "slurm").symlink_to(REPO / "slurm")
    proc = subprocess.run(
        [sys.executable, "-c", HIDE_SLURM_PLUGIN, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml"]
        + ["--profile", "slurm"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("snakemake: error: argument --executor/-e: invalid choice: 'slurm'"), proc.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / ".snakemake").exists()
