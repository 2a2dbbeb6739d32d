"""Snapshots (`*.snapshot_every`) and the three model choices: final, best (target-val mIoU, the reference's protocol)
and selected (label-free: the lowest target-train mean entropy)."""

import signal
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, SNAKEMAKE, TINY, dry_run, job_name, planned_jobs, write_config
from helpers import cli, run_here, train_spec, write_spec
from test_resume import finish, run_until, weights
from test_workflow import refused

from esl.io.tables import read_csv
from esl.stages.evaluate import snapshot_evaluator
from esl.stages.snapshots import choices_row, choose, evaluate_candidates, snapshot_iterations


@pytest.mark.parametrize(
    "iters, every, expected",
    [(300, 50, [50, 100, 150, 200, 250]), (2, 1, [1]), (7, 3, [3, 6]), (10, 0, []), (100, 100, []), (5, None, [])],
)
def test_snapshot_iterations_are_the_multiples_below_the_final_iteration(iters, every, expected):
    assert snapshot_iterations(iters, every) == expected


def test_snapshot_i_holds_the_model_after_i_iterations(tmp_path):
    """With the poly horizon fixed, snapshot iter_000002 of a 6-iteration run is the final model of a 2-iteration
    run (ADVENT's model_{i}.pth would hold i + 1 updates); the snapshots land beside model.pt and the staging folder
    beside the resumable state is gone."""
    common = {"poly_iters": 6, "log_interval": 0}
    long = train_spec(tmp_path, "pretrain", "long", iters=6, snapshot_every=2, **common)
    short = train_spec(tmp_path, "pretrain", "short", iters=2, **common)
    run_here(long)
    run_here(short)
    shots = sorted(p.name for p in (tmp_path / "long/snapshots").iterdir())
    assert shots == ["iter_000002.pt", "iter_000004.pt"]
    snap, final = weights(tmp_path / "long/snapshots/iter_000002.pt"), weights(tmp_path / "short/model.pt")
    assert snap.keys() == final.keys()
    assert all(torch.equal(snap[k], final[k]) for k in snap)
    payload = torch.load(tmp_path / "long/snapshots/iter_000004.pt", weights_only=True)
    assert payload["iteration"] == 4
    assert not any(torch.equal(snap[k], weights(tmp_path / "long/model.pt")[k]) for k in snap if "conv" in k)
    assert not (tmp_path / "long/resume").exists()


def test_snapshots_survive_preemption_and_match_an_uninterrupted_run(tmp_path):
    """SIGTERM after iteration 3 of 6: the snapshot of iteration 2 is kept beside the resumable state (not an output,
    so Snakemake cannot delete it); the resumed run's snapshots are bit-identical to an uninterrupted run's."""
    extra = {"iters": 6, "snapshot_every": 2, "save_every": 100, "log_interval": 0}
    ref = train_spec(tmp_path, "selftrain", "ref", **extra)
    run_here(ref)
    spec = train_spec(tmp_path, "selftrain", "run", **extra)
    path = write_spec(spec, tmp_path / "run.json")
    proc = cli(path)
    run_until(proc, 3)
    proc.send_signal(signal.SIGTERM)
    finish(proc)
    assert proc.returncode == 75
    staged = sorted(p.name for p in (tmp_path / "run/resume/snapshots").iterdir())
    assert staged[0] == "iter_000002.pt"
    assert not (tmp_path / "run/snapshots").exists()
    proc = cli(path)
    out = finish(proc)
    assert proc.returncode == 0, out
    for name in ("iter_000002.pt", "iter_000004.pt"):
        a, b = weights(tmp_path / "ref/snapshots" / name), weights(tmp_path / "run/snapshots" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert not (tmp_path / "run/resume").exists()


def table(miou, entropy, start=10, step=10):
    its = list(range(start, start + step * len(miou), step))
    return pd.DataFrame({"iteration": its, "mIoU": miou, "target_entropy": entropy})


def test_choices_by_hand():
    t = table([40.0, 45.5, 45.5, 44.0], [0.30, 0.20, 0.25, 0.20])
    assert choose(t, "final") == 40
    assert choose(t, "best") == 20  # the first maximum, as ADVENT's eval_best keeps it (strict <)
    assert choose(t, "selected") == 20  # the lowest entropy, the earliest on ties
    shuffled = t.sample(frac=1.0, random_state=0)
    assert (choose(shuffled, "final"), choose(shuffled, "best"), choose(shuffled, "selected")) == (40, 20, 20)
    row = choices_row(t.iloc[[0, 3]], {"mIoU": 44.0}, 40)
    assert row == {"mIoU_best": 44.0, "best_iter": 40.0, "mIoU_selected": 44.0, "selected_iter": 40.0}
    t13 = t.assign(**{"mIoU-13": [50.0, 51.0, 52.0, 49.0]})  # SYNTHIA: both means of the chosen snapshot
    row = choices_row(t13, {"mIoU": 44.0, "mIoU-13": 49.0}, 40)
    assert (row["mIoU-13_best"], row["mIoU-13_selected"]) == (51.0, 51.0)
    assert choices_row(None, {"mIoU": 33.3}, 300) == {
        "mIoU_best": 33.3,
        "best_iter": 300.0,
        "mIoU_selected": 33.3,
        "selected_iter": 300.0,
    }
    with pytest.raises(ValueError, match="evaluate.selection='maxprob'"):
        choose(t, "selected", "maxprob")


def test_each_snapshot_is_evaluated_once_and_cached(tmp_path):
    files = []
    for i in (1, 2, 3):
        f = tmp_path / f"iter_{i}.pt"
        f.write_bytes(bytes([i]) * 10)
        files.append(f)
    calls = []

    def evaluate(path):
        calls.append(path.name)
        return {"mIoU": 10.0 * len(calls), "target_entropy": 0.5}

    cands = list(zip((1, 2, 3), files))
    first = evaluate_candidates(cands, evaluate, tmp_path / "cache", {"batch_size": 4})
    assert calls == ["iter_1.pt", "iter_2.pt", "iter_3.pt"]
    assert list(first["iteration"]) == [1, 2, 3] and list(first["mIoU"]) == [10.0, 20.0, 30.0]
    again = evaluate_candidates(cands, evaluate, tmp_path / "cache", {"batch_size": 4})
    assert len(calls) == 3 and again.equals(first)
    files[1].write_bytes(b"a new snapshot")  # only the changed file is evaluated again
    evaluate_candidates(cands, evaluate, tmp_path / "cache", {"batch_size": 4})
    assert calls[3:] == ["iter_2.pt"]
    evaluate_candidates(cands, evaluate, tmp_path / "cache", {"batch_size": 8})  # other settings: all again
    assert calls[4:] == ["iter_1.pt", "iter_2.pt", "iter_3.pt"]


def test_a_snapshot_that_does_not_load_is_named(tmp_path):
    from helpers import domain_params, write_split

    index = write_split(tmp_path / "val", 2, seed=0)
    from esl.io.layouts import read_index

    samples = read_index(index)
    bad = tmp_path / "iter_000050.pt"
    bad.write_bytes(b"not a checkpoint")
    evaluate = snapshot_evaluator(samples, samples, target=domain_params(), batch_size=2, device="cpu")
    with pytest.raises(ValueError, match=r"iter_000050\.pt: not a readable checkpoint") as e:
        evaluate(bad)
    assert "\n" not in str(e.value) and "weights_only" not in str(e.value)


def test_the_workflow_summary_and_snapshot_tables(tiny_run):
    """The tiny run keeps a snapshot after iteration 1 of 2: each model's table has both rows, its final row equals
    the `evaluate` job's mIoU (two jobs, one number), and the summary's best/selected columns pick from it."""
    res = tiny_run / "results/tiny"
    summary = read_csv(res / "summary.csv").set_index("model")
    for model in ("pretrain", "esl_r1", "mpsl_r1"):
        shots = read_csv(res / f"eval/{model}_snapshots.csv")
        assert list(shots["iteration"]) == [1, 2]
        final = read_csv(res / f"eval/{model}.csv")
        assert shots["mIoU"].iloc[-1] == final.loc[final["class_name"] == "mIoU", "iou"].iloc[0]
        assert shots["target_entropy"].between(0, 1).all()
        row = summary.loc[model]
        assert row["mIoU_best"] == shots["mIoU"].max()
        assert row["best_iter"] == shots["iteration"][int(np.argmax(shots["mIoU"].to_numpy()))]
        assert row["selected_iter"] == shots["iteration"][int(np.argmin(shots["target_entropy"].to_numpy()))]
        assert row["mIoU_selected"] == shots.set_index("iteration").loc[row["selected_iter"], "mIoU"]
    assert (res / "plots/snapshots.png").stat().st_size > 1000


def tiny(**changes):
    """TINY with `section.key=value` changes."""
    config = yaml.safe_load(yaml.safe_dump(TINY))
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        config[section][key] = value
    return config


def test_pseudo_labels_from_selected_labels_with_the_chosen_snapshot(tmp_path):
    write_config(tmp_path, tiny(**{"pseudo_labels.from": "selected"}))
    with dry_run(tmp_path) as wf:
        jobs = {job_name(j): j for j in wf.dag.jobs}
        assert "select_model:model=pretrain,choice=selected" in jobs
        (infer,) = [j for j in wf.dag.jobs if j.rule.name == "infer"]
        assert str(infer.input.model) == "results/tiny/chosen/pretrain_selected.pt"
        (select,) = [j for j in wf.dag.jobs if j.rule.name == "select_model"]
        assert sorted(map(str, select.input.candidates)) == [
            "results/tiny/pretrain/model.pt",
            "results/tiny/pretrain/snapshots/iter_000001.pt",
        ]


def test_init_from_best_warns_that_target_labels_shape_training(tmp_path):
    config = tiny(**{"selftrain.init": "pretrained", "selftrain.init_from": "best"})
    write_config(tmp_path, config)
    with dry_run(tmp_path) as wf:
        (job,) = [j for j in wf.dag.jobs if j.rule.name == "selftrain" and j.wildcards.method == "esl"]
        assert str(job.input.init) == "results/tiny/chosen/pretrain_best.pt"
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "-n"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WARNING: pseudo_labels.from or selftrain.init_from is 'best'" in proc.stderr


def test_without_snapshots_no_snapshot_jobs(tmp_path):
    config = tiny()
    for stage in ("pretrain", "selftrain"):
        config[stage]["snapshot_every"] = 0
    config["pseudo_labels"]["from"] = "selected"  # nothing to choose from: the final model
    write_config(tmp_path, config)
    jobs = planned_jobs(tmp_path)
    assert not [j for j in jobs if j.startswith(("evaluate_snapshots", "select_model", "plot_snapshots"))]
    with dry_run(tmp_path) as wf:
        (infer,) = [j for j in wf.dag.jobs if j.rule.name == "infer"]
        assert str(infer.input.model) == "results/tiny/pretrain/model.pt"


@pytest.mark.parametrize(
    "ensembles, expected",
    [
        ([{"name": "e", "models": ["pretrain", "foo_r1"]}], "evaluate.ensembles[0].models: 'foo_r1' is neither"),
        ([{"name": "e", "models": ["pretrain", "esl_r1"], "weights": [1.0]}], "weights has 1 values for 2 models"),
        ([{"name": "esl_r1", "models": ["pretrain"]}], "evaluate.ensembles[0].name='esl_r1'"),
    ],
)
def test_bad_ensembles_are_refused_in_one_line(tmp_path, ensembles, expected):
    config = tiny(**{"evaluate.ensembles": ensembles})
    assert expected in refused(tmp_path, config)


def test_unknown_selection_is_refused_with_the_key_named(tmp_path):
    out = refused(tmp_path, tiny(**{"evaluate.selection": "maxprob"}))
    assert "maxprob" in out and "selection" in out


def test_published_snapshots_and_chosen_copies_share_no_inode_with_later_files(tmp_path):
    """Snakemake touches a job's outputs when it ends: an output hard-linked to an input (or to another output)
    would make that file look newer than what was made from it, and re-run the whole downstream every time."""
    from esl.stages.snapshots import copy_checkpoint, discard_staged, publish

    staged, dest = tmp_path / "resume/snapshots", tmp_path / "out/snapshots"
    staged.mkdir(parents=True)
    for i in (2, 4):
        (staged / f"iter_{i:06d}.pt").write_bytes(bytes([i]) * 100)
    publish(staged, dest, [2, 4])
    assert (staged / "iter_000002.pt").is_file()  # kept until the resumable state is gone
    discard_staged(staged)
    assert not staged.exists()
    assert [p.stat().st_nlink for p in sorted(dest.iterdir())] == [1, 1]
    assert (dest / "iter_000004.pt").read_bytes() == bytes([4]) * 100
    copy_checkpoint(dest / "iter_000002.pt", tmp_path / "chosen/x_selected.pt")
    assert (tmp_path / "chosen/x_selected.pt").stat().st_ino != (dest / "iter_000002.pt").stat().st_ino
    with pytest.raises(FileNotFoundError, match="iter_000006.pt; delete .*state.pt and .* to train again"):
        publish(staged, dest, [6], state=tmp_path / "resume/state.pt")


def test_the_data_digest_follows_the_split(tmp_path):
    """The per-snapshot cache is keyed on the evaluated data too (another split, root or file: evaluate again)."""
    from helpers import write_split

    from esl.io.layouts import read_index
    from esl.stages.snapshots import samples_digest

    index = write_split(tmp_path / "a", 3, seed=0)
    samples = read_index(index)
    first = samples_digest(samples)
    assert samples_digest(samples) == first and samples_digest(samples[:2]) != first
    with open(samples[0].label, "ab") as f:
        f.write(b"\0")  # a file that changed
    assert samples_digest(samples) != first


def test_the_data_digest_follows_the_index_fingerprint(tmp_path):
    """A label rewritten in place with the same size changes the index's fingerprint (its mtime), hence the digest."""
    import os

    from helpers import write_split

    from esl.io.layouts import fingerprint, read_index
    from esl.stages.snapshots import samples_digest

    index = write_split(tmp_path / "a", 3, seed=0)
    samples = read_index(index)
    root = tmp_path / "a"
    before = fingerprint("trainids", root, "train")
    label = samples[1].label
    st = os.stat(label)
    os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same bytes, same size, edited later
    after = fingerprint("trainids", root, "train")
    assert before != after
    assert samples_digest(samples, before) != samples_digest(samples, after)
    assert samples_digest(samples, before) == samples_digest(samples, before)
