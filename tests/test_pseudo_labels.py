import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from esl.io.h5 import STRING, read_names
from esl.io.provenance import read_provenance
from esl.io.tables import read_csv
from esl.ops.ranks import StreamingRank
from esl.ops.thresholds import METHODS, apply_thresholds, method_params
from esl.stages.pseudo_labels import QUALITY_COLUMNS, THRESHOLD_COLUMNS, compute_thresholds, pseudo_labels_h5

C = 5


def write_entropy(path, label, entropy, max_prob, names):
    n, h, w = label.shape
    with h5py.File(path, "w") as f:
        f.create_dataset("label", data=label.astype(np.uint8), chunks=(1, h, w))
        f.create_dataset("entropy", data=entropy.astype(np.float32), chunks=(1, h, w))
        f.create_dataset("max_prob", data=max_prob.astype(np.float32), chunks=(1, h, w))
        f.create_dataset("names", data=np.array(names, dtype=object), dtype=STRING)
        f.attrs["provenance"] = json.dumps({})


def brute_force_thresholds(label, values, num_classes, method, params):
    """Plain-sort reference of the ESL/MPSL rules (float32 post-processing, as the reference's float32 arrays)."""
    t = np.zeros(num_classes, np.float32)
    for c in range(num_classes):
        x = np.sort(values[label == c].astype(np.float32))
        if x.size:
            t[c] = x[min(int(round(0.5 * x.size)), x.size - 1)]  # Python round is half-to-even too
    if method == "esl":
        t = np.maximum(t, np.float32(params.get("floor", 0.1)))
    else:
        t = np.minimum(t, np.float32(params.get("cap", 0.9)))
    return t


def synthetic(rng, n=7, h=6, w=8, ties=True):
    label = rng.integers(0, C - 1, size=(n, h, w)).astype(np.uint8)  # class C-1 never predicted
    entropy = rng.random((n, h, w), dtype=np.float32)
    max_prob = rng.random((n, h, w), dtype=np.float32)
    if ties:
        entropy[rng.random((n, h, w)) < 0.3] = np.float32(0.25)
        max_prob[rng.random((n, h, w)) < 0.3] = np.float32(0.75)
        entropy[0, 0, :3] = 0.0
    return label, entropy, max_prob


def test_apply_thresholds_ties_and_ignore():
    label = np.array([[0, 0, 1, 1, 2]], np.uint8)
    values = np.float32([[0.2, 0.3, 0.5, 0.4, 0.1]])
    t = np.float32([0.2, 0.5, 0.05])
    np.testing.assert_array_equal(apply_thresholds(label, values, t, "le"), [[0, 255, 1, 1, 255]])
    np.testing.assert_array_equal(apply_thresholds(label, values, t, "ge"), [[0, 0, 1, 255, 2]])
    assert apply_thresholds(label, values, t).dtype == np.uint8
    # labels without a threshold are ignored
    np.testing.assert_array_equal(apply_thresholds(np.uint8([7]), np.float32([0.0]), t, "le"), [255])
    with pytest.raises(ValueError):
        apply_thresholds(label, values, t, "lt")


def test_esl_floor_and_mpsl_cap_small_case(tmp_path):
    # class 0: entropies [0.01, 0.02, 0.05, 0.08] -> x[round(2)] = 0.05 -> floor lifts it to 0.1: all four kept
    # class 1: entropies [0.3, 0.6, 0.9, 0.95]    -> x[2] = 0.9: 0.95 dropped, 0.9 kept (tie, <=)
    # class 2: entropies [0.4, 0.7]               -> x[1] = 0.7: both kept
    label = np.uint8([[[0, 0, 0, 0, 1, 1, 1, 1, 2, 2]]])
    entropy = np.float32([[[0.01, 0.02, 0.05, 0.08, 0.3, 0.6, 0.9, 0.95, 0.4, 0.7]]])
    # max-probs: class 0 [0.99, 0.95, 0.97, 0.91] -> x[2] = 0.97 -> capped at 0.9: all kept
    #            class 1 [0.5, 0.6, 0.4, 0.45] -> sorted [0.4, 0.45, 0.5, 0.6], x[2] = 0.5: keeps 0.5 (tie) and 0.6
    #            class 2 [0.8, 0.3] -> x[1] = 0.8: keeps 0.8
    max_prob = np.float32([[[0.99, 0.95, 0.97, 0.91, 0.5, 0.6, 0.4, 0.45, 0.8, 0.3]]])
    ent_h5 = tmp_path / "e.h5"
    write_entropy(ent_h5, label, entropy, max_prob, ["x"])

    t, counts = compute_thresholds(ent_h5, "esl", {}, 3)
    np.testing.assert_array_equal(t, np.float32([0.1, 0.9, 0.7]))
    np.testing.assert_array_equal(counts, [4, 4, 2])
    t, _ = compute_thresholds(ent_h5, "mpsl", {}, 3)
    np.testing.assert_array_equal(t, np.float32([0.9, 0.5, 0.8]))

    outs = {}
    for method in ("esl", "mpsl"):
        out = tmp_path / f"{method}.h5"
        pseudo_labels_h5(
            ent_h5,
            out,
            method=method,
            params={},
            prov={"m": method},
            gt_labels=None,
            quality_csv=tmp_path / f"{method}_q.csv",
            thresholds_csv=tmp_path / f"{method}_t.csv",
            num_classes=3,
        )
        with h5py.File(out, "r") as f:
            outs[method] = f["label"][0, 0]
    np.testing.assert_array_equal(outs["esl"], [0, 0, 0, 0, 1, 1, 1, 255, 2, 2])
    np.testing.assert_array_equal(outs["mpsl"], [0, 0, 0, 0, 1, 1, 255, 255, 2, 255])


def test_floor_is_float32_and_inclusive(tmp_path):
    # a pixel whose entropy is exactly float32(0.1) is kept by the floored threshold
    label = np.uint8([[[0, 0, 0]]])
    entropy = np.float32([[[0.0, 0.0, 0.1]]])
    ent_h5 = tmp_path / "e.h5"
    write_entropy(ent_h5, label, entropy, entropy, ["x"])
    res = pseudo_labels_h5(
        ent_h5,
        tmp_path / "p.h5",
        method="esl",
        params={"floor": 0.1},
        prov={},
        gt_labels=None,
        quality_csv=tmp_path / "q.csv",
        thresholds_csv=tmp_path / "t.csv",
        num_classes=2,
    )
    assert res["thresholds"][0] == np.float32(0.1)
    with h5py.File(tmp_path / "p.h5", "r") as f:
        np.testing.assert_array_equal(f["label"][0, 0], [0, 0, 0])


def test_nolabels_control_keeps_nothing(tmp_path):
    """The control's file: every pixel 255, NaN thresholds, pixel counts per predicted class, precision NaN and
    coverage 0 against ground truth."""
    rng = np.random.default_rng(3)
    label, entropy, max_prob = synthetic(rng, n=5)
    names = [f"img{i}" for i in range(len(label))]
    ent_h5 = tmp_path / "e.h5"
    write_entropy(ent_h5, label, entropy, max_prob, names)
    gt = {name: label[i] for i, name in enumerate(names)}  # ground truth = the argmax: any kept pixel would be right
    res = pseudo_labels_h5(
        ent_h5,
        tmp_path / "p.h5",
        method="nolabels",
        params=None,
        prov={},
        gt_labels=gt.get,
        quality_csv=tmp_path / "q.csv",
        thresholds_csv=tmp_path / "t.csv",
        num_classes=C,
        chunk_images=2,
    )
    with h5py.File(tmp_path / "p.h5", "r") as f:
        assert f["label"].shape == label.shape and (f["label"][()] == 255).all()
        assert f.attrs["method"] == "nolabels" and np.isnan(f.attrs["thresholds"]).all()
    want_counts = [(label == c).sum() for c in range(C)]
    np.testing.assert_array_equal(res["counts"], want_counts)
    thr = read_csv(tmp_path / "t.csv")
    np.testing.assert_array_equal(thr["n_pixels"], want_counts)
    assert (thr["n_kept"] == 0).all() and thr["threshold"].isna().all()
    q = read_csv(tmp_path / "q.csv").set_index("class_id")
    assert q.loc[-1, "n_kept"] == 0 and q.loc[-1, "n_gt"] == label.size and q.loc[-1, "coverage"] == 0.0
    assert q["precision"].isna().all()
    np.testing.assert_array_equal(apply_thresholds(label, entropy, np.zeros(C, np.float32), "none"), 255 + 0 * label)
    # with the entropy stage's pass-1 histograms in the file, the counts come from them (no pass over the maps)
    first = StreamingRank(C)
    first.add(entropy, label)
    with h5py.File(ent_h5, "a") as f:
        f["pass1_entropy"] = first.hist_hi
        del f["label"]  # would be needed to count again
        f.create_dataset("label", data=np.zeros_like(label))
    thresholds, counts = compute_thresholds(ent_h5, "nolabels", None, C)
    np.testing.assert_array_equal(counts, want_counts)
    assert np.isnan(thresholds).all()


def test_method_table():
    assert set(METHODS) >= {"esl", "mpsl"}
    assert method_params("esl", None) == {"q": 0.5, "floor": 0.1}
    assert method_params("mpsl", {"cap": 0.8}) == {"q": 0.5, "cap": 0.8}
    with pytest.raises(ValueError):
        method_params("esl", {"cap": 0.8})
    with pytest.raises(ValueError):
        method_params("nope", {})


@pytest.mark.parametrize("method", ["esl", "mpsl"])
def test_h5_to_h5_vs_brute_force(tmp_path, method):
    rng = np.random.default_rng(0 if method == "esl" else 1)
    label, entropy, max_prob = synthetic(rng)
    names = [f"img{i}" for i in range(label.shape[0])]
    ent_h5 = tmp_path / "entropy.h5"
    write_entropy(ent_h5, label, entropy, max_prob, names)
    gt = rng.integers(0, C, size=label.shape).astype(np.uint8)
    agree = rng.random(label.shape) < 0.6
    gt[agree] = label[agree]
    gt[rng.random(label.shape) < 0.15] = 255
    gt_of = dict(zip(names, gt))

    params = {"floor": 0.3} if method == "esl" else {"cap": 0.6}
    out = tmp_path / "pl" / f"{method}_r1.h5"
    q_csv, t_csv = tmp_path / "pl" / "q.csv", tmp_path / "pl" / "t.csv"
    prov = {"config": {"method": method, "params": params}, "config_hash": "h"}
    pseudo_labels_h5(
        ent_h5,
        out,
        method=method,
        params=params,
        prov=prov,
        gt_labels=gt_of.__getitem__,
        quality_csv=q_csv,
        thresholds_csv=t_csv,
        num_classes=C,
        chunk_images=3,
    )

    values = entropy if method == "esl" else max_prob
    t = brute_force_thresholds(label, values, C, method, params)
    keep = values <= t[label] if method == "esl" else values >= t[label]
    want = np.where(keep, label, 255).astype(np.uint8)

    with h5py.File(out, "r") as f:
        assert set(f.keys()) == {"label", "names"}
        d = f["label"]
        assert d.dtype == np.uint8 and d.shape == label.shape and d.chunks == (1,) + label.shape[1:]
        np.testing.assert_array_equal(d[()], want)
        assert read_names(f) == names
        assert f.attrs["method"] == method
        thr = f.attrs["thresholds"]
        assert thr.dtype == np.float64 and thr.shape == (C,)
        np.testing.assert_array_equal(thr, t.astype(np.float64))
    assert read_provenance(out) == prov
    assert read_provenance(q_csv) == prov and read_provenance(t_csv) == prov
    assert sorted(os.listdir(out.parent)) == sorted([out.name, "q.csv", "t.csv"])  # no temp leftovers

    tdf = read_csv(t_csv)
    assert list(tdf.columns) == THRESHOLD_COLUMNS
    np.testing.assert_array_equal(tdf["class_id"], np.arange(C))
    assert list(tdf["class_name"]) == [f"class{i}" for i in range(C)]  # no known label space has 5 classes
    np.testing.assert_array_equal(tdf["n_pixels"], np.bincount(label.ravel(), minlength=C))
    np.testing.assert_array_equal(tdf["n_kept"], np.bincount(want[want != 255], minlength=C))
    np.testing.assert_array_equal(tdf["threshold"].to_numpy().astype(np.float32), t)

    # quality by brute-force counting, pixel by pixel
    qdf = read_csv(q_csv)
    assert list(qdf.columns) == QUALITY_COLUMNS
    assert list(qdf["class_id"]) == list(range(C)) + [-1] and qdf["class_name"].iloc[-1] == "all"
    tot_kept = tot_correct = tot_valid = 0
    for c in range(C):
        kept = correct = in_gt = 0
        for pl, g in zip(want.ravel(), gt.ravel()):
            if g == 255:
                continue
            kept += pl == c
            correct += (pl == c) and (g == c)
            in_gt += g == c
        row = qdf.iloc[c]
        assert (row.n_kept, row.n_correct, row.n_gt) == (kept, correct, in_gt)
        assert np.isclose(row.precision, correct / kept) if kept else np.isnan(row.precision)
        assert np.isclose(row.coverage, correct / in_gt) if in_gt else np.isnan(row.coverage)
        tot_kept, tot_correct = tot_kept + kept, tot_correct + correct
    tot_valid = int((gt != 255).sum())
    row = qdf.iloc[-1]
    assert (row.n_kept, row.n_correct, row.n_gt) == (tot_kept, tot_correct, tot_valid)
    assert np.isclose(row.precision, tot_correct / tot_kept)
    assert np.isclose(row.coverage, tot_kept / tot_valid)


def test_quality_without_gt_is_nan(tmp_path):
    rng = np.random.default_rng(2)
    label, entropy, max_prob = synthetic(rng, n=2)
    ent_h5 = tmp_path / "e.h5"
    write_entropy(ent_h5, label, entropy, max_prob, ["a", "b"])
    q_csv = tmp_path / "q.csv"
    pseudo_labels_h5(
        ent_h5,
        tmp_path / "p.h5",
        method="mpsl",
        params={},
        prov={},
        gt_labels=None,
        quality_csv=q_csv,
        thresholds_csv=tmp_path / "t.csv",
        num_classes=C,
    )
    qdf = read_csv(q_csv)
    assert list(qdf.columns) == QUALITY_COLUMNS and len(qdf) == C + 1
    assert qdf[["n_kept", "n_correct", "n_gt", "precision", "coverage"]].isna().all().all()


def test_failure_midway_leaves_no_output(tmp_path):
    rng = np.random.default_rng(3)
    label, entropy, max_prob = synthetic(rng, n=6)
    names = [f"i{k}" for k in range(6)]
    ent_h5 = tmp_path / "e.h5"
    write_entropy(ent_h5, label, entropy, max_prob, names)
    out_dir = tmp_path / "out"

    def gt_labels(name):
        if name == "i4":
            raise RuntimeError("disk on fire")
        return np.zeros(label.shape[1:], np.uint8)

    with pytest.raises(RuntimeError, match="disk on fire"):
        pseudo_labels_h5(
            ent_h5,
            out_dir / "p.h5",
            method="esl",
            params={},
            prov={},
            gt_labels=gt_labels,
            quality_csv=out_dir / "q.csv",
            thresholds_csv=out_dir / "t.csv",
            num_classes=C,
            chunk_images=2,
        )
    assert not out_dir.exists() or os.listdir(out_dir) == []


def test_bad_entropy_file(tmp_path):
    label, entropy, max_prob = synthetic(np.random.default_rng(4), n=3)
    entropy[2, 1, 1] = np.nan
    ent_h5 = tmp_path / "e.h5"
    write_entropy(ent_h5, label, entropy, max_prob, ["a", "b", "c"])
    kw = dict(prov={}, gt_labels=None, quality_csv=tmp_path / "q.csv", thresholds_csv=tmp_path / "t.csv")
    with pytest.raises(ValueError, match="e.h5"):
        pseudo_labels_h5(ent_h5, tmp_path / "p.h5", method="esl", params={}, num_classes=C, **kw)
    with pytest.raises(ValueError, match="class ids"):  # labels beyond num_classes
        pseudo_labels_h5(ent_h5, tmp_path / "p.h5", method="mpsl", params={}, num_classes=2, **kw)
    assert sorted(os.listdir(tmp_path)) == ["e.h5"]


def test_schema_and_library_defaults_agree():
    """The workflow's schema and the library's `METHODS` each state the paper's values (floor 0.1, cap 0.9): they must
    not drift apart, and the schema may only expose parameters the library knows."""
    schema = yaml.safe_load((Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    section = schema["properties"]["pseudo_labels"]["properties"]
    assert set(section["methods"]["items"]["enum"]) == set(METHODS)
    for name, method in METHODS.items():
        assert set(section.get(name, {}).get("properties", {})) <= set(method.defaults), name
        for key, value in section.get(name, {}).get("default", {}).items():
            assert value == method.defaults[key], (name, key)
    assert section["esl"]["default"] == {"floor": 0.1} and section["mpsl"]["default"] == {"cap": 0.9}


# ---------------------------------------------------------------- first pass, quality, the stage's Params and run


def test_first_pass_round_trip_and_class_count(tmp_path):
    """`FirstPass` writes `pass1_{map}` (int64 (C, 65536), gzip, one chunk per class) and reads it back ready for
    pass 2; one for another class count is not used (None), a malformed one is refused naming the dataset."""
    from esl.ops.histograms import FirstPass

    rng = np.random.default_rng(8)
    label, entropy, max_prob = synthetic(rng, n=3)
    first = FirstPass(C)
    first.add(label, entropy=entropy, max_prob=max_prob)
    path = tmp_path / "e.h5"
    write_entropy(path, label, entropy, max_prob, ["a", "b", "c"])
    with h5py.File(path, "a") as f:
        first.write(f)
    with h5py.File(path, "r") as f:
        for key in ("entropy", "max_prob"):
            d = f[f"pass1_{key}"]
            assert d.dtype == np.int64 and d.shape == (C, 65536) and d.chunks == (1, 65536)
            assert d.compression == "gzip"
        back = FirstPass.read(f, path, C)
        assert back.stored and FirstPass.read(f, path, C + 1) is None
    for key, values in (("entropy", entropy), ("max_prob", max_prob)):
        np.testing.assert_array_equal(back.counts(key), np.bincount(label.ravel(), minlength=C))
        rank = back.rank(key)
        rank.plan([0] * (C - 1) + [-1])
        rank.add_second(values, label)
        want = [values[label == c].min() for c in range(C - 1)]
        np.testing.assert_array_equal(rank.result()[:-1], want)
    with h5py.File(path, "a") as f:
        del f["pass1_max_prob"]
        f["pass1_max_prob"] = np.zeros((C, 7), np.int64)
    with h5py.File(path, "r") as f, pytest.raises(ValueError, match="e.h5: pass1_max_prob"):
        FirstPass.read(f, path, C)
    # a file whose stored histograms count other classes is ranked by counting here: the same thresholds
    t_counted, _ = compute_thresholds(path, "esl", {}, C + 1)
    write_entropy(tmp_path / "plain.h5", label, entropy, max_prob, ["a", "b", "c"])
    np.testing.assert_array_equal(t_counted, compute_thresholds(tmp_path / "plain.h5", "esl", {}, C + 1)[0])


def test_quality_accumulator_and_ground_truth_checks():
    from esl.stages.pseudo_labels import Quality, check_ground_truth

    q = Quality(3)
    assert q.table()[["n_kept", "precision"]].isna().all().all()  # nothing added: NaN metrics
    pseudo = np.uint8([[0, 0, 1, 255], [2, 255, 1, 1]])
    gt = np.uint8([[0, 1, 1, 255], [2, 2, 255, 0]])
    q.add(pseudo, check_ground_truth(gt, "x", (2, 4), 3))
    t = q.table().set_index("class_id")
    assert list(t["n_kept"]) == [2, 2, 1, 5] and list(t["n_correct"]) == [1, 1, 1, 3]  # over GT != 255 only
    assert list(t["n_gt"]) == [2, 2, 2, 6] and t.loc[-1, "coverage"] == 5 / 6 and t.loc[0, "precision"] == 0.5
    assert t.loc[1, "coverage"] == 0.5 and t.loc[-1, "precision"] == 3 / 5
    for bad, match in (
        (gt.astype(np.float32), "integer ids"),
        (gt[:, :3], "shape"),
        (np.where(gt == 2, 3, gt).astype(np.uint8), "outside"),
    ):
        with pytest.raises(ValueError, match=f"x: ground truth .*{match}"):
            check_ground_truth(bad, "x", (2, 4), 3)


def test_params_from_rule_are_checked_once():
    from esl.stages.pseudo_labels import Params

    rule = {"method": "esl", "params": {"floor": 0.2}, "layout": "trainids", "num_classes": 19}
    assert Params.from_rule(rule).as_dict() == rule
    for change, key in (
        ({"method": "nope"}, "pseudo_labels.methods"),
        ({"params": {"cap": 0.5}}, "pseudo_labels.esl"),
        ({"layout": "nope"}, "data.target.layout"),
        ({"layout": "synthia", "num_classes": 19 + 1}, "data.num_classes"),
    ):
        with pytest.raises(ValueError, match=key):
            Params.from_rule({**rule, **change})


def test_run_reads_ground_truth_from_the_index(tmp_path):
    """`run` = the rule: ground truth from the index's labels (a diagnostic), provenance of the rule's params and
    inputs, and the same files as `pseudo_labels_h5`."""
    import cv2

    from esl.io.layouts import Sample, write_index
    from esl.stages.pseudo_labels import Params, run

    rng = np.random.default_rng(9)
    label, entropy, max_prob = synthetic(rng, n=3)
    names = ["a", "b", "c"]
    ent_h5 = tmp_path / "e.h5"
    write_entropy(ent_h5, label, entropy, max_prob, names)
    gt = np.where(rng.random(label.shape) < 0.7, label, 255).astype(np.uint8)
    samples = []
    for i, name in enumerate(names):
        path = tmp_path / f"{name}_gt.png"
        cv2.imwrite(str(path), gt[i])
        samples.append(Sample(name, "unused.png", str(path) if name != "c" else None))
    index = tmp_path / "index.csv"
    write_index(samples, index, {})
    rule = {"method": "mpsl", "params": {"cap": 0.6}, "layout": "trainids", "num_classes": C}
    inputs = {"entropy": str(ent_h5), "index": str(index)}
    outputs = {k: str(tmp_path / "run" / f"p{k}") for k in ("h5", "thresholds", "quality")}
    log = tmp_path / "log.txt"
    with open(log, "w") as f:
        res = run(Params.from_rule(rule), inputs, outputs, log=f)
    assert "method mpsl, 2 ground-truth maps, quality on" in log.read_text()
    assert "pseudo_labels pass 3/3 done" in log.read_text()
    prov = read_provenance(outputs["h5"])
    assert prov["config"] == rule and list(prov["inputs"]) == [str(ent_h5), str(index)]
    want = pseudo_labels_h5(
        ent_h5,
        tmp_path / "ref.h5",
        method="mpsl",
        params={"cap": 0.6},
        prov={},
        gt_labels={"a": gt[0], "b": gt[1]}.get,
        quality_csv=tmp_path / "ref_q.csv",
        thresholds_csv=tmp_path / "ref_t.csv",
        num_classes=C,
    )
    np.testing.assert_array_equal(res["thresholds"], want["thresholds"])
    for got, ref in ((outputs["quality"], "ref_q.csv"), (outputs["thresholds"], "ref_t.csv")):
        assert read_csv(got).equals(read_csv(tmp_path / ref))
    with h5py.File(outputs["h5"], "r") as f, h5py.File(tmp_path / "ref.h5", "r") as r:
        np.testing.assert_array_equal(f["label"][()], r["label"][()])
    without = {"entropy": str(ent_h5)}  # no index: no quality
    outputs = {k: str(tmp_path / "run2" / f"p{k}") for k in ("h5", "thresholds", "quality")}
    with open(os.devnull, "w") as f:
        run(Params.from_rule(rule), without, outputs, log=f)
    assert read_csv(outputs["quality"])["precision"].isna().all()
