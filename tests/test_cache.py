"""Cached pretraining (`--cache`, rule pretrain has `cache: "omit-software"`): experiments that differ only after
pretraining share one pretrained model; what pretraining depends on changes the cache key."""

import copy
import os
import subprocess

import pytest
from conftest import REPO, SNAKEMAKE, TINY, dry_run, write_config
from snakemake.caching.hash import ProvenanceHashMap

from esl.models.checkpoints import load_checkpoint


def variant(experiment: str, **changes) -> dict:
    """TINY under another experiment name, with `section.key=value` changes."""
    config = copy.deepcopy(TINY)
    config["experiment"] = experiment
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        node = config
        for part in path:
            node = node[part]
        node[key] = value
    return config


def pretrain_cache_key(workdir, config: dict) -> str:
    """The between-workflow cache key Snakemake computes for the pretrain job of `config` (a dry run; nothing runs)."""
    workdir.mkdir()
    write_config(workdir, config)
    with dry_run(workdir) as workflow:
        (job,) = [j for j in workflow.dag.jobs if j.rule.name == "pretrain"]
        assert job.rule.cache and job.rule.cache.output and job.rule.cache.omit_software
        return workflow.async_run(ProvenanceHashMap().get_provenance_hash(job))


def run_to_pretrained_model(workdir, config: dict, cache) -> subprocess.CompletedProcess:
    workdir.mkdir()
    write_config(workdir, config)
    target = f"results/{config['experiment']}/pretrain/model.pt"
    return subprocess.run(
        [
            *SNAKEMAKE,
            "-s",
            str(REPO / "Snakefile"),
            "--configfile",
            "config.yaml",
            "--cores",
            "2",
            target,
            "--cache",
            "pretrain",
        ],
        cwd=workdir,
        env={**os.environ, "SNAKEMAKE_OUTPUT_CACHE": str(cache)},
        capture_output=True,
        text=True,
    )


def test_second_experiment_takes_the_pretrained_model_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    first = variant("first")
    second = variant(
        "second", **{"pseudo_labels.esl.floor": 0.3, "pseudo_labels.methods": ["esl"], "selftrain.rounds": 2}
    )

    proc = run_to_pretrained_model(tmp_path / "a", first, cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model_a = tmp_path / "a/results/first/pretrain/model.pt"
    assert (tmp_path / "a/results/first/logs/pretrain.log").stat().st_size > 0  # it trained
    assert model_a.is_symlink() and model_a.resolve().parent == cache.resolve()  # moved into the cache

    proc = run_to_pretrained_model(tmp_path / "b", second, cache)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model_b = tmp_path / "b/results/second/pretrain/model.pt"
    log_b = tmp_path / "b/results/second/logs/pretrain.log"
    assert not log_b.exists() or log_b.stat().st_size == 0  # no training (Snakemake may touch the log file)
    assert model_b.is_symlink() and model_b.resolve() == model_a.resolve()
    # one cache entry: the model, its training curve and its snapshot (pretrain.snapshot_every: 1) under one key
    names = sorted(p.name for p in cache.iterdir())
    assert len({n.split("_")[0] for n in names}) == 1
    assert [n.split("_", 1)[1] for n in names] == ["metrics.csv", "model.pt", "snapshot_000001.pt"]
    snap_b = tmp_path / "b/results/second/pretrain/snapshots/iter_000001.pt"
    assert snap_b.is_symlink() and snap_b.resolve().parent == cache.resolve()
    load_checkpoint(model_b, num_classes=TINY["data"]["num_classes"])

    # The inputs of pretraining differ between the two workdirs (index CSVs carry a provenance line with the time they
    # were written), yet the key matches: for inputs made by upstream jobs Snakemake hashes those jobs' code and params.
    index = "index/source_train.csv"
    assert (tmp_path / f"a/results/first/{index}").read_bytes() != (tmp_path / f"b/results/second/{index}").read_bytes()


@pytest.fixture(scope="module")
def tiny_cache_key(tmp_path_factory):
    return pretrain_cache_key(tmp_path_factory.mktemp("key") / "tiny", TINY)


@pytest.mark.parametrize(
    "changes, shared",
    [
        ({"pseudo_labels.esl.floor": 0.3, "pseudo_labels.methods": ["esl"], "selftrain.iters": 5}, True),
        ({"entropy.pictures": 0, "infer.batch_size": 2, "evaluate.batch_size": 1}, True),
        ({"pretrain.iters": 3}, False),
        ({"pretrain.lr": 0.02}, False),
        ({"model.width": 8}, False),
        ({"toy.seed": 1}, False),  # other source images
        ({"data.source.size": [16, 32]}, False),
    ],
)
def test_cache_key_follows_what_pretraining_depends_on(tmp_path, tiny_cache_key, changes, shared):
    assert (pretrain_cache_key(tmp_path / "other", variant("other", **changes)) == tiny_cache_key) is shared
