import json
import math
import os

import cv2
import h5py
import numpy as np
import pytest
import torch
from conftest import DEVICES

from esl.io.h5 import STRING, read_names
from esl.io.provenance import read_provenance
from esl.ops.entropy import entropy_map
from esl.stages.entropy import entropy_maps_h5


def bilinear_align_corners(x: np.ndarray, size) -> np.ndarray:
    """Independent float64 bilinear upsampling, align_corners=True, of (..., h, w)."""
    h, w = x.shape[-2:]
    out_h, out_w = size

    def coords(n_in, n_out):
        src = np.arange(n_out) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
        i0 = np.floor(src).astype(int)
        i0 = np.minimum(i0, n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, wy = coords(h, out_h)
    x0, x1, wx = coords(w, out_w)
    rows = x[..., y0, :] * (1 - wy)[:, None] + x[..., y1, :] * wy[:, None]
    return rows[..., x0] * (1 - wx) + rows[..., x1] * wx


def brute_force(logits: np.ndarray, size=None):
    """float64 numpy reference: softmax, upsampling of probabilities, argmax, max, normalised entropy."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    if size is not None:
        p = bilinear_align_corners(p, size)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    ent = -plogp.sum(axis=1) / math.log(p.shape[1])
    return p, p.argmax(axis=1), p.max(axis=1), ent


def run(logits_np, size=None, dtype=torch.float32):
    label, max_prob, ent = entropy_map(torch.from_numpy(logits_np).to(dtype), size)
    assert label.dtype == torch.uint8 and max_prob.dtype == torch.float32 and ent.dtype == torch.float32
    return label.numpy(), max_prob.numpy(), ent.numpy()


def check_against_reference(logits_np, size=None, dtype=torch.float32, atol=2e-6):
    label, max_prob, ent = run(logits_np, size, dtype)
    p, ref_label, ref_max, ref_ent = brute_force(logits_np, size)
    assert not np.isnan(ent).any() and not np.isnan(max_prob).any()
    assert not np.signbit(ent).any()
    assert ent.min() >= 0.0 and ent.max() <= 1.0
    np.testing.assert_allclose(ent, np.clip(ref_ent, 0, 1), atol=atol, rtol=0)
    np.testing.assert_allclose(max_prob, ref_max, atol=atol, rtol=0)
    # labels agree wherever the top two probabilities are clearly apart
    top2 = np.sort(p, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-5
    np.testing.assert_array_equal(label[clear], ref_label[clear])
    return label, max_prob, ent


def test_random_logits_native_resolution():
    rng = np.random.default_rng(0)
    logits = (3 * rng.standard_normal((3, 19, 7, 9))).astype(np.float32)
    check_against_reference(logits)


def test_underflowing_softmax_has_no_nan():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 6, 4, 5)).astype(np.float32)
    logits[:, 1:4] = -1e4  # exp underflows to exactly 0 for these classes
    logits[0, :, 0, 0] = [0, -1e4, -1e4, -1e4, -1e4, -1e4]  # one-hot after softmax
    label, max_prob, ent = check_against_reference(logits)
    assert ent[0, 0, 0] == 0.0 and not np.signbit(ent[0, 0, 0])
    assert max_prob[0, 0, 0] == 1.0 and label[0, 0, 0] == 0
    # and from float16, as stored in infer files, with upsampling
    check_against_reference(logits.astype(np.float16), size=(9, 11), dtype=torch.float16)


def test_one_hot_and_uniform():
    one_hot = np.full((1, 5, 3, 3), -1e4, np.float32)
    one_hot[0, 2] = 0.0
    label, max_prob, ent = run(one_hot)
    assert (ent == 0).all() and not np.signbit(ent).any()
    assert (label == 2).all() and (max_prob == 1.0).all()

    uniform = np.zeros((2, 19, 4, 4), np.float32)
    label, max_prob, ent = run(uniform, size=(8, 8))
    np.testing.assert_allclose(ent, 1.0, atol=1e-6)
    assert ent.max() <= 1.0
    np.testing.assert_allclose(max_prob, 1 / 19, rtol=1e-6)
    label, _, ent = run(uniform)
    assert (label == 0).all()  # first maximum on exact ties
    np.testing.assert_allclose(ent, 1.0, atol=1e-6)


def test_upsampling_matches_numpy_align_corners():
    rng = np.random.default_rng(2)
    logits = (2 * rng.standard_normal((2, 4, 3, 5))).astype(np.float32)
    for size in [(7, 13), (3, 5), (1, 1), (6, 5), (2, 9)]:
        label, max_prob, ent = check_against_reference(logits, size=size)
        assert label.shape == max_prob.shape == ent.shape == (2,) + size
    # probabilities (not logits) are interpolated: a midpoint between two one-hot pixels has max_prob 0.5
    two = np.full((1, 2, 1, 2), -1e4, np.float32)
    two[0, 0, 0, 0] = 0.0
    two[0, 1, 0, 1] = 0.0
    _, max_prob, ent = run(two, size=(1, 3))
    np.testing.assert_allclose(max_prob[0, 0], [1.0, 0.5, 1.0], atol=1e-6)
    np.testing.assert_allclose(ent[0, 0], [0.0, 1.0, 0.0], atol=1e-6)


def test_label_and_max_prob_consistent():
    rng = np.random.default_rng(3)
    logits = torch.from_numpy((2 * rng.standard_normal((2, 7, 5, 6))).astype(np.float32))
    label, max_prob, _ = entropy_map(logits, (9, 10))
    prob = torch.nn.functional.interpolate(torch.softmax(logits, 1), (9, 10), mode="bilinear", align_corners=True)
    assert torch.equal(max_prob, prob.gather(1, label.long().unsqueeze(1)).squeeze(1))
    assert torch.equal(max_prob, prob.amax(1))


def test_bad_logits():
    with pytest.raises(ValueError):
        entropy_map(torch.zeros(3, 4, 5), None)
    bad = torch.zeros(1, 3, 2, 2)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError):
        entropy_map(bad, None)


# ---------------------------------------------------------------- HDF5


def write_infer(path, logits, names):
    with h5py.File(path, "w") as f:
        f.create_dataset("logits", data=logits.astype(np.float16), chunks=(1,) + logits.shape[1:])
        f.create_dataset("names", data=np.array(names, dtype=object), dtype=STRING)
        f.attrs["provenance"] = json.dumps({"config": {}})


def test_h5_round_trip_and_pictures(tmp_path):
    rng = np.random.default_rng(4)
    n, num_classes = 5, 19
    logits = (3 * rng.standard_normal((n, num_classes, 4, 6))).astype(np.float16)
    logits[1, 3:] = -1e4
    names = [f"city/img_{i}" for i in range(n)]
    infer = tmp_path / "infer.h5"
    write_infer(infer, logits, names)
    image_path = tmp_path / "img_0.png"
    cv2.imwrite(str(image_path), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    out = tmp_path / "entropy" / "model.h5"
    pics = tmp_path / "entropy" / "model_pictures"
    prov = {"config": {"size": [8, 12]}, "config_hash": "x"}
    entropy_maps_h5(
        infer,
        out,
        size=(8, 12),
        batch_size=2,
        prov=prov,
        pictures=3,
        pictures_dir=pics,
        images={names[0]: str(image_path), names[1]: str(tmp_path / "missing.png")},
    )
    _, ref_label, ref_max, ref_ent = brute_force(logits.astype(np.float32), (8, 12))
    with h5py.File(out, "r") as f:
        assert set(f.keys()) == {"label", "entropy", "max_prob", "names", "pass1_entropy", "pass1_max_prob"}
        for key, dtype in (("label", np.uint8), ("entropy", np.float32), ("max_prob", np.float32)):
            assert f[key].dtype == dtype and f[key].shape == (n, 8, 12) and f[key].chunks == (1, 8, 12)
        assert read_names(f) == names
        assert f["names"].dtype == STRING or h5py.check_string_dtype(f["names"].dtype).encoding == "utf-8"
        ent, mp, lab = f["entropy"][()], f["max_prob"][()], f["label"][()]
        assert f.attrs["num_classes"] == num_classes
    assert read_provenance(out) == prov
    assert not np.isnan(ent).any() and not np.signbit(ent).any() and 0 <= ent.min() and ent.max() <= 1
    np.testing.assert_allclose(ent, ref_ent, atol=2e-6)
    np.testing.assert_allclose(mp, ref_max, atol=2e-6)
    assert (lab == ref_label).mean() > 0.99
    files = sorted(os.listdir(pics))
    assert len(files) == 3 and all(f.endswith(".png") for f in files)
    widths = [cv2.imread(str(pics / f)).shape for f in files]
    assert widths[0] == (8, 36, 3)  # image | prediction | entropy
    assert widths[1] == widths[2] == (8, 24, 3)  # no image panel
    assert sorted(os.listdir(out.parent)) == ["model.h5", "model_pictures"]  # no temp leftovers


def test_h5_no_resize_no_pictures(tmp_path):
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((3, 4, 5, 6)).astype(np.float16)
    infer = tmp_path / "infer.h5"
    write_infer(infer, logits, ["a", "b", "c"])
    out = tmp_path / "out.h5"
    pics = tmp_path / "pics"
    entropy_maps_h5(infer, out, size=None, batch_size=8, prov={}, pictures=0, pictures_dir=pics)
    with h5py.File(out, "r") as f:
        assert f["entropy"].shape == (3, 5, 6)
    assert pics.is_dir() and not os.listdir(pics)


def test_h5_failure_midway_leaves_nothing(tmp_path):
    logits = np.zeros((4, 3, 2, 2), np.float16)
    logits[3, 0, 0, 0] = np.inf  # the last batch is bad
    infer = tmp_path / "infer.h5"
    write_infer(infer, logits, list("abcd"))
    out = tmp_path / "out" / "e.h5"
    pics = tmp_path / "out" / "e_pictures"
    with pytest.raises(ValueError, match="infer.h5"):
        entropy_maps_h5(infer, out, size=(3, 3), batch_size=2, prov={}, pictures=4, pictures_dir=pics)
    assert os.listdir(out.parent) == []


def test_failure_in_the_writer_thread_is_raised_and_leaves_nothing(tmp_path, monkeypatch):
    """Maps and pictures are written by a background thread: its error reaches the caller, and no output stays."""
    import cv2

    infer = tmp_path / "infer.h5"
    write_infer(infer, np.zeros((6, 3, 2, 2), np.float16), list("abcdef"))
    out = tmp_path / "out" / "e.h5"
    pics = tmp_path / "out" / "e_pictures"
    calls = []

    def full_disk(path, image):  # the third picture (second batch) cannot be written
        calls.append(path)
        return len(calls) < 3

    monkeypatch.setattr(cv2, "imwrite", full_disk)
    with pytest.raises(OSError, match="could not write .*0002_c.png"):
        entropy_maps_h5(infer, out, size=(3, 3), batch_size=2, prov={}, pictures=6, pictures_dir=pics)
    assert len(calls) == 3  # nothing after the failure
    assert os.listdir(out.parent) == []


def test_h5_bad_input(tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("something", data=np.zeros(3))
    with pytest.raises(ValueError, match="bad.h5.*logits"):
        entropy_maps_h5(bad, tmp_path / "o.h5", size=None, prov={})
    with h5py.File(bad, "w") as f:
        f.create_dataset("logits", data=np.zeros((2, 3, 4), np.float16))
    with pytest.raises(ValueError, match="bad.h5"):
        entropy_maps_h5(bad, tmp_path / "o.h5", size=None, prov={})
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.parametrize("device", DEVICES)
def test_device_path_matches_float64_reference(device):
    """The entropy stage's path on the device it picks (the GPU when present, the CPU here) against float64 NumPy,
    from float16 logits as stored by inference, upsampled to a Cityscapes-like aspect ratio."""
    rng = np.random.default_rng(12)
    logits = (4 * rng.standard_normal((2, 19, 9, 17))).astype(np.float16)
    label, max_prob, ent = entropy_map(torch.from_numpy(logits).to(device), (33, 65))
    label, max_prob, ent = label.cpu().numpy(), max_prob.cpu().numpy(), ent.cpu().numpy()
    p, ref_label, ref_max, ref_ent = brute_force(logits.astype(np.float32), (33, 65))
    np.testing.assert_allclose(ent, np.clip(ref_ent, 0, 1), atol=3e-6, rtol=0)
    np.testing.assert_allclose(max_prob, ref_max, atol=3e-6, rtol=0)
    top2 = np.sort(p, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-5
    np.testing.assert_array_equal(label[clear], ref_label[clear])
    assert not np.signbit(ent).any() and ent.max() <= 1.0


@pytest.mark.parametrize("device", DEVICES)
def test_first_pass_histograms_stored_by_the_entropy_stage(tmp_path, device):
    """The entropy stage counts pass 1 of the exact thresholds from the very maps it writes; the pseudo-label stage
    then runs pass 2 only, with the same thresholds as the sort-based rule; a stale histogram is refused."""
    from esl.ops.ranks import StreamingRank
    from esl.ops.thresholds import class_thresholds_sorted
    from esl.stages.pseudo_labels import compute_thresholds

    rng = np.random.default_rng(13)
    logits = (3 * rng.standard_normal((7, 5, 6, 8))).astype(np.float16)
    infer = tmp_path / "infer.h5"
    write_infer(infer, logits, [f"i{k}" for k in range(7)])
    out = tmp_path / "entropy.h5"
    entropy_maps_h5(infer, out, size=(11, 15), batch_size=3, prov={}, device=device)
    with h5py.File(out, "r") as f:
        label = f["label"][()]
        for key in ("entropy", "max_prob"):
            fresh = StreamingRank(5)
            fresh.add(f[key][()], label)
            np.testing.assert_array_equal(f[f"pass1_{key}"][()], fresh.hist_hi)
        values = {k: f[k][()] for k in ("entropy", "max_prob")}
    for method, key, q, desc in (("esl", "entropy", 0.5, False), ("cbst", "max_prob", 0.2, True)):
        params = {"floor": 0.0} if method == "esl" else {}
        got, counts = compute_thresholds(
            out, method, params, 5, chunk_images=2, device=None if device == "cpu" else device
        )
        want, want_counts = class_thresholds_sorted(values[key], label, 5, q, desc)
        np.testing.assert_array_equal(counts, want_counts)
        np.testing.assert_array_equal(got, want.astype(np.float32))
    with h5py.File(out, "r+") as f:
        h = f["pass1_entropy"][()]
        c = int(np.flatnonzero(h.sum(axis=1))[0])
        b = int(np.flatnonzero(h[c])[0])
        h[c, b] += 1
        f["pass1_entropy"][...] = h
    with pytest.raises(ValueError, match="pass1_entropy"):
        compute_thresholds(out, "esl", {"floor": 0.0}, 5)


# ---------------------------------------------------------------- the stage: Params and run


def test_params_from_rule_are_checked_once():
    from esl.stages.entropy import Params

    p = Params.from_rule({"size": [8, 12], "pictures": 2, "batch_size": 3})
    assert p.out_size == (8, 12) and p.as_dict() == {"size": [8, 12], "pictures": 2, "batch_size": 3}
    assert Params.from_rule({"size": None, "pictures": 0, "batch_size": 1}).out_size is None
    for bad, key in (
        ({"size": [8], "pictures": 2, "batch_size": 3}, "entropy.size"),
        ({"size": [8, 0], "pictures": 2, "batch_size": 3}, "entropy.size"),
        ({"size": [8, 12], "pictures": -1, "batch_size": 3}, "entropy.pictures"),
        ({"size": [8, 12], "pictures": 2, "batch_size": 0}, "infer.batch_size"),
        ({"size": [8, 12], "pictures": 2}, "missing params"),
        ({"size": [8, 12], "pictures": 2, "batch_size": 3, "use_gt": True}, "unexpected params"),
    ):
        with pytest.raises(ValueError, match=key):
            Params.from_rule(bad)


def test_run_writes_what_entropy_maps_h5_writes(tmp_path, monkeypatch):
    """`run` = the rule: the rule's threads for torch, images from the index, provenance of the rule's params and
    inputs, the same maps and first-pass histograms as the library function."""
    from esl.io.layouts import Sample, write_index
    from esl.stages.entropy import Params, run

    rng = np.random.default_rng(14)
    names = ["a", "b", "c"]
    infer = tmp_path / "infer.h5"
    write_infer(infer, (3 * rng.standard_normal((3, 4, 5, 6))).astype(np.float16), names)
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), rng.integers(0, 255, (10, 12, 3), dtype=np.uint8))
    index = tmp_path / "index.csv"
    write_index([Sample("a", str(image), None), Sample("b", "missing.png", None)], index, {})
    rule = {"size": [7, 9], "pictures": 2, "batch_size": 2}
    inputs = {"logits": str(infer), "index": str(index)}
    outputs = {"h5": str(tmp_path / "e.h5"), "pictures": str(tmp_path / "e_pictures")}
    log = tmp_path / "log.txt"
    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    with open(log, "w") as f:
        run(Params.from_rule(rule), inputs, outputs, log=f, threads=2)
    assert threads == [2]
    assert "device cpu, size (7, 9), 2 images in the index" in log.read_text()
    assert "entropy done: 3 images" in log.read_text()
    prov = read_provenance(outputs["h5"])
    assert prov["config"] == rule and list(prov["inputs"]) == [str(infer), str(index)]
    entropy_maps_h5(infer, tmp_path / "ref.h5", size=(7, 9), batch_size=2, prov={})
    with h5py.File(outputs["h5"], "r") as got, h5py.File(tmp_path / "ref.h5", "r") as want:
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_array_equal(got[key][()], want[key][()])
    pictures = sorted(os.listdir(outputs["pictures"]))
    assert pictures == ["0000_a.png", "0001_b.png"]
    assert cv2.imread(os.path.join(outputs["pictures"], pictures[0])).shape == (7, 27, 3)  # with the image panel
