"""The workflow end to end on a tiny toy config, and what re-runs after a change (Snakemake's Python API)."""

import subprocess

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, SNAKEMAKE, TINY, dry_run, job_name, planned_jobs, write_config  # noqa: F401 - re-exported for other tests

from esl.io.provenance import read_provenance
from esl.io.tables import read_csv
from esl.models.adapters import adapter_params, build_adapter


def test_end_to_end_artifacts_and_layouts(tiny_run):
    res = tiny_run / "results/tiny"
    summary = read_csv(res / "summary.csv")
    assert list(summary["model"]) == ["pretrain", "esl_r1", "mpsl_r1", "ens"]  # values: the two tests below

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


def read_table(path) -> pd.DataFrame:
    """A results CSV read with pandas alone (its first line is `# provenance: ...`)."""
    return pd.read_csv(path, comment="#")


def test_the_summary_holds_the_eval_and_quality_values(tiny_run):
    """Every summary value is the one of its source file: mIoU and per-class IoU from eval/{model}.csv, pl_precision
    and pl_coverage from the `all` row of pseudo_labels/{model}_quality.csv (NaN for pretrain and the ensemble)."""
    res = tiny_run / "results/tiny"
    summary = read_table(res / "summary.csv").set_index("model")
    assert list(summary.index) == ["pretrain", "esl_r1", "mpsl_r1", "ens"]
    for model in summary.index:
        ev = read_table(res / f"eval/{model}.csv").set_index("class_name")
        assert summary.loc[model, "mIoU"] == ev.loc["mIoU", "iou"], model
        per_class = ev[ev["class_id"] >= 0]
        assert len(per_class) == 19
        got = summary.loc[model, [f"iou_{name}" for name in per_class.index]].to_numpy(float)
        np.testing.assert_array_equal(got, per_class["iou"].to_numpy(float), err_msg=model)
        # the eval file's IoUs are its own counts': 100·tp / (tp + fp + fn), 2 decimals; NaN for absent classes
        tp, union = per_class["tp"].to_numpy(float), per_class[["tp", "fp", "fn"]].to_numpy(float).sum(1)
        with np.errstate(invalid="ignore"):
            np.testing.assert_allclose(per_class["iou"], np.round(100 * tp / union, 2), atol=1e-9)
        if model in ("esl_r1", "mpsl_r1"):
            q = read_table(res / f"pseudo_labels/{model}_quality.csv").set_index("class_name")
            assert summary.loc[model, "pl_precision"] == q.loc["all", "precision"], model
            assert summary.loc[model, "pl_coverage"] == q.loc["all", "coverage"], model
        else:
            assert np.isnan(summary.loc[model, "pl_precision"]) and np.isnan(summary.loc[model, "pl_coverage"])


def test_pseudo_labels_thresholds_and_quality_by_hand(tiny_run):
    """The round-1 pseudo-label files recomputed with NumPy from the pretrained model's entropy file: per class c of
    the argmax, t_c = x[min(round(n/2), n−1)] of its sorted values (entropy for esl, max-prob for mpsl; 0 when
    n = 0), then max(t, 0.1) / min(t, 0.9) in float32; kept pixels are entropy <= t / max-prob >= t. The quality's
    `all` row against the target-train ground truth: precision = correct / kept, coverage = kept / labelled."""
    from esl.io.images import read_label

    res = tiny_run / "results/tiny"
    with h5py.File(res / "entropy/pretrain.h5") as f:
        argmax, entropy, max_prob = f["label"][()], f["entropy"][()], f["max_prob"][()]
        names = [n.decode() for n in f["names"][()]]
    index = read_table(res / "index/target_train.csv").set_index("name")
    gt = np.stack([read_label("trainids", str(tiny_run / index.loc[n, "label"]), (32, 64), 19) for n in names])
    valid = gt != 255
    for method, values, post, keep in (
        ("esl", entropy, lambda t: np.maximum(t, np.float32(0.1)), lambda v, t: v <= t),
        ("mpsl", max_prob, lambda t: np.minimum(t, np.float32(0.9)), lambda v, t: v >= t),
    ):
        t = np.zeros(19, np.float32)
        for c in range(19):
            x = np.sort(values[argmax == c])
            if x.size:
                t[c] = x[min(int(np.round(x.size / 2)), x.size - 1)]
        t = post(t)
        expected = np.where(keep(values, t[argmax]), argmax, 255).astype(np.uint8)
        with h5py.File(res / f"pseudo_labels/{method}_r1.h5") as f:
            np.testing.assert_array_equal(f.attrs["thresholds"], t.astype(np.float64), err_msg=method)
            np.testing.assert_array_equal(f["label"][()], expected, err_msg=method)
            assert [n.decode() for n in f["names"][()]] == names
        thr = read_table(res / f"pseudo_labels/{method}_r1_thresholds.csv")
        # written as float32 text (shortest round-trip repr): read back as float32, the very same values
        np.testing.assert_array_equal(thr["threshold"].to_numpy().astype(np.float32), t)
        np.testing.assert_array_equal(thr["n_pixels"], np.bincount(argmax.ravel(), minlength=19))
        np.testing.assert_array_equal(thr["n_kept"], np.bincount(expected[expected != 255], minlength=19)[:19])
        kept = valid & (expected != 255)
        q = read_table(res / f"pseudo_labels/{method}_r1_quality.csv").set_index("class_name")
        assert q.loc["all", "n_kept"] == kept.sum() and q.loc["all", "n_gt"] == valid.sum()
        assert q.loc["all", "precision"] == pytest.approx((kept & (expected == gt)).sum() / kept.sum(), rel=1e-12)
        assert q.loc["all", "coverage"] == pytest.approx(kept.sum() / valid.sum(), rel=1e-12)


def test_nothing_to_do_after_a_full_run(tiny_run):
    assert planned_jobs(tiny_run) == []


def test_changing_the_esl_floor_reruns_only_esl_downstream(tiny_run):
    config = {"pseudo_labels": {"methods": ["esl", "mpsl"], "esl": {"floor": 0.3}, "mpsl": {"cap": 0.9}}}
    assert planned_jobs(tiny_run, config) == [
        "evaluate:model=esl_r1",
        "evaluate_ensemble:ensemble=ens",  # pretrain + esl_r1
        "evaluate_snapshots:model=esl_r1",
        "plot_entropy:model=pretrain",  # draws ESL's thresholds
        "plot_examples",
        "plot_iou",
        "plot_pseudo_labels",
        "plot_snapshots",
        "plot_training",
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
        "plot_entropy:model=pretrain",
        "plot_examples",
        "plot_iou",
        "plot_pseudo_labels",
        "plot_snapshots",
        "plot_training",
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
    # what esl.stages.train builds from the job's params: discriminators 19 -> 16 -> 32 -> 64 -> 128 -> 1
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
    "toy.design",
    "toy.design.source_rgb",
    "toy.design.target_priors",
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
    config["toy"]["design"] = {"fog": 0.1, "source_rgb": {"road": [90, 90, 90]}, "target_priors": {"cars": 1.0}}
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


def planned(workdir, config: dict, configfile: str = "config.yaml") -> dict:
    """The jobs a dry run of `config` (written to workdir/config.yaml) plans, by name, with their DAG."""
    write_config(workdir, config)
    with dry_run(workdir, configfile=configfile) as workflow:
        jobs = {job_name(j): j for j in workflow.dag.needrun_jobs(exclude_finished=False)}
        deps = {name: sorted(job_name(d) for d in workflow.dag.dependencies[job]) for name, job in jobs.items()}
    return {name: (list(map(str, job.input)), deps[name]) for name, job in jobs.items()}


def test_round_two_pseudo_labels_come_from_the_round_one_model(tmp_path):
    """selftrain.rounds = 2: round 2's pseudo-labels are made from the entropy maps of round 1's model of the same
    method (inferred from its checkpoint), round 1's from the pretrained model's; round 2 trains on them."""
    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["selftrain"]["rounds"] = 2
    jobs = planned(tmp_path, config)
    res = "results/tiny"
    for method in ("esl", "mpsl"):
        inputs, deps = jobs[f"pseudo_labels:method={method},k=2"]
        assert inputs == [f"{res}/entropy/{method}_r1.h5", f"{res}/index/target_train.csv"]
        assert f"entropy:model={method}_r1" in deps
        inputs, deps = jobs[f"entropy:model={method}_r1"]
        assert inputs[0] == f"{res}/infer/{method}_r1.h5" and f"infer:model={method}_r1" in deps
        inputs, deps = jobs[f"infer:model={method}_r1"]
        assert inputs[0] == f"{res}/selftrain/{method}_r1/model.pt" and f"selftrain:method={method},k=1" in deps
        inputs, _ = jobs[f"pseudo_labels:method={method},k=1"]
        assert inputs[0] == f"{res}/entropy/pretrain.h5"
        inputs, deps = jobs[f"selftrain:method={method},k=2"]
        assert f"{res}/pseudo_labels/{method}_r2.h5" in inputs and f"pseudo_labels:method={method},k=2" in deps
    # nothing reads round 2's entropy: infer and entropy run for pretrain and the round-1 models only
    assert sorted(n for n in jobs if n.startswith("infer:")) == [
        "infer:model=esl_r1",
        "infer:model=mpsl_r1",
        "infer:model=pretrain",
    ]
    assert "evaluate:model=esl_r2" in jobs and "evaluate:model=mpsl_r2" in jobs


def test_init_pretrained_starts_self_training_from_the_pretrained_model(tmp_path):
    """selftrain.init: pretrained (the toy default's setting) makes the pretrained model an input of every
    self-training job; same_as_pretrain (TINY's) does not."""
    config = yaml.safe_load(yaml.safe_dump(TINY))
    assert config["selftrain"]["init"] == "same_as_pretrain"
    fresh = planned(tmp_path, config)
    config["selftrain"]["init"] = "pretrained"
    tuned = planned(tmp_path, config)
    for method in ("esl", "mpsl"):
        name = f"selftrain:method={method},k=1"
        assert "results/tiny/pretrain/model.pt" in tuned[name][0] and "pretrain" in tuned[name][1]
        assert "results/tiny/pretrain/model.pt" not in fresh[name][0] and "pretrain" not in fresh[name][1]


def test_the_shipped_config_plans_what_its_values_imply(tmp_path):
    """config/config.yaml as it is, no overrides: the planned jobs per rule, counted from the config's own values."""
    shipped = yaml.safe_load((REPO / "config/config.yaml").read_text())
    write_config(tmp_path, {})  # unused: the dry run reads the shipped file
    with dry_run(tmp_path, configfile=str(REPO / "config/config.yaml")) as workflow:
        jobs = list(workflow.dag.needrun_jobs(exclude_finished=False))
        selftrain_inputs = [list(map(str, j.input)) for j in jobs if j.rule.name == "selftrain"]
    counts = {}
    for job in jobs:
        counts[job.rule.name] = counts.get(job.rule.name, 0) + 1
    methods, rounds = shipped["pseudo_labels"]["methods"], shipped["selftrain"]["rounds"]
    models = 1 + len(methods) * rounds

    def keeps_snapshots(section):
        every = section.get("snapshot_every") or 0
        return 0 < every < section["iters"]

    with_snapshots = keeps_snapshots(shipped["pretrain"]) + len(methods) * rounds * keeps_snapshots(
        shipped["selftrain"]
    )
    assert shipped.get("infer", {}).get("shards", 1) == 1  # else infer_gather jobs too
    assert shipped["pseudo_labels"].get("from", "final") == shipped["selftrain"].get("init_from", "final") == "final"
    expected = {
        "all": 1,
        "toy": 1 if shipped.get("toy") else 0,
        "index": 3,  # source_train, target_train, target_val
        "pretrain": 1,
        "infer": 1 + len(methods) * (rounds - 1),  # the models that pseudo-labels are made from
        "entropy": 1 + len(methods) * (rounds - 1),
        "pseudo_labels": len(methods) * rounds,
        "selftrain": len(methods) * rounds,
        "evaluate": models,
        "evaluate_snapshots": with_snapshots,
        "evaluate_ensemble": len(shipped["evaluate"].get("ensembles") or []),
        "plot_snapshots": 1 if with_snapshots else 0,
        "plot_iou": 1,
        "plot_pseudo_labels": 1,
        "plot_entropy": 1 + len(methods) * (rounds - 1),  # one per entropy file
        "plot_examples": 1,
        "plot_training": 1,
        "summary": 1,
    }
    assert counts == {rule: n for rule, n in expected.items() if n}
    assert len(jobs) == sum(expected.values())
    if shipped["selftrain"]["init"] == "pretrained":
        assert all(f"results/{shipped['experiment']}/pretrain/model.pt" in inputs for inputs in selftrain_inputs)


def copy_of_run(tiny_run, dest):
    """A copy of the finished tiny run (the shared one stays untouched); mtimes are kept, so nothing is to be done."""
    import shutil

    shutil.copytree(tiny_run, dest, symlinks=True)
    assert planned_jobs(dest) == []
    return dest


def test_an_edited_dataset_file_reindexes_its_split_and_reruns_what_follows(tiny_run, tmp_path):
    """The dataset is part of the workflow's state (the index rule's param `fingerprint`): a target-val label edited
    after the run re-indexes target-val and re-evaluates every model, and re-runs nothing that does not read it."""
    import cv2

    work = copy_of_run(tiny_run, tmp_path / "run")
    label = work / "data/toy/target/val/labels/target_val_0001.png"
    values = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    values[:4, :4] = 255  # a corrected label: a few pixels set to ignore
    assert cv2.imwrite(str(label), values)
    jobs = planned_jobs(work)
    assert "index:split=target_val" in jobs
    assert {f"evaluate:model={m}" for m in ("pretrain", "esl_r1", "mpsl_r1")} <= set(jobs) and "summary" in jobs
    spared = ("toy", "index:split=source", "index:split=target_train", "pretrain", "infer", "selftrain", "pseudo_")
    assert not [j for j in jobs if j.startswith(spared)], jobs


def test_a_deleted_image_reindexes_its_split_instead_of_failing_later(tiny_run, tmp_path):
    """An image deleted after indexing: its split is re-indexed (the index log then counts the label left without
    its image) and the stages that read the split re-run, rather than one of them failing on `image not found`."""
    work = copy_of_run(tiny_run, tmp_path / "run")
    (work / "data/toy/target/train/images/target_train_0003.png").unlink()
    jobs = planned_jobs(work)
    assert {"index:split=target_train", "infer:model=pretrain", "selftrain:method=esl,k=1"} <= set(jobs)
    assert not [j for j in jobs if j.startswith(("toy", "index:split=source", "index:split=target_val", "pretrain:"))]


def test_a_dataset_outside_the_toy_is_fingerprinted_by_its_files(tmp_path):
    """Real data (no `toy` section): the index's param is the fingerprint of the split's files, taken at planning."""
    from esl.io.layouts import fingerprint
    from esl.toy import generate_toy

    toy = dict(TINY["toy"])
    generate_toy(tmp_path / "data/real", **{k: v for k, v in toy.items() if k != "root"})
    config = {k: v for k, v in TINY.items() if k != "toy"}
    config["data"] = dict(TINY["data"])
    config["data"]["source"] = {**TINY["data"]["source"], "root": "data/real/source"}
    config["data"]["target"] = {**TINY["data"]["target"], "root": "data/real/target"}
    write_config(tmp_path, config)
    with dry_run(tmp_path) as workflow:
        index = {j.wildcards["split"]: j.params.fingerprint for j in workflow.dag.jobs if j.rule.name == "index"}
    root = tmp_path / "data/real"
    assert index == {
        "source_train": fingerprint("trainids", root / "source", "train"),
        "target_train": fingerprint("trainids", root / "target", "train"),
        "target_val": fingerprint("trainids", root / "target", "val"),
    }
    assert index["target_val"] != fingerprint("trainids", root / "target", "val", manifest=root / "manifest.csv")
