"""Shared by the workflow tests: the tiny toy config, its one local run, dry-run planning, and the `slurm` marker.

Tests marked `slurm` need a running Slurm (scripts/slurm/start.sh). They are deselected (not skipped) unless
ESL_SLURM=1 is set, as .ci/run does, or a marker expression is given (`pytest -m slurm`); when selected they fail,
never skip, if Slurm is not there.

Tests marked `cuda` (the "cuda" variant of `DEVICES`) need a GPU: without one (torch.cuda.is_available() is False)
they are collected and skipped, and the report header says how many did not run.
"""

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import yaml
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

TINY = {
    "experiment": "tiny",
    "toy": {
        "root": "data/toy",
        "seed": 0,
        "height": 32,
        "width": 64,
        "n_source": 8,
        "n_target_train": 6,
        "n_target_val": 4,
        "shift": 1.0,
    },
    "data": {
        "num_classes": 19,
        "mean_bgr": [104.0, 117.0, 123.0],
        "source": {"layout": "trainids", "root": "data/toy/source", "split": "train", "size": [32, 64]},
        "target": {
            "layout": "trainids",
            "root": "data/toy/target",
            "train_split": "train",
            "val_split": "val",
            "size": [32, 64],
        },
    },
    "model": {"layers": [1, 1, 1, 1], "width": 4, "init": None},
    "pretrain": {
        "method": "source_only",
        "checkpoint": None,
        "iters": 2,
        "batch_size": 2,
        "lr": 0.01,
        "save_every": 1,  # a resumable state is saved mid-run, then removed with its folder at the end
        "snapshot_every": 1,  # a snapshot after iteration 1, evaluated with the final model
    },
    "infer": {"batch_size": 4},
    "entropy": {"size": None, "pictures": 2},
    "pseudo_labels": {"methods": ["esl", "mpsl"], "esl": {"floor": 0.1}, "mpsl": {"cap": 0.9}},
    "selftrain": {
        "rounds": 1,
        "init": "same_as_pretrain",
        "iters": 2,
        "batch_size": 2,
        "lr": 0.01,
        "save_every": 1,
        "snapshot_every": 1,
    },
    "evaluate": {
        "batch_size": 4,
        # ADVENT-style ensemble: a row of its own in the summary
        "ensembles": [{"name": "ens", "models": ["pretrain", "esl_r1"], "weights": [0.5, 1.0]}],
    },
}

# The local run's core count; the Slurm test relies on it to get the same thread counts (hence identical floats).
TINY_CORES = 2


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def job_name(job) -> str:
    """`rule:key=value,...` (no colon without wildcards), as Snakemake's --target-jobs spells a job; the `seed_dir`
    wildcard (config seeds) only where it is set, so a single run's jobs read as they always did."""
    items = [(k, v) for k, v in job.wildcards.items() if k != "seed_dir" or v]
    return f"{job.rule.name}:{','.join(f'{k}={v}' for k, v in items)}".rstrip(":")


@contextmanager
def dry_run(workdir: Path, config: dict | None = None, forcerun=(), configfile: str = "config.yaml"):
    """The Snakemake workflow of `workdir/config.yaml` (overridden by `config`) after a dry run: DAG, jobs, params."""
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[workdir / configfile], config=config or {}),
            snakefile=REPO / "Snakefile",
            workdir=workdir,
        )
        wf.dag(DAGSettings(forcerun=set(forcerun))).execute_workflow(executor="dryrun")
        yield wf._workflow


def planned_jobs(workdir: Path, config: dict | None = None, forcerun=(), configfile: str = "config.yaml") -> list[str]:
    """Jobs a dry run would execute, as `rule:wildcards`."""
    with dry_run(workdir, config, forcerun, configfile) as workflow:
        jobs = workflow.dag.needrun_jobs(exclude_finished=False)
        return sorted(job_name(j) for j in jobs if j.rule.name != "all")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny config run once locally to the summary (shared by the workflow and Slurm tests)."""
    workdir = tmp_path_factory.mktemp("tiny")
    write_config(workdir, TINY)
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "--cores", str(TINY_CORES), "-q"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


# The devices a test runs on: the CPU always, CUDA as a `cuda`-marked variant (skipped, and counted in the report
# header, where there is no GPU).
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
CUDA = torch.cuda.is_available()


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped where torch.cuda.is_available() is False)")


def pytest_collection_modifyitems(config, items):
    if not CUDA:
        skip = pytest.mark.skip(reason="CUDA not available (torch.cuda.is_available() is False)")
        for item in items:
            if item.get_closest_marker("cuda"):
                item.add_marker(skip)
    if os.environ.get("ESL_SLURM") == "1" or config.getoption("markexpr"):
        return
    deselected = [item for item in items if item.get_closest_marker("slurm")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("slurm")]


def pytest_report_header(config):
    lines = []
    if not (os.environ.get("ESL_SLURM") == "1" or config.getoption("markexpr")):
        lines.append("slurm tests: deselected (start Slurm with scripts/slurm/start.sh, then ESL_SLURM=1 or -m slurm)")
    if not CUDA:
        lines.append("CUDA: not available (torch.cuda.is_available() is False): the tests marked cuda are skipped")
    return lines


def pytest_report_collectionfinish(config, start_path, items):
    """After the collection, in the header: how many CUDA tests will not run here."""
    if CUDA:
        return []
    n = sum(1 for item in items if item.get_closest_marker("cuda"))
    return [f"CUDA: not available, {n} CUDA tests not run (skipped)"]
