"""Evaluation outputs: class names per label space, mIoU-16 and mIoU-13 for SYNTHIA, and the summary columns; the
stage entry points (params as the rules give them, named files) of evaluate, evaluate_ensemble, summary,
select_model, plot_snapshots and index."""

import numpy as np
import pandas as pd
import pytest
import torch

from esl.io.labels import label_space
from esl.io.tables import read_csv, write_csv
from esl.stages.evaluate import iou_table
from esl.stages.summary import summarize

NAMES_19 = "road sidewalk building wall fence pole light sign vegetation terrain sky person rider car truck bus train"
NAMES_19 = NAMES_19.split() + ["motorcycle", "bicycle"]
NAMES_16 = [n for n in NAMES_19 if n not in ("terrain", "truck", "train")]


def random_confusion(c, seed):
    conf = np.random.default_rng(seed).integers(0, 50, (c, c))
    conf[2, :] = 0  # a class absent from the labels ...
    conf[:, 2] = 0  # ... and from the predictions: NaN, not counted
    return conf


def hand_iou(conf):
    out = []
    for k in range(len(conf)):
        tp = conf[k, k]
        union = conf[k, :].sum() + conf[:, k].sum() - tp
        out.append(np.nan if union == 0 else tp / union)
    return out


def test_19_classes_names_and_miou():
    conf = random_confusion(19, 0)
    table = iou_table(conf)
    assert list(table["class_name"][:19]) == NAMES_19
    assert list(table["class_name"][19:]) == ["mIoU"]
    iou = hand_iou(conf)
    assert np.isnan(table["iou"][2])
    expected = round(100 * np.mean([v for v in iou if not np.isnan(v)]), 2)
    assert table["iou"].iloc[-1] == expected


def test_16_classes_report_miou16_and_miou13():
    conf = random_confusion(16, 1)
    table = iou_table(conf)
    assert list(table["class_name"][:16]) == NAMES_16
    means = table[table["class_id"] < 0].set_index("class_name")["iou"]
    iou = dict(zip(NAMES_16, hand_iou(conf)))
    valid = {n: v for n, v in iou.items() if not np.isnan(v)}
    assert means["mIoU"] == round(100 * np.mean(list(valid.values())), 2)
    m13 = [v for n, v in valid.items() if n not in ("wall", "fence", "pole")]
    assert len(m13) == 12  # 13 minus the absent class
    assert means["mIoU-13"] == round(100 * np.mean(m13), 2)
    assert means["mIoU-13"] != means["mIoU"]
    assert list(label_space(16).names) == NAMES_16 and label_space(16).class_name(3) == NAMES_16[3]
    assert list(label_space(19).names) == NAMES_19


def test_summary_carries_miou13(tmp_path):
    for model, seed in (("pretrain", 2), ("esl_r1", 3)):
        write_csv(iou_table(random_confusion(16, seed)), tmp_path / f"{model}.csv", {})
    table = summarize(["pretrain", "esl_r1"], {m: tmp_path / f"{m}.csv" for m in ("pretrain", "esl_r1")}, {})
    assert list(table.columns[:3]) == ["model", "mIoU", "mIoU-13"]
    assert "iou_wall" in table.columns and "iou_terrain" not in table.columns
    ref = pd.read_csv(tmp_path / "esl_r1.csv", comment="#").set_index("class_name")["iou"]
    assert table.loc[1, "mIoU-13"] == ref["mIoU-13"]


def tiny_checkpoints(tmp_path, seeds):
    from helpers import NUM_CLASSES, TINY_MODEL

    from esl.models.checkpoints import save_checkpoint
    from esl.models.deeplabv2 import build_model

    kwargs = {k: v for k, v in TINY_MODEL.items() if k != "init"}
    paths = []
    for seed in seeds:
        torch.manual_seed(seed)
        paths.append(str(tmp_path / f"model{seed}.pt"))
        save_checkpoint(paths[-1], build_model(NUM_CLASSES, **kwargs), kwargs)
    return paths


def test_the_evaluation_rules_write_their_tables_through_one_path(tmp_path):
    """Rules evaluate and evaluate_ensemble (stage params as the rules give them): a one-member ensemble of weight 1
    writes the very table of `evaluate`, which is `iou_table(evaluate_model(...))`; the provenance records the rule's
    params; bad params are refused in one line."""
    from helpers import TINY_MODEL, domain_params, write_split

    from esl.io.layouts import read_index
    from esl.io.provenance import read_provenance
    from esl.models.checkpoints import load_checkpoint
    from esl.stages.evaluate import (
        EvaluateEnsembleParams,
        EvaluateParams,
        evaluate_ensemble,
        evaluate_model,
        run_evaluate,
        run_evaluate_ensemble,
    )

    index = str(write_split(tmp_path / "val", 3, seed=1))
    a, b = tiny_checkpoints(tmp_path, (0, 1))
    target = domain_params()
    given = {"target": target, "batch_size": 2}
    params = EvaluateParams.from_rule(given)
    assert params.as_dict() == given
    run_evaluate(params, {"model": a, "index": index}, [str(tmp_path / "a.csv")], device="cpu")
    kw = dict(layout="trainids", size=target["size"], mean_bgr=target["mean_bgr"], num_classes=3, batch_size=2)
    want = iou_table(evaluate_model(load_checkpoint(a)[0], read_index(index), **kw))
    pd.testing.assert_frame_equal(read_csv(tmp_path / "a.csv"), want, check_dtype=False)
    assert read_provenance(tmp_path / "a.csv")["config"] == given

    for weights, models in (([1.0], [a]), ([0.5, 1.0], [a, b])):
        ens = {"ensemble": {"models": ["m"] * len(models), "weights": weights}, "target": target}
        ens |= {"model": TINY_MODEL, "batch_size": 2}
        out = tmp_path / f"ens{len(models)}.csv"
        run_evaluate_ensemble(
            EvaluateEnsembleParams.from_rule(ens), {"models": models, "index": index}, [str(out)], device="cpu"
        )
        members = [(load_checkpoint(m)[0], w) for m, w in zip(models, weights)]
        want = iou_table(evaluate_ensemble(members, read_index(index), **kw))
        pd.testing.assert_frame_equal(read_csv(out), want, check_dtype=False)
        assert read_provenance(out)["config"] == ens
    assert (tmp_path / "ens1.csv").read_text().splitlines()[1:] == (tmp_path / "a.csv").read_text().splitlines()[1:]

    with pytest.raises(ValueError, match=r"config evaluate.batch_size=0 must be an integer >= 1"):
        EvaluateParams.from_rule({"target": target, "batch_size": 0})
    with pytest.raises(ValueError, match="needs one weight per model"):
        EvaluateEnsembleParams.from_rule({**ens, "ensemble": {"models": ["x", "y"], "weights": [1.0]}})


def test_summary_select_and_plot_stages(tmp_path):
    """Rules summary, select_model and plot_snapshots from their params and named files (dicts here, Snakemake's
    lists in the workflow): the summary matches eval tables to models by file name, select_model copies the chosen
    candidate, plot_snapshots writes a PNG."""
    from esl.io.provenance import read_provenance
    from esl.stages import report, snapshots, summary

    for model, seed in (("pretrain", 2), ("esl_r1", 3)):
        write_csv(iou_table(random_confusion(19, seed)), tmp_path / f"{model}.csv", {})
    shots = pd.DataFrame({"iteration": [10, 20, 30], "mIoU": [1.0, 3.0, 2.0], "target_entropy": [0.3, 0.25, 0.2]})
    write_csv(shots, tmp_path / "esl_r1_snapshots.csv", {})
    given = {"models": ["pretrain", "esl_r1"], "final_iters": {"pretrain": None, "esl_r1": 30}, "selection": "entropy"}
    inputs = {
        "evals": [str(tmp_path / "esl_r1.csv"), str(tmp_path / "pretrain.csv")],  # any order: matched by name
        "quality": [],
        "snapshots": [str(tmp_path / "esl_r1_snapshots.csv")],
    }
    summary.run(summary.Params.from_rule(given), inputs, [str(tmp_path / "summary.csv")])
    table = read_csv(tmp_path / "summary.csv").set_index("model")
    assert list(table.index) == ["pretrain", "esl_r1"] and table.loc["esl_r1", "best_iter"] == 20
    assert table.loc["esl_r1", "selected_iter"] == 30 and table.loc["esl_r1", "mIoU_best"] == 3.0
    assert read_provenance(tmp_path / "summary.csv")["config"] == given
    with pytest.raises(ValueError, match="config evaluate.selection='loss' is not one of entropy"):
        summary.Params.from_rule({**given, "selection": "loss"})

    candidates = []
    for i in (10, 20, 30):
        candidates.append(tmp_path / f"iter_{i}.pt")
        candidates[-1].write_bytes(f"checkpoint {i}".encode())
    for choice, want in (("best", 20), ("selected", 30)):
        params = snapshots.SelectModelParams.from_rule(
            {"choice": choice, "selection": "entropy", "iterations": [10, 20, 30]}
        )
        out = tmp_path / f"esl_r1_{choice}.pt"
        snapshots.run_select_model(params, {"table": inputs["snapshots"][0], "candidates": candidates}, [out])
        assert out.read_bytes() == f"checkpoint {want}".encode()
    with pytest.raises(ValueError, match="params choice='final' must be best or selected"):
        snapshots.SelectModelParams.from_rule({"choice": "final", "selection": "entropy", "iterations": []})

    plot = report.Params.from_rule({"models": ["esl_r1"], "selection": "entropy"})
    report.run(plot, {"snapshots": inputs["snapshots"]}, [str(tmp_path / "snapshots.png")])
    assert (tmp_path / "snapshots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_index_stage_lists_checks_and_writes_a_split(tmp_path):
    """Rule index: the split's samples in name order, with provenance of the rule's params; a bad class count or a
    dataset without its keys is refused in one line."""
    import io

    from helpers import write_split

    from esl.io.layouts import read_index
    from esl.io.provenance import read_provenance
    from esl.stages import index

    write_split(tmp_path / "data", 3, seed=0)
    given = {"dataset": {"layout": "trainids", "root": str(tmp_path / "data"), "split": "train", "list_file": None}}
    given["num_classes"] = 19
    log = io.StringIO()
    index.run(index.Params.from_rule(given), [], [str(tmp_path / "target_val.csv")], log=log)
    samples = read_index(tmp_path / "target_val.csv")
    assert [s.name for s in samples] == ["000", "001", "002"]
    assert read_provenance(tmp_path / "target_val.csv")["config"] == given
    assert log.getvalue().endswith(f"target_val: 3 samples from {tmp_path / 'data'} (trainids)\n")
    with pytest.raises(ValueError, match="num_classes must be in 1..255"):
        index.Params.from_rule({**given, "num_classes": 0})
    with pytest.raises(ValueError, match="rule index: params dataset lacks root, split"):
        index.Params.from_rule({**given, "dataset": {"layout": "trainids"}})
