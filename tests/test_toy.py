"""Tests of the seeded toy domain-pair generator."""

import json
from dataclasses import replace

import cv2
import numpy as np
import pandas as pd
import pytest

import esl.toy.generate as toy
from esl.io.labels import CLASS_NAMES, IGNORE
from esl.toy import ToyDesign, generate_toy

SMALL = dict(seed=3, height=48, width=96, n_source=3, n_target_train=3, n_target_val=2, shift=1.0)
VALID = set(range(len(CLASS_NAMES))) | {IGNORE}


def read_manifest(root):
    path = root / "manifest.csv"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# provenance: ")
    return json.loads(first[len("# provenance: ") :]), pd.read_csv(path, comment="#")


def all_files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*.png"))


def class_means(root, manifest, domain, split, classes):
    """Per-class mean BGR colour of the images of one domain/split, from the files on disk."""
    rows = manifest[(manifest.domain == domain) & (manifest.split == split)]
    images = np.stack([cv2.imread(str(root / p), cv2.IMREAD_UNCHANGED) for p in rows.image]).reshape(-1, 3)
    labels = np.stack([cv2.imread(str(root / p), cv2.IMREAD_UNCHANGED) for p in rows.label]).ravel()
    return {c: images[labels == c].astype(np.float64).mean(axis=0) for c in classes}


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_toy(a, **SMALL)
    generate_toy(b, **SMALL)
    generate_toy(c, **{**SMALL, "seed": 4})
    files = all_files(a)
    assert files == all_files(b) == all_files(c)
    assert len(files) == 2 * (3 + 3 + 2)
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert any((a / rel).read_bytes() != (c / rel).read_bytes() for rel in files if "images" in rel.parts)
    assert any((a / rel).read_bytes() != (c / rel).read_bytes() for rel in files if "labels" in rel.parts)
    prov_a, rows_a = read_manifest(a)
    prov_b, rows_b = read_manifest(b)
    pd.testing.assert_frame_equal(rows_a, rows_b)
    assert prov_a["config"]["root"] == str(a) and prov_b["config"]["root"] == str(b)
    assert {**prov_a["config"], "root": None} == {**prov_b["config"], "root": None} == {**SMALL, "root": None}
    assert read_manifest(c)[0]["config"]["seed"] == 4


def test_layout_and_manifest(tmp_path):
    root = tmp_path / "toy"
    summary = generate_toy(root, **SMALL)
    prov, rows = read_manifest(root)
    assert list(rows.columns) == ["domain", "split", "name", "image", "label"]
    assert prov["config"]["height"] == 48 and prov["config"]["shift"] == 1.0
    expected = {("source", "train"): 3, ("target", "train"): 3, ("target", "val"): 2}
    assert rows.groupby(["domain", "split"]).size().to_dict() == expected
    assert summary["counts"] == {f"{d}/{s}": n for (d, s), n in expected.items()}
    assert "source_train_0000" in set(rows.name) and "target_val_0001" in set(rows.name)
    hist = {}
    for row in rows.itertuples():
        assert row.image == f"{row.domain}/{row.split}/images/{row.name}.png"
        assert row.label == f"{row.domain}/{row.split}/labels/{row.name}.png"
        image = cv2.imread(str(root / row.image), cv2.IMREAD_UNCHANGED)
        label = cv2.imread(str(root / row.label), cv2.IMREAD_UNCHANGED)
        assert image.shape == (48, 96, 3) and image.dtype == np.uint8
        assert label.shape == (48, 96) and label.dtype == np.uint8
        assert set(np.unique(label).tolist()) <= VALID
        key = f"{row.domain}/{row.split}"
        hist[key] = hist.get(key, 0) + np.bincount(label.ravel(), minlength=256)
    # nothing but the listed files, no staging folder left behind
    assert len(all_files(root)) == 2 * len(rows)
    assert sorted(p.name for p in root.iterdir()) == ["manifest.csv", "source", "target"]
    # the summary's class fractions agree with the labels on disk
    for key, h in hist.items():
        for c, name in enumerate(CLASS_NAMES):
            assert summary["class_fractions"][key].get(name, 0.0) == pytest.approx(h[c] / h.sum(), abs=1e-4)
    total = sum(hist.values())
    assert summary["ignore_fraction"] == pytest.approx(total[IGNORE] / total.sum(), abs=1e-5)


def test_classes_present_and_little_ignore(tmp_path):
    root = tmp_path / "toy"
    generate_toy(root, **{**SMALL, "n_source": 6, "n_target_train": 6})
    _, rows = read_manifest(root)
    labels = np.stack([cv2.imread(str(root / p), cv2.IMREAD_UNCHANGED) for p in rows.label])
    counts = np.bincount(labels.ravel(), minlength=256)
    present = {c for c in range(len(CLASS_NAMES)) if counts[c] > 0}
    assert len(present) >= 6, present
    assert {0, 1, 2, 10} <= present  # road, sidewalk, building, sky in every scene kind
    assert counts[IGNORE] <= 0.02 * counts.sum()


def test_shift_controls_per_class_colour_statistics(tmp_path):
    classes = (0, 1, 2, 8, 10)  # road, sidewalk, building, vegetation, sky: present in every image set
    diffs = {}
    for shift in (0.0, 1.0):
        root = tmp_path / f"shift{shift}"
        generate_toy(
            root, **{**SMALL, "seed": 0, "n_source": 8, "n_target_train": 8, "n_target_val": 1, "shift": shift}
        )
        _, rows = read_manifest(root)
        src = class_means(root, rows, "source", "train", classes)
        tgt = class_means(root, rows, "target", "train", classes)
        diffs[shift] = {c: float(np.abs(src[c] - tgt[c]).max()) for c in classes}
    # same appearance: only the sampling of objects differs
    assert max(diffs[0.0].values()) < 15, diffs[0.0]
    # shifted appearance (each target image by its own strength in (0.1, 1] x shift): every large class moves more
    # than sampling alone moves it, and on average by much more
    assert all(diffs[1.0][c] > diffs[0.0][c] for c in classes), diffs
    assert np.mean(list(diffs[1.0].values())) > 2.5 * np.mean(list(diffs[0.0].values())), diffs


def test_source_does_not_depend_on_shift(tmp_path):
    generate_toy(tmp_path / "a", **{**SMALL, "shift": 0.0})
    generate_toy(tmp_path / "b", **{**SMALL, "shift": 1.0})
    rel = "source/train/images/source_train_0001.png"
    assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    rel = "target/train/images/target_train_0001.png"
    assert (tmp_path / "a" / rel).read_bytes() != (tmp_path / "b" / rel).read_bytes()


def test_fog_thins_towards_the_bottom_and_changes_nothing_else(tmp_path):
    generate_toy(tmp_path / "clear", **SMALL)
    fog = replace(ToyDesign(), fog=0.85)  # off by default; experiments/toy_variants.py's "fog" design
    generate_toy(tmp_path / "fog", **SMALL, design=fog)
    _, rows = read_manifest(tmp_path / "clear")
    fog_bgr = np.array(fog.fog_rgb[::-1], np.float64)
    h = SMALL["height"]
    for r in rows.itertuples():
        clear = cv2.imread(str(tmp_path / "clear" / r.image), cv2.IMREAD_UNCHANGED).astype(np.float64)
        fogged = cv2.imread(str(tmp_path / "fog" / r.image), cv2.IMREAD_UNCHANGED).astype(np.float64)
        label = tmp_path / "fog" / r.label
        assert label.read_bytes() == (tmp_path / "clear" / r.label).read_bytes()
        if r.domain == "source":
            assert np.array_equal(clear, fogged), r.image
            continue
        top = slice(0, h // 4)  # densest fog: nearer the fog colour than without
        assert np.abs(fogged[top] - fog_bgr).mean() < np.abs(clear[top] - fog_bgr).mean(), r.image
        assert np.abs(fogged[-1] - clear[-1]).mean() < 3.0, r.image  # none at the bottom row (blur leaks a little)


def test_haze_is_uniform_fog(tmp_path):
    generate_toy(tmp_path / "clear", **SMALL)
    haze = replace(ToyDesign(), fog=0.6, fog_slope=0.0)  # experiments/toy_variants.py's "haze": fog that does not thin
    generate_toy(tmp_path / "haze", **SMALL, design=haze)
    _, rows = read_manifest(tmp_path / "clear")
    fog_bgr = np.array(haze.fog_rgb[::-1], np.float64)
    h = SMALL["height"]
    for r in rows.itertuples():
        if r.domain == "source":
            continue
        clear = cv2.imread(str(tmp_path / "clear" / r.image), cv2.IMREAD_UNCHANGED).astype(np.float64)
        hazy = cv2.imread(str(tmp_path / "haze" / r.image), cv2.IMREAD_UNCHANGED).astype(np.float64)
        # each band's distance to the fog colour shrinks by about the same factor 1 - 0.6 * strength
        ratios = [
            np.abs(hazy[band] - fog_bgr).mean() / np.abs(clear[band] - fog_bgr).mean()
            for band in (slice(0, h // 4), slice(3 * h // 4, h))
        ]
        assert max(ratios) < 0.97, (r.image, ratios)
        assert abs(ratios[0] - ratios[1]) < 0.15, (r.image, ratios)


def test_rerun_replaces_old_output(tmp_path):
    root = tmp_path / "toy"
    generate_toy(root, **{**SMALL, "n_source": 5})
    generate_toy(root, **SMALL)
    _, rows = read_manifest(root)
    assert len(all_files(root)) == 2 * len(rows) == 16
    assert not (root / "source/train/images/source_train_0004.png").exists()


def test_crash_leaves_no_manifest(tmp_path, monkeypatch):
    root = tmp_path / "toy"
    generate_toy(root, **SMALL)
    calls = []
    real = toy._write_png

    def failing(path, array):
        calls.append(path)
        if len(calls) == 5:
            raise OSError("disk full")
        real(path, array)

    monkeypatch.setattr(toy, "_write_png", failing)
    with pytest.raises(OSError, match="disk full"):
        generate_toy(root, **SMALL)
    assert not (root / "manifest.csv").exists()
    assert not any(p.name.startswith(".staging") for p in root.iterdir())


@pytest.mark.parametrize(
    "name, value",
    [
        ("seed", -1),
        ("height", 31),
        ("width", 16),
        ("n_source", 0),
        ("n_target_train", -2),
        ("n_target_val", 0),
        ("height", 48.5),
        ("shift", -0.1),
        ("shift", float("nan")),
    ],
)
def test_bad_arguments_raise(tmp_path, name, value):
    with pytest.raises(ValueError, match=name) as info:
        generate_toy(tmp_path / "toy", **{**SMALL, name: value})
    assert "\n" not in str(info.value)
    assert not (tmp_path / "toy" / "manifest.csv").exists()


def test_design_from_dict_refuses_unknown_keys_naming_them():
    with pytest.raises(ValueError, match=r"toy\.design\.fgo\b") as info:
        ToyDesign.from_dict({"fog": 0.5, "fgo": 0.5})
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"toy\.design\.target_rgb\.lorry\b"):
        ToyDesign.from_dict({"target_rgb": {"lorry": [1, 2, 3]}})
    with pytest.raises(ValueError, match=r"toy\.design\.fog\b"):
        ToyDesign.from_dict({"fog": 2.0})
    with pytest.raises(ValueError, match=r"toy\.design\.target_rgb\.car\b"):
        ToyDesign.from_dict({"target_rgb": {"car": [300, 0, 0]}})


def test_design_dict_round_trip_and_partial_mappings():
    default = ToyDesign()
    assert ToyDesign.from_dict(None) == ToyDesign.from_dict({}) == default
    assert ToyDesign.from_dict(default.to_dict()) == default
    d = ToyDesign.from_dict({"fog": 0.85, "target_rgb": {"car": [150, 50, 170]}, "target_priors": {"cars": 4}})
    assert d == replace(
        default,
        fog=0.85,
        target_rgb=replace(default.target_rgb, car=(150, 50, 170)),
        target_priors=replace(default.target_priors, cars=4.0),
    )
    assert d.target_rgb[13] == (150, 50, 170) and d.source_rgb == default.source_rgb
    assert json.loads(json.dumps(d.to_dict())) == d.to_dict()
    assert ToyDesign.from_dict(d.to_dict()) == d


def test_a_non_default_design_changes_the_target_only_and_is_recorded(tmp_path):
    design = ToyDesign.from_dict({"target_rgb": {"car": [150, 50, 170]}, "noise": 10.0})
    generate_toy(tmp_path / "default", **SMALL)
    generate_toy(tmp_path / "explicit", **SMALL, design=ToyDesign())
    generate_toy(tmp_path / "a", **SMALL, design=design)
    generate_toy(tmp_path / "b", **SMALL, design=ToyDesign.from_dict(design.to_dict()))
    files = all_files(tmp_path / "a")
    for rel in files:
        assert (tmp_path / "default" / rel).read_bytes() == (tmp_path / "explicit" / rel).read_bytes(), rel
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    changed = {rel for rel in files if (tmp_path / "default" / rel).read_bytes() != (tmp_path / "a" / rel).read_bytes()}
    # the design changes only the target's appearance: the source and every label (same draws) stay as they are
    target_images = {rel for rel in files if rel.parts[0] == "target" and "images" in rel.parts}
    assert changed == target_images
    # the default's provenance is the arguments alone (as before the design existed); a non-default design is recorded
    assert "design" not in read_manifest(tmp_path / "default")[0]["config"]
    assert read_manifest(tmp_path / "a")[0]["config"]["design"] == design.to_dict()


def test_generate_toy_wants_a_design_value(tmp_path):
    with pytest.raises(ValueError, match="design"):
        generate_toy(tmp_path / "toy", **SMALL, design={"fog": 0.5})
