"""The workflow end to end on a tiny toy config, and what re-runs after a change (Snakemake's Python API)."""

import subprocess

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, SNAKEMAKE, TINY, dry_run, job_name, planned_jobs, write_config  # noqa: F401 - re-exported for other tests

from esl.adapt import adapter_params, build_adapter
from esl.h5io import read_csv, read_provenance


def test_end_to_end_artifacts_and_layouts(tiny_run):
    res = tiny_run / "results/tiny"
    summary = read_csv(res / "summary.csv")
    assert list(summary["model"]) == ["pretrain", "esl_r1", "mpsl_r1", "ens"]
    assert summary["mIoU"].between(0, 100).all()
    assert np.isnan(summary.loc[0, "pl_precision"]) and summary.loc[1:2, "pl_precision"].notna().all()

    with h5py.File(res / "infer/pretrain.h5") as f:
        assert f["logits"].dtype == np.float16 and f["logits"].shape == (6, 19, 5, 9)
        assert f["logits"].chunks == (1, 19, 5, 9)
        names = [n.decode() for n in f["names"][()]]
    with h5py.File(res / "entropy/pretrain.h5") as f:
        assert f["label"].dtype == np.uint8 and f["label"].shape == (6, 32, 64)
        assert f["entropy"].shape == f["max_prob"].shape == (6, 32, 64)
        assert [n.decode() for n in f["names"][()]] == names
        assert not np.isnan(f["entropy"][()]).any()
    for method in ("esl", "mpsl"):
        with h5py.File(res / f"pseudo_labels/{method}_r1.h5") as f:
            assert f.attrs["method"] == method and f.attrs["thresholds"].shape == (19,)
            assert f["label"].dtype == np.uint8 and f["label"].shape == (6, 32, 64)
        thresholds = read_csv(res / f"pseudo_labels/{method}_r1_thresholds.csv")
        assert len(thresholds) == 19
    assert len(list((res / "entropy/pretrain_pictures").glob("*.png"))) == 2
    prov = read_provenance(res / "pseudo_labels/esl_r1.h5")
    assert prov["config"]["params"] == {"floor": 0.1}
    assert "results/tiny/entropy/pretrain.h5" in prov["inputs"]
    assert not list(res.rglob("*.tmp-*"))
    assert not (res / "resume").exists()  # the training jobs' resumable states and their folder go after success
    for log in (res / "logs").iterdir():
        assert log.stat().st_size > 0, log


def test_nothing_to_do_after_a_full_run(tiny_run):
    assert planned_jobs(tiny_run) == []


def test_changing_the_esl_floor_reruns_only_esl_downstream(tiny_run):
    config = {"pseudo_labels": {"methods": ["esl", "mpsl"], "esl": {"floor": 0.3}, "mpsl": {"cap": 0.9}}}
    assert planned_jobs(tiny_run, config) == [
        "evaluate:model=esl_r1",
        "evaluate_ensemble:ensemble=ens",  # pretrain + esl_r1
        "evaluate_snapshots:model=esl_r1",
        "plot_snapshots",
        "pseudo_labels:method=esl,k=1",
        "selftrain:method=esl,k=1",
        "summary",
    ]


def test_forcerun_entropy_spares_inference_and_pretraining(tiny_run):
    jobs = planned_jobs(tiny_run, forcerun=["entropy"])
    assert jobs == [
        "entropy:model=pretrain",
        "evaluate:model=esl_r1",
        "evaluate:model=mpsl_r1",
        "evaluate_ensemble:ensemble=ens",
        "evaluate_snapshots:model=esl_r1",
        "evaluate_snapshots:model=mpsl_r1",
        "plot_snapshots",
        "pseudo_labels:method=esl,k=1",
        "pseudo_labels:method=mpsl,k=1",
        "selftrain:method=esl,k=1",
        "selftrain:method=mpsl,k=1",
        "summary",
    ]


def refused(tmp_path, config) -> str:
    """Snakemake's output for a dry run of `config`, which must fail."""
    write_config(tmp_path, config)
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "-n"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    return proc.stdout + proc.stderr


def test_bad_config_value_is_refused_with_the_key_named(tmp_path):
    bad = yaml.safe_load(yaml.safe_dump(TINY))
    bad["pseudo_labels"]["esl"]["floor"] = 1.5
    out = refused(tmp_path, bad)
    assert "floor" in out and "1.5" in out


def test_envs_match_setup_cfg():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    required = sorted(x.strip() for x in cfg["options"]["install_requires"].strip().splitlines())
    env = yaml.safe_load((REPO / "envs/esl.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(pip) == required


def test_unselected_method_sections_are_optional(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["pseudo_labels"] = {"methods": ["mpsl"]}  # no esl/mpsl sections: the paper's values apply
    del config["evaluate"]["ensembles"]  # TINY's ensemble names esl_r1
    write_config(tmp_path, config)
    with dry_run(tmp_path) as workflow:
        jobs = {job_name(j): j for j in workflow.dag.needrun_jobs(exclude_finished=False)}
    assert "pseudo_labels:method=mpsl,k=1" in jobs
    assert not any("esl" in name for name in jobs)
    assert jobs["pseudo_labels:method=mpsl,k=1"].params.params == {"cap": 0.9}


def test_advent_discriminator_width_reaches_the_pretrain_job(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["pretrain"].update(method="advent", adapt={"ndf": 16})
    write_config(tmp_path, config)
    with dry_run(tmp_path) as workflow:
        jobs = {job_name(j): j for j in workflow.dag.needrun_jobs(exclude_finished=False)}
    train = jobs["pretrain"].params.train
    assert train["adapt"] == {"ndf": 16}
    # what esl.train_cli builds from the job's params: discriminators 19 -> 16 -> 32 -> 64 -> 128 -> 1
    adapter = build_adapter("advent", adapter_params(train, [32, 64], [32, 64]), 19, "cpu")
    widths = [m.out_channels for m in adapter.discriminators["main"].modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [16, 32, 64, 128, 1]
    config["pretrain"]["adapt"]["ndf"] = 0
    assert "ndf" in refused(tmp_path, config)


def test_nolabels_control_is_planned_like_a_method(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["pseudo_labels"]["methods"] = ["esl", "nolabels"]
    write_config(tmp_path, config)
    with dry_run(tmp_path) as workflow:
        jobs = {job_name(j): j for j in workflow.dag.needrun_jobs(exclude_finished=False)}
    for name in ("pseudo_labels:method=nolabels,k=1", "selftrain:method=nolabels,k=1", "evaluate:model=nolabels_r1"):
        assert name in jobs, name
    assert jobs["pseudo_labels:method=nolabels,k=1"].params.params == {}
    assert not any("mpsl" in name for name in jobs)


TYPO_SECTIONS = [
    "toy",
    "data",
    "data.source",
    "data.target",
    "model",
    "pretrain",
    "pretrain.adapt",
    "infer",
    "entropy",
    "pseudo_labels",
    "pseudo_labels.esl",
    "selftrain",
    "evaluate",
    "evaluate.ensembles.0",
]


@pytest.mark.parametrize("section", TYPO_SECTIONS)
def test_a_misspelt_key_is_refused_in_every_section(section):
    """`save_evry`-style typos used to be ignored in pretrain/selftrain (the user's setting silently unused)."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["pretrain"]["adapt"] = {"ndf": 16}
    node = config
    for part in section.split("."):
        node = node[int(part)] if part.isdigit() else node[part]
    node["misspelt_kee"] = 1
    with pytest.raises(WorkflowError, match="misspelt_kee"):
        validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))
    del node["misspelt_kee"]
    validate(config, str(REPO / "workflow/schemas/config.schema.yaml"))  # the same config without it is fine


def reverse_keys(value):
    if isinstance(value, dict):
        return {k: reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reverse_keys(v) for v in value]
    return value


def test_the_same_values_in_another_key_order_rerun_nothing(tiny_run):
    """Every rule's params are canonical (dicts with sorted keys): reordering the config file changes no job."""
    text = yaml.safe_dump(reverse_keys(TINY), sort_keys=False)
    assert text != yaml.safe_dump(TINY, sort_keys=False)
    (tiny_run / "reordered.yaml").write_text(text)
    assert planned_jobs(tiny_run, configfile="reordered.yaml") == []


def test_a_refused_value_is_one_line_naming_its_key(tmp_path):
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["pretrain"]["save_evry"] = 5
    out = refused(tmp_path, config)
    assert "config pretrain: Unevaluated properties are not allowed ('save_evry' was unexpected)" in out
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["evaluate"]["selection"] = "maxprob"
    assert "config evaluate.selection: 'maxprob' is not one of ['entropy']" in refused(tmp_path, config)


def test_nested_command_line_values_are_converted_to_the_schema_types(tmp_path):
    """Snakemake hands nested --config values in as strings ('0.2'); they become the numbers the schema asks for."""
    write_config(tmp_path, TINY)
    override = 'pseudo_labels={"methods": ["esl"], "esl": {"floor": 0.2}}'
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "-n", "--config", override],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with dry_run(tmp_path, {"pseudo_labels": {"methods": ["esl"], "esl": {"floor": "0.2"}}}) as wf:
        (job,) = [j for j in wf.dag.jobs if j.rule.name == "pseudo_labels"]
        assert job.params.params == {"floor": 0.2}
