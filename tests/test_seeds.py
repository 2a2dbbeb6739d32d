"""Seeds as an axis (config seeds): the aggregation against hand-computed means, stds and paired differences, the
planned layout (per-seed artifacts, shared index/toy, a given pretrained model shared), and a real two-seed tiny run
equal, seed by seed and bit for bit, to each seed run alone."""

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from esl.io.tables import read_csv
from esl.stages import seeds

sys.path.insert(0, str(Path(__file__).parent))
from conftest import REPO, SNAKEMAKE, TINY, dry_run, job_name, write_config  # noqa: E402
from test_paper_configs import prepare  # noqa: E402

# ---- aggregation -----------------------------------------------------------------------------------------------


def summary(rows) -> pd.DataFrame:
    """A summary.csv-like table: (model, mIoU, iou_road, pl_precision)."""
    return pd.DataFrame(rows, columns=["model", "mIoU", "iou_road", "pl_precision"])


def write(tmp_path, name, table):
    path = tmp_path / f"{name}.csv"
    path.write_text("# provenance: {}\n" + table.to_csv(index=False))
    return path


def test_aggregate_means_stds_and_paired_differences_by_hand(tmp_path):
    s0 = summary([["pretrain", 40.0, 80.0, None], ["esl_r1", 44.0, 82.0, 0.9], ["nolabels_r1", 45.0, 81.0, None]])
    s1 = summary([["pretrain", 42.0, 84.0, None], ["esl_r1", 43.0, 86.0, 0.7], ["nolabels_r1", 41.0, 83.0, None]])
    s2 = summary([["pretrain", 44.0, 82.0, None], ["esl_r1", 48.0, 84.0, 0.8], ["nolabels_r1", 46.0, 85.0, None]])
    paths = [write(tmp_path, f"s{i}", t) for i, t in enumerate((s0, s1, s2))]
    table = seeds.aggregate(seeds.read_summaries([0, 1, 2], paths)).set_index("model")
    assert list(table.index) == ["pretrain", "esl_r1", "nolabels_r1"]
    assert (table["n"] == 3).all()
    # esl_r1 mIoU 44, 43, 48: mean 45, sample std sqrt(((−1)² + (−2)² + 3²) / 2) = sqrt(7)
    assert table.loc["esl_r1", "mIoU_mean"] == pytest.approx(45.0)
    assert table.loc["esl_r1", "mIoU_std"] == pytest.approx(math.sqrt(7))
    assert table.loc["esl_r1", "iou_road_mean"] == pytest.approx(84.0)
    assert table.loc["esl_r1", "pl_precision_mean"] == pytest.approx(0.8)
    # paired against pretrain, seed by seed: 4, 1, 4 -> mean 3, std sqrt((1 + 4 + 1) / 2) = sqrt(3)
    assert table.loc["esl_r1", "mIoU_vs_pretrain_mean"] == pytest.approx(3.0)
    assert table.loc["esl_r1", "mIoU_vs_pretrain_std"] == pytest.approx(math.sqrt(3))
    # against the control of the same round: −1, 2, 2 -> mean 1, std sqrt((4 + 1 + 1) / 2) = sqrt(3)
    assert table.loc["esl_r1", "mIoU_vs_nolabels_mean"] == pytest.approx(1.0)
    assert table.loc["esl_r1", "mIoU_vs_nolabels_std"] == pytest.approx(math.sqrt(3))
    # no reference for pretrain itself, nor the control against itself
    assert np.isnan(table.loc["pretrain", "mIoU_vs_pretrain_mean"])
    assert np.isnan(table.loc["nolabels_r1", "mIoU_vs_nolabels_mean"])
    assert table.loc["nolabels_r1", "mIoU_vs_pretrain_mean"] == pytest.approx((5 - 1 + 2) / 3)


def test_one_seed_has_no_std_and_no_control_leaves_the_column_empty(tmp_path):
    path = write(tmp_path, "s", summary([["pretrain", 40.0, 80.0, None], ["esl_r2", 44.0, 82.0, 0.9]]))
    table = seeds.aggregate(seeds.read_summaries([7], [path])).set_index("model")
    assert table.loc["esl_r2", "n"] == 1 and table.loc["esl_r2", "mIoU_mean"] == 44.0
    assert np.isnan(table.loc["esl_r2", "mIoU_std"]) and np.isnan(table.loc["esl_r2", "mIoU_vs_nolabels_mean"])
    assert table.loc["esl_r2", "mIoU_vs_pretrain_mean"] == pytest.approx(4.0)


def test_an_ensemble_is_never_paired_with_the_control_whatever_its_name(tmp_path):
    rows = [["pretrain", 40.0, 80.0, None], ["my_ens_r1", 44.0, 82.0, None], ["nolabels_r1", 45.0, 81.0, None]]
    table = seeds.aggregate(seeds.read_summaries([0], [write(tmp_path, "s", summary(rows))]), ["my_ens_r1"])
    row = table.set_index("model").loc["my_ens_r1"]
    assert np.isnan(row["mIoU_vs_nolabels_mean"]) and row["mIoU_vs_pretrain_mean"] == pytest.approx(4.0)


def test_seeds_with_different_models_are_refused_naming_the_file(tmp_path):
    a = write(tmp_path, "a", summary([["pretrain", 40.0, 80.0, None], ["esl_r1", 44.0, 82.0, 0.9]]))
    b = write(tmp_path, "b", summary([["pretrain", 40.0, 80.0, None]]))
    with pytest.raises(ValueError, match=r"b\.csv: models \['pretrain'\] differ"):
        seeds.read_summaries([0, 1], [a, b])
    with pytest.raises(ValueError, match="distinct seeds"):
        seeds.Params(seeds=[1, 1])


# ---- planning --------------------------------------------------------------------------------------------------


def jobs_of(workdir, config=None):
    with dry_run(workdir, config) as wf:
        return {job_name(j): j for j in wf.dag.needrun_jobs(exclude_finished=False)}


def test_two_seeds_plan_every_seeded_stage_per_seed_and_share_the_data(tmp_path):
    write_config(tmp_path, TINY)
    jobs = jobs_of(tmp_path, {"seeds": [3, 7]})
    names = sorted(jobs)
    assert [n for n in names if n.startswith(("toy", "index"))] == [
        "index:split=source_train",
        "index:split=target_train",
        "index:split=target_val",
        "toy",
    ]
    for seed in (3, 7):
        pre = jobs[f"pretrain:seed_dir=seed{seed}/"]
        assert pre.params.train["seed"] == seed
        assert str(pre.output.model) == f"results/tiny/seed{seed}/pretrain/model.pt"
        st = jobs[f"selftrain:seed_dir=seed{seed}/,method=esl,k=1"]
        assert st.params.train["seed"] == seed
        assert f"results/tiny/seed{seed}/pseudo_labels/esl_r1.h5" in st.input
        assert f"evaluate_ensemble:seed_dir=seed{seed}/,ensemble=ens" in jobs
    assert "summary_seeds" in jobs and "plot_seeds" in jobs
    assert jobs["summary_seeds"].params.seeds == [3, 7]
    assert list(jobs["summary_seeds"].input) == ["results/tiny/seed3/summary.csv", "results/tiny/seed7/summary.csv"]
    # nothing but the data and the summary over the seeds at the top level
    shared = ("all", "toy", "index", "summary_seeds", "plot_seeds")
    assert [n for n in names if "seed_dir=seed" not in n and not n.startswith(shared)] == []


@pytest.mark.parametrize(
    "options, made_by",
    [
        ({"infer": {"batch_size": 4, "shards": 2}}, "infer_gather"),
        ({"pseudo_labels": {"from": "selected"}, "selftrain": {"rounds": 2}}, "select_model"),
        ({"selftrain": {"init": "pretrained", "init_from": "best"}}, "select_model"),
    ],
    ids=["shards", "pseudo-labels-from-selected", "init-from-best"],
)
def test_each_seeds_jobs_read_and_write_only_their_own_files_or_the_shared_index(tmp_path, options, made_by):
    """Sharded inference, pseudo-labels from a chosen snapshot, self-training started from the best pretrained
    snapshot: a seed's job never reads another seed's file (nor one at the top but the index), and trains with its
    seed; `made_by` is the rule the option brings in, planned per seed."""
    write_config(tmp_path, TINY)
    config = {key: {**TINY.get(key, {}), **value} for key, value in options.items()}
    jobs = jobs_of(tmp_path, {"seeds": [3, 7], **config})
    for seed in (3, 7):
        mine = {name: job for name, job in jobs.items() if f"seed_dir=seed{seed}/" in name}
        assert made_by in {job.rule.name for job in mine.values()}
        own = f"results/tiny/seed{seed}/"
        for name, job in mine.items():
            assert all(str(f).startswith(own) for f in job.output), (name, list(job.output))
            for path in map(str, job.input):
                assert path.startswith((own, "results/tiny/index/")), (name, path)
            if job.rule.name in ("pretrain", "selftrain"):
                assert job.params.train["seed"] == seed, name


def test_one_seed_keeps_the_single_run_paths_and_sets_the_stage_seeds(tmp_path):
    write_config(tmp_path, TINY)
    default, one = jobs_of(tmp_path), jobs_of(tmp_path, {"seeds": [5]})
    assert sorted(default) == sorted(one)  # the same jobs, named without seed_dir
    assert "summary_seeds" not in one
    assert str(one["pretrain"].output.model) == "results/tiny/pretrain/model.pt"
    assert one["pretrain"].params.train["seed"] == 5
    assert one["selftrain:method=esl,k=1"].params.train["seed"] == 5
    # without config seeds the sections' own seeds (here the schema's x-default: the key is absent)
    assert "seed" not in default["pretrain"].params.train


def test_one_seed_equal_to_the_default_seed_plans_the_params_of_no_seeds(tmp_path):
    """The tiny config leaves `seed` out, so the stages run with the schema's x-default, stated here: 1234.
    `seeds: [1234]` is then the same run, and must plan the same params (a changed param re-runs a finished stage)."""
    write_config(tmp_path, TINY)
    assert "seed" not in TINY["pretrain"] and "seed" not in TINY["selftrain"]
    default, same = jobs_of(tmp_path), jobs_of(tmp_path, {"seeds": [1234]})
    assert sorted(default) == sorted(same)
    for name in ("pretrain", "selftrain:method=esl,k=1", "selftrain:method=mpsl,k=1"):
        assert same[name].params.train == default[name].params.train, name
    other = jobs_of(tmp_path, {"seeds": [1235]})
    assert other["pretrain"].params.train == {**default["pretrain"].params.train, "seed": 1235}


def test_a_given_pretrained_model_and_what_is_made_from_it_are_shared_by_the_seeds(tmp_path):
    config = prepare("gta5_to_cityscapes", tmp_path, tiny=True)
    selftrain = {**config["selftrain"], "rounds": 2}
    jobs = jobs_of(tmp_path, {"seeds": [0, 1], "selftrain": selftrain})
    shared = ["pretrain", "infer:model=pretrain", "entropy:model=pretrain", "evaluate:model=pretrain"]
    shared += ["pseudo_labels:method=esl,k=1", "plot_entropy:model=pretrain", "plot_examples"]
    for name in shared:
        rule, _, wildcards = name.partition(":")
        assert name in jobs, name
        assert f"{rule}:seed_dir=seed0/" + (f",{wildcards}" if wildcards else "") not in jobs, name
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert jobs["pretrain"].params.train["seed"] == config["pretrain"]["seed"]  # untouched: no seed affects it
    for seed in (0, 1):
        st = jobs[f"selftrain:seed_dir=seed{seed}/,method=esl,k=1"]
        assert st.params.train["seed"] == seed
        assert "results/gta5_to_cityscapes/pseudo_labels/esl_r1.h5" in st.input
        assert f"summary:seed_dir=seed{seed}/" in jobs
        # round 2 is made from the seed's own round-1 model
        r2 = jobs[f"pseudo_labels:seed_dir=seed{seed}/,method=esl,k=2"]
        assert list(r2.input)[0] == f"results/gta5_to_cityscapes/seed{seed}/entropy/esl_r1.h5"
        assert (
            f"results/gta5_to_cityscapes/seed{seed}/selftrain/esl_r1/model.pt"
            in jobs[f"infer:seed_dir=seed{seed}/,model=esl_r1"].input
        )
    # a seed's copy of the shared model's artifacts is refused, naming where they are
    for target in ("eval/pretrain.csv", "pseudo_labels/esl_r1.h5", "export/pretrain_target_val.zip"):
        proc = snakemake(tmp_path, "-n", "--config", "seeds=[0,1]", "--", f"results/gta5_to_cityscapes/seed0/{target}")
        assert proc.returncode != 0, target
        assert "pretrain is shared by the seeds" in proc.stdout + proc.stderr, target


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)


def test_a_seeded_artifact_asked_for_at_the_top_is_refused_in_one_line(tmp_path):
    write_config(tmp_path, TINY)
    proc = snakemake(tmp_path, "-n", "--config", "seeds=[3,7]", "--", "results/tiny/selftrain/esl_r1/model.pt")
    assert proc.returncode != 0
    expected = "config seeds=[3, 7]: the seed-dependent artifacts are made under results/tiny/seed<s>/, not in"
    assert expected in proc.stdout + proc.stderr


# ---- a real two-seed run ---------------------------------------------------------------------------------------


def run_tiny(workdir: Path, config: dict) -> None:
    write_config(workdir, {**TINY, **config})
    proc = snakemake(workdir, "--cores", "2", "-q")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def body(path: Path) -> str:
    """A CSV's values as text, without its provenance line (it names the file's own inputs) and the throughput
    (metrics.csv's images_per_s: a timing)."""
    table = read_csv(path)
    return table.drop(columns=[c for c in table if c.endswith("_per_s")]).to_csv(index=False)


def tensors(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_two_seeds_in_one_call_equal_each_seed_run_alone(tmp_path):
    both, alone = tmp_path / "both", {s: tmp_path / f"alone{s}" for s in (3, 7)}
    for d in (both, *alone.values()):
        d.mkdir()
    run_tiny(both, {"seeds": [3, 7]})
    for seed, d in alone.items():  # alone: the stage seeds set by hand, no config seeds
        run_tiny(d, {stage: {**TINY[stage], "seed": seed} for stage in ("pretrain", "selftrain")})
    res = both / "results/tiny"
    for seed, d in alone.items():
        one, run = d / "results/tiny", res / f"seed{seed}"
        csvs = sorted(p.relative_to(one) for p in one.rglob("*.csv") if "index" not in p.parts)
        assert len(csvs) >= 10
        for rel in csvs:
            assert body(run / rel) == body(one / rel), rel
        for rel in ("pretrain/model.pt", "selftrain/esl_r1/model.pt", "selftrain/mpsl_r1/model.pt"):
            a, b = tensors(run / rel), tensors(one / rel)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), rel
    # the seeds differ from each other (the seed reached the training), and the summary over them is their mean
    s3, s7 = read_csv(res / "seed3/summary.csv"), read_csv(res / "seed7/summary.csv")
    assert not s3["mIoU"].equals(s7["mIoU"])
    agg = read_csv(res / "summary_seeds.csv").set_index("model")
    for i, model in enumerate(s3["model"]):
        assert agg.loc[model, "n"] == 2
        assert agg.loc[model, "mIoU_mean"] == pytest.approx((s3["mIoU"][i] + s7["mIoU"][i]) / 2)
        assert agg.loc[model, "mIoU_std"] == pytest.approx(abs(s3["mIoU"][i] - s7["mIoU"][i]) / math.sqrt(2))
    assert (res / "plots/seeds.png").stat().st_size > 0
    # the report tells the seeds' items apart (a `run` label) and holds the table and figure over the seeds
    proc = snakemake(both, "--report", "report.html")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    html = (both / "report.html").read_text()
    for name in ("summary_seeds.csv", "seeds.png", "seed3/summary.csv", "seed7/plots/miou.png"):
        assert name in html, name
    assert not (res / "pretrain").exists() and (res / "index/target_train.csv").exists()
