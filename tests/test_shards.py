"""Sharded target inference: K shard files gathered are the unsharded file; K = 2 plans 2 shard jobs and a gather
(Snakemake's scatter-gather process `infer`: config infer.shards, or --set-scatter infer=K)."""

import subprocess
from contextlib import contextmanager

import h5py
import numpy as np
import pytest
import torch
from helpers import MEAN, NUM_CLASSES, SIZE, TINY_MODEL, write_split
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings
from test_workflow import REPO, SNAKEMAKE, TINY, job_name, planned_jobs, write_config

from esl.io.layouts import read_index
from esl.io.provenance import read_provenance
from esl.models.deeplabv2 import build_model
from esl.stages.infer import infer_logits
from esl.stages.shards import gather_h5, shard_slice


@pytest.mark.parametrize("n, batch", [(1, 1), (10, 4), (12, 4), (7, 1), (50, 16)])
def test_shards_cover_the_samples_in_order_with_whole_batches(n, batch):
    batches = -(-n // batch)
    for count in range(1, batches + 1):
        parts = [shard_slice(n, i, count, batch) for i in range(count)]
        assert [i for s in parts for i in range(n)[s]] == list(range(n))
        assert all(s.stop > s.start and s.start % batch == 0 for s in parts)
        sizes = [-(-(s.stop - s.start) // batch) for s in parts]  # batches per shard: as even as possible
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match=f"{batches + 1} shards but only {batches} batches"):
        shard_slice(n, 0, batches + 1, batch)


def read_all(path):
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in f}
        meta = {k: (f[k].dtype, f[k].shape, f[k].chunks) for k in f}
        attrs = {k: np.asarray(v).tolist() for k, v in f.attrs.items() if k != "provenance"}
    return data, meta, attrs


def test_gathered_shards_equal_the_unsharded_file(tmp_path):
    """10 images in batches of 4: 2 shards (1 + 2 batches) and 3 shards (a batch each)."""
    index = write_split(tmp_path / "target", 10, seed=4)
    samples = read_index(index)
    names = [s.name for s in samples]
    torch.manual_seed(0)
    model = build_model(NUM_CLASSES, **{k: v for k, v in TINY_MODEL.items() if k != "init"})
    common = dict(layout="trainids", size=list(SIZE), mean_bgr=MEAN, batch_size=4, device=torch.device("cpu"))
    infer_logits(model, samples, out_h5=tmp_path / "single.h5", prov={"run": "single"}, **common)
    single = read_all(tmp_path / "single.h5")
    assert list(single[0]) == ["logits", "names"] and single[0]["logits"].shape[0] == 10
    for count in (2, 3):
        shards = []
        for i in range(count):
            shards.append(tmp_path / f"m.shard{i}of{count}.h5")
            part = samples[shard_slice(len(samples), i, count, 4)]
            infer_logits(model, part, out_h5=shards[-1], prov={"shard": i}, **common)
        out = tmp_path / f"gathered{count}.h5"
        gather_h5(shards, out, {"run": "gathered"}, expected_names=names)
        gathered = read_all(out)
        assert gathered[1] == single[1]  # datasets, dtypes, shapes, chunks
        assert gathered[2] == single[2]  # attributes other than provenance
        for k in single[0]:
            assert np.array_equal(gathered[0][k], single[0][k]), (count, k)
        assert read_provenance(out) == {"run": "gathered"}

    with pytest.raises(ValueError, match="expected 10 in index order"):
        gather_h5(shards[::-1], tmp_path / "bad.h5", {}, expected_names=names)
    assert not (tmp_path / "bad.h5").exists()


def test_two_shards_plan_two_shard_jobs_and_a_gather_per_model(tmp_path):
    write_config(tmp_path, TINY)
    sharded = planned_jobs(tmp_path, {"infer": {"batch_size": 4, "shards": 2}})
    assert [j for j in sharded if j.startswith("infer")] == [
        "infer:model=pretrain,scatteritem=1-of-2",
        "infer:model=pretrain,scatteritem=2-of-2",
        "infer_gather:model=pretrain",
    ]
    unsharded = planned_jobs(tmp_path)
    assert [j for j in unsharded if j.startswith("infer")] == ["infer:model=pretrain"]
    assert [j for j in sharded if not j.startswith("infer")] == [j for j in unsharded if not j.startswith("infer")]


@contextmanager
def scattered(workdir, config=None, scatter=None):
    """The dry-run jobs (`rule:wildcards` -> job) of `workdir/config.yaml` + `config`, with --set-scatter `scatter`."""
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1, overwrite_scatter=scatter or {}),
            config_settings=ConfigSettings(configfiles=[workdir / "config.yaml"], config=config or {}),
            snakefile=REPO / "Snakefile",
            workdir=workdir,
        )
        wf.dag(DAGSettings()).execute_workflow(executor="dryrun")
        jobs = wf._workflow.dag.needrun_jobs(exclude_finished=False)
        yield {job_name(j): j for j in jobs if j.rule.name.startswith("infer")}


def test_shard_jobs_write_temporary_scatteritem_files_that_the_gather_reads_in_order(tmp_path):
    write_config(tmp_path, TINY)
    with scattered(tmp_path, {"infer": {"batch_size": 4, "shards": "3"}}) as jobs:  # nested --config: a string
        gather = jobs.pop("infer_gather:model=pretrain")
        shards = [f"results/tiny/infer/pretrain.{i}-of-3.h5" for i in (1, 2, 3)]
        assert list(gather.input.shards) == shards and list(gather.output) == ["results/tiny/infer/pretrain.h5"]
        assert list(gather.log) == ["results/tiny/logs/infer_pretrain_gather.log"] and gather.params.shards == 3
        assert sorted(jobs) == [f"infer:model=pretrain,scatteritem={i}-of-3" for i in (1, 2, 3)]
        for i, (_, job) in enumerate(sorted(jobs.items())):
            assert list(job.output) == [shards[i]] and job.output[0] in job.temp_output
            assert list(job.log) == [f"results/tiny/logs/infer_pretrain.{i + 1}-of-3.log"]
            assert job.params.shard == [i, 3]  # what workflow/scripts/infer.py reads
            assert job.resources["gpu"] == 1
    with scattered(tmp_path) as jobs:  # unsharded: the one job writes the final file; its params are unchanged
        (job,) = jobs.values()
        assert list(job.output) == ["results/tiny/infer/pretrain.h5"] and not job.temp_output
        assert list(job.log) == ["results/tiny/logs/infer_pretrain.log"] and job.resources["gpu"] == 1
        assert sorted(job.params.keys()) == ["amp", "batch_size", "num_workers", "target"]
    with scattered(tmp_path, {"infer": {"batch_size": 1, "shards": 11}}) as jobs:  # numeric order, not 1, 10, 11, 2
        gather = jobs["infer_gather:model=pretrain"]
        assert [str(p).split(".")[-2] for p in gather.input.shards] == [f"{i}-of-11" for i in range(1, 12)]


@pytest.mark.parametrize(
    "shards, scatter, expected",
    [(None, 3, 3), (2, 3, 3), (3, 1, 1), (2, None, 2)],
)
def test_set_scatter_overrides_the_configured_shard_count(tmp_path, shards, scatter, expected):
    config = {"infer": {"batch_size": 1} | ({"shards": shards} if shards else {})}
    write_config(tmp_path, TINY)
    with scattered(tmp_path, config, {"infer": scatter} if scatter else None) as jobs:
        if expected == 1:
            assert sorted(jobs) == ["infer:model=pretrain"]
        else:
            items = [f"infer:model=pretrain,scatteritem={i}-of-{expected}" for i in range(1, expected + 1)]
            assert sorted(jobs) == sorted([*items, "infer_gather:model=pretrain"])


def run_workflow(workdir, config, *args):
    write_config(workdir, config)
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "--cores", "2", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_sharded_workflow_inference_equals_the_unsharded_file(tmp_path):
    """6 target images in batches of 2: K = 3 (a batch each) and K = 2 (1 + 2 batches, from --set-scatter), through
    the workflow, gather to the unsharded run's file (provenance aside); the shard files are gone, their logs kept."""
    target = "results/tiny/infer/pretrain.h5"
    config = {**TINY, "infer": {"batch_size": 2}}
    run_workflow(tmp_path, config, target)
    single = read_all(tmp_path / target)
    assert single[0]["logits"].shape[0] == 6
    for k, args in ((3, ()), (2, ("--set-scatter", "infer=2"))):
        run_workflow(tmp_path, {**TINY, "infer": {"batch_size": 2, "shards": 3}}, target, "--forcerun", "infer", *args)
        gathered = read_all(tmp_path / target)
        assert gathered[1] == single[1] and gathered[2] == single[2]  # datasets, dtypes, shapes, chunks; attributes
        for name in single[0]:
            assert np.array_equal(gathered[0][name], single[0][name]), (k, name)
        assert read_provenance(tmp_path / target)["config"]["shards"] == k
        assert not list((tmp_path / "results/tiny/infer").glob("*-of-*"))  # temporary: deleted once gathered
        logs = tmp_path / "results/tiny/logs"
        assert [(logs / f"infer_pretrain.{i}-of-{k}.log").stat().st_size > 0 for i in range(1, k + 1)] == [True] * k
        assert f"gathered {k} shards: 6 images" in (logs / "infer_pretrain_gather.log").read_text()
