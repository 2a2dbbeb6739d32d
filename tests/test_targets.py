"""The target layouts Mapillary Vistas (7 classes), ACDC and Dark Zurich on miniature roots written here with their
shipped encodings: listing (conditions, unlabelled splits), label maps against hand-made tables, values outside the
tables refused in one line, and one tiny real run of the workflow on each, from a miniature GTA5 source."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from esl.io.images import check_samples, read_image, read_label
from esl.io.labels import CLASS_NAMES, IGNORE, label_space, mapillary_to_7_classes, shown_as_19, to_7_classes
from esl.io.layouts import (
    CONDITIONS,
    DEFAULT_CONDITIONS,
    NUM_CLASSES,
    DatasetError,
    check_num_classes,
    conditions_of,
    fingerprint,
    labels_without_image,
    list_samples,
)
from esl.io.tables import read_csv

sys.path.insert(0, str(Path(__file__).parent))
from conftest import REPO, TINY, dry_run  # noqa: E402
from test_datasets import write_palette_png  # noqa: E402

NAMES_7 = ["flat", "construction", "object", "nature", "sky", "human", "vehicle"]
FLAT, CONSTRUCTION, OBJECT, NATURE, SKY, HUMAN, VEHICLE = range(7)

# Hand-made cases, written independently of esl.io.labels (valeoai/ESL's tables; docs/TARGETS.md).
# Mapillary Vistas v1.2 label id -> 7-class id.
MAPILLARY_CASES = {
    0: IGNORE,  # Bird
    1: IGNORE,  # Ground Animal
    2: CONSTRUCTION,  # Curb
    3: CONSTRUCTION,  # Fence
    6: CONSTRUCTION,  # Wall
    8: FLAT,  # Crosswalk - Plain
    13: FLAT,  # Road
    15: FLAT,  # Sidewalk
    17: CONSTRUCTION,  # Building
    19: HUMAN,  # Person
    20: HUMAN,  # Bicyclist
    24: FLAT,  # Lane Marking - General
    25: IGNORE,  # Mountain
    27: SKY,
    28: IGNORE,  # Snow
    29: FLAT,  # Terrain
    30: NATURE,  # Vegetation
    31: IGNORE,  # Water
    32: IGNORE,  # Banner
    43: OBJECT,  # Pothole
    45: OBJECT,  # Pole
    48: OBJECT,  # Traffic Light
    50: OBJECT,  # Traffic Sign (Front)
    51: IGNORE,  # Trash Can
    52: VEHICLE,  # Bicycle
    55: VEHICLE,  # Car
    62: VEHICLE,  # Wheeled Slow
    63: IGNORE,  # Car Mount
    64: IGNORE,  # Ego Vehicle
    65: IGNORE,  # Unlabeled
}
# Cityscapes trainId -> 7-class id (the reference's GTA5 table: terrain is flat).
TRAINID_TO_7 = dict(enumerate([0, 0, 1, 1, 1, 2, 2, 2, 3, 0, 4, 5, 5, 6, 6, 6, 6, 6, 6])) | {IGNORE: IGNORE}
# Cityscapes/GTA5 label id -> 7-class id, a few.
GTA_CASES = {0: IGNORE, 7: FLAT, 8: FLAT, 11: CONSTRUCTION, 17: OBJECT, 21: NATURE, 22: FLAT, 23: SKY, 24: HUMAN}
GTA_CASES |= {26: VEHICLE, 31: VEHICLE, 33: VEHICLE, 34: IGNORE}
# SYNTHIA class id (R channel) -> 7-class id: terrain (16), truck (18), train (20) have a class here.
SYNTHIA_CASES = {0: IGNORE, 1: SKY, 2: CONSTRUCTION, 3: FLAT, 6: NATURE, 8: VEHICLE, 10: HUMAN, 15: OBJECT}
SYNTHIA_CASES |= {16: FLAT, 18: VEHICLE, 20: VEHICLE, 21: CONSTRUCTION, 22: IGNORE}


def write_png(path: Path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def picture(seed, h=6, w=8):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def cases_map(cases: dict, shape=(4, 8)) -> tuple[np.ndarray, np.ndarray]:
    """(raw label map holding every key of `cases`, cycled; the expected map) of `shape`."""
    raw = np.resize(np.array(list(cases), dtype=np.int64), shape)
    return raw, np.vectorize(cases.get)(raw).astype(np.uint8)


# ------------------------------------------------------------------------------------------- builders

MAPILLARY_SIZES = [(6, 8), (9, 12), (5, 10)]  # images of varied sizes, as Vistas ships them


def make_mapillary(root: Path, v20=False, splits=(("training", 3), ("validation", 2), ("testing", 1)), seed=0):
    """Vistas v1.2: `{split}/images/*.jpg` and palette-PNG `{split}/labels/*.png` (v2.0's release: `v1.2/labels`)."""
    for split, n in splits:
        for i in range(n):
            h, w = MAPILLARY_SIZES[i % len(MAPILLARY_SIZES)]
            stem = f"{split[:2]}{seed}_{i:03d}xyz"
            write_png(root / split / "images" / f"{stem}.jpg", picture(seed * 100 + i, h, w))
            if split != "testing":
                ids = np.random.default_rng(i).integers(0, 66, (h, w))
                labels = root / split / ("v1.2/labels" if v20 else "labels")
                write_palette_png(labels / f"{stem}.png", ids)
    return root


def make_acdc(root: Path, conditions=CONDITIONS["acdc"], per_split=(("train", 2), ("val", 1), ("test", 1)), hw=(6, 8)):
    """ACDC: `rgb_anon/{condition}/{split}/{sequence}/*_rgb_anon.png`, `gt/.../*_gt_labelTrainIds.png` (train, val)
    beside the other label files ACDC ships, and the unlabelled `*_ref` images."""
    k = 0
    for c, condition in enumerate(conditions):
        for split, n in per_split:
            for i in range(n):
                seq = f"GOPR0{c}{i % 2}"
                stem = f"{seq}_frame_{k:06d}"
                write_png(root / "rgb_anon" / condition / split / seq / f"{stem}_rgb_anon.png", picture(k, *hw))
                write_png(
                    root / "rgb_anon" / condition / f"{split}_ref" / seq / f"{stem}_rgb_ref_anon.png", picture(k, *hw)
                )
                if split != "test":
                    gt = root / "gt" / condition / split / seq
                    trainids = np.random.default_rng(k).choice(list(range(19)) + [255], hw).astype(np.uint8)
                    write_png(gt / f"{stem}_gt_labelTrainIds.png", trainids)
                    write_png(gt / f"{stem}_gt_labelColor.png", picture(k + 50, *hw))
                    write_png(gt / f"{stem}_gt_invIds.png", np.zeros(hw, np.uint8))
                k += 1
    return root


def make_dark_zurich(root: Path, n_train=2, n_val=2, hw=(6, 8)):
    """Dark Zurich: `rgb_anon/{split}/{condition}/{sequence}/*_rgb_anon.png` (train: day, night, twilight, unlabelled;
    val: night, labelled `gt/val/night/.../*_gt_labelTrainIds.png`; test: night, unlabelled)."""
    k = 0
    for split, conditions, n in (("train", ("day", "night", "twilight"), n_train), ("val", ("night",), n_val)):
        for condition in conditions:
            for i in range(n):
                seq = f"GOPR{condition[:1]}{i % 2}"
                stem = f"{seq}_frame_{k:06d}"
                write_png(root / "rgb_anon" / split / condition / seq / f"{stem}_rgb_anon.png", picture(k, *hw))
                if split == "val":
                    trainids = np.random.default_rng(k).choice(list(range(19)) + [255], hw).astype(np.uint8)
                    write_png(root / "gt" / split / condition / seq / f"{stem}_gt_labelTrainIds.png", trainids)
                k += 1
    write_png(root / "rgb_anon/test/night/GOPRt/GOPRt_frame_000999_rgb_anon.png", picture(99, *hw))
    return root


# ------------------------------------------------------------------------------------------- label spaces


def test_the_7_class_space_and_the_19_to_7_table():
    assert NUM_CLASSES["mapillary"] == 7 and NUM_CLASSES["acdc"] == NUM_CLASSES["dark_zurich"] == 19
    assert list(label_space(7).names) == NAMES_7 and label_space(7).extra_means == {}
    x = np.array(list(range(19)) + [255], np.uint8).reshape(4, 5)
    np.testing.assert_array_equal(to_7_classes(x), np.vectorize(TRAINID_TO_7.get)(x))
    with pytest.raises(ValueError, match="value 19 outside 0..18/255"):
        to_7_classes(np.array([19]))
    # pictures draw each of the 7 classes in the colour of one of its trainIds
    shown = shown_as_19(np.array([0, 1, 2, 3, 4, 5, 6, 255], np.uint8), 7)
    assert [CLASS_NAMES[i] for i in shown[:-1]] == ["road", "building", "pole", "vegetation", "sky", "person", "car"]
    assert shown[-1] == IGNORE


def test_num_classes_per_layout_are_checked():
    check_num_classes("mapillary", 7)
    for layout in ("gta5", "synthia", "cityscapes", "acdc", "dark_zurich"):
        for c in (19, 16, 7):
            check_num_classes(layout, c)
    with pytest.raises(DatasetError, match=r"^layout mapillary: num_classes must be 7 \(Mapillary classes\), got 19$"):
        check_num_classes("mapillary", 19)
    with pytest.raises(DatasetError, match=r"must be 19 \(trainIds\), 16 \(SYNTHIA classes\) or 7 .*got 13$"):
        check_num_classes("acdc", 13)


def test_mapillary_ids_to_7_classes_by_hand():
    raw, want = cases_map(MAPILLARY_CASES)
    np.testing.assert_array_equal(mapillary_to_7_classes(raw), want)
    full = mapillary_to_7_classes(np.arange(66))
    assert sorted(int(c) for c in np.unique(full)) == [0, 1, 2, 3, 4, 5, 6, 255]  # every class has a source id
    with pytest.raises(ValueError, match="label id 66 outside the Mapillary Vistas v1.2 ids 0..65"):
        mapillary_to_7_classes(np.array([3, 66]))


@pytest.mark.parametrize("layout", ["gta5", "cityscapes"])
def test_cityscapes_label_ids_to_7_classes(tmp_path, layout):
    raw, want = cases_map(GTA_CASES)
    path = tmp_path / ("x.png" if layout == "gta5" else "x_gtFine_labelIds.png")
    if layout == "gta5":
        write_palette_png(path, raw)
    else:
        write_png(path, raw.astype(np.uint8))
    if layout == "cityscapes":  # 34 is not a Cityscapes label id: refused there, ignored in GTA5's labels
        with pytest.raises(DatasetError, match="label id 34 outside the Cityscapes label ids 0..33/255"):
            read_label(layout, path, num_classes=7)
        raw[raw == 34] = 0
        want = np.vectorize(GTA_CASES.get)(raw).astype(np.uint8)
        write_png(path, raw.astype(np.uint8))
    np.testing.assert_array_equal(read_label(layout, path, num_classes=7), want)


def test_synthia_ids_to_7_classes_keep_terrain_truck_train(tmp_path):
    raw, want = cases_map(SYNTHIA_CASES)
    label = np.zeros(raw.shape + (3,), np.uint16)
    label[:, :, 2] = raw  # the class id in R (index 2 in OpenCV's BGR order)
    label[:, :, 1] = 777  # instance ids, ignored
    write_png(tmp_path / "s.png", label)
    np.testing.assert_array_equal(read_label("synthia", tmp_path / "s.png", num_classes=7), want)
    # the 16-class space has no terrain/truck/train: ignored there
    assert (read_label("synthia", tmp_path / "s.png", num_classes=16)[np.isin(raw, (16, 18, 20))] == IGNORE).all()


# ------------------------------------------------------------------------------------------- mapillary


@pytest.mark.parametrize("v20", [False, True])
def test_mapillary_listing(tmp_path, v20):
    root = make_mapillary(tmp_path / "vistas", v20=v20)
    train = list_samples("mapillary", root, "training")
    assert [s.name for s in train] == ["tr0_000xyz", "tr0_001xyz", "tr0_002xyz"]
    label_dir = root / "training" / ("v1.2/labels" if v20 else "labels")
    assert [s.label for s in train] == [str(label_dir / f"{s.name}.png") for s in train]
    assert all(s.image.endswith(".jpg") for s in train)
    test = list_samples("mapillary", root, "testing")  # no labels ship: listed without
    assert len(test) == 1 and test[0].label is None
    assert check_samples("mapillary", train, 7) == 3


def test_mapillary_images_of_varied_sizes_are_read_at_the_configured_size(tmp_path):
    root = make_mapillary(tmp_path / "vistas")
    samples = list_samples("mapillary", root, "training")
    for s, hw in zip(samples, MAPILLARY_SIZES):
        assert read_image(s.image).shape == (*hw, 3) and read_label("mapillary", s.label, num_classes=7).shape == hw
        assert read_image(s.image, (4, 6)).shape == (4, 6, 3)
        assert read_label("mapillary", s.label, (4, 6), num_classes=7).shape == (4, 6)


def test_mapillary_labels_by_hand_and_ids_outside_refused(tmp_path):
    raw, want = cases_map(MAPILLARY_CASES)
    write_palette_png(tmp_path / "l.png", raw)  # Vistas ships palette PNGs whose indices are the ids
    np.testing.assert_array_equal(read_label("mapillary", tmp_path / "l.png", num_classes=7), want)
    write_png(tmp_path / "gray.png", raw.astype(np.uint8))  # plain 8-bit: the same
    np.testing.assert_array_equal(read_label("mapillary", tmp_path / "gray.png", num_classes=7), want)
    raw[1, 2] = 70
    write_palette_png(tmp_path / "bad.png", raw)
    with pytest.raises(DatasetError) as e:
        read_label("mapillary", tmp_path / "bad.png", num_classes=7)
    assert str(e.value) == f"{tmp_path / 'bad.png'}: label id 70 outside the Mapillary Vistas v1.2 label ids 0..65"
    write_png(tmp_path / "colour.png", picture(0))  # a colour rendering, not the ids
    with pytest.raises(DatasetError, match="expected a single-channel label image .layout mapillary., got 3 channels"):
        read_label("mapillary", tmp_path / "colour.png", num_classes=7)
    with pytest.raises(DatasetError, match="layout mapillary: num_classes must be 7"):
        read_label("mapillary", tmp_path / "l.png", num_classes=19)


def test_mapillary_config_json_must_be_the_v12_label_list(tmp_path):
    root = make_mapillary(tmp_path / "vistas")
    from esl.io.labels import MAPILLARY_NAMES

    labels = [{"readable": n, "name": n.lower()} for n in MAPILLARY_NAMES]
    (root / "config.json").write_text(json.dumps({"labels": labels}))
    assert len(list_samples("mapillary", root, "validation")) == 2
    labels[2], labels[3] = labels[3], labels[2]
    (root / "config.json").write_text(json.dumps({"labels": labels}))
    with pytest.raises(DatasetError, match=r"config.json: label 2 is 'Fence', expected 'Curb' \(Mapillary Vistas v1.2"):
        list_samples("mapillary", root, "validation")
    (root / "config_v1.2.json").write_text(json.dumps({"labels": labels[:3] * 41 + labels[:1]}))  # v2.0's count
    with pytest.raises(DatasetError, match="config_v1.2.json: 124 labels, expected the 66 of Mapillary Vistas v1.2"):
        list_samples("mapillary", root, "validation")


def test_mapillary_missing_labels_and_orphans(tmp_path):
    root = make_mapillary(tmp_path / "vistas")
    (root / "validation/labels/va0_001xyz.png").unlink()
    with pytest.raises(DatasetError, match=r"va0_001xyz.jpg: no label found \(expected .*validation/labels/va0_001"):
        list_samples("mapillary", root, "validation")
    (root / "training/images/tr0_000xyz.jpg").unlink()
    assert labels_without_image("mapillary", root, "training") == [str(root / "training/labels/tr0_000xyz.png")]
    write_png(tmp_path / "v2/training/images/a.jpg", picture(0))  # no label folder
    with pytest.raises(DatasetError, match=r"training/labels: label folder not found \(layout mapillary; nor "):
        list_samples("mapillary", tmp_path / "v2", "training")


# ------------------------------------------------------------------------------------------- acdc


def test_acdc_listing_over_conditions(tmp_path):
    root = make_acdc(tmp_path / "ACDC")
    train = list_samples("acdc", root, "train")
    assert len(train) == 8 and [s.name for s in train] == sorted(s.name for s in train)
    assert {Path(s.image).parts[-4] for s in train} == {"fog", "night", "rain", "snow"}
    for s in train:
        assert s.label == s.image.replace("rgb_anon", "gt", 1).replace("_rgb_anon.png", "_gt_labelTrainIds.png")
    assert conditions_of("acdc") == DEFAULT_CONDITIONS["acdc"] == ("fog", "night", "rain", "snow")
    night = list_samples("acdc", root, "val", conditions=["night"])
    assert len(night) == 1 and "/rgb_anon/night/val/" in night[0].image
    assert len(list_samples("acdc", root, "val", conditions=["snow", "fog"])) == 2
    test = list_samples("acdc", root, "test")  # no labels ship: listed without
    assert len(test) == 4 and all(s.label is None for s in test)
    ref = list_samples("acdc", root, "train_ref", conditions=["rain"])  # the reference images
    assert [s.name for s in ref] == ["GOPR020_frame_000008", "GOPR021_frame_000009"] and ref[0].label is None
    assert check_samples("acdc", train, 19) == 8


def test_acdc_conditions_are_checked(tmp_path):
    root = make_acdc(tmp_path / "ACDC", conditions=("fog", "night"))
    with pytest.raises(DatasetError, match=r"^layout acdc: unknown condition 'sunny'; expected some of fog, night, "):
        list_samples("acdc", root, "val", conditions=["fog", "sunny"])
    with pytest.raises(DatasetError, match="rgb_anon/rain/val: image .condition rain, split val. folder not found"):
        list_samples("acdc", root, "val")  # the default is all four
    with pytest.raises(DatasetError, match="layout cityscapes has no conditions .got night.; leave data.target.cond"):
        list_samples("cityscapes", root, "val", conditions=["night"])
    with pytest.raises(DatasetError, match="layout acdc: conditions is empty"):
        conditions_of("acdc", [])
    with pytest.raises(DatasetError, match="given twice"):
        conditions_of("acdc", ["fog", "fog"])
    (root / "gt/night/val").rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match=r"gt/night/val: label \(condition night, split val\) folder not found"):
        list_samples("acdc", root, "val", conditions=["fog", "night"])


def test_acdc_list_file_entries(tmp_path):
    root = make_acdc(tmp_path / "ACDC")
    lst = tmp_path / "list.txt"
    lst.write_text("night/val/GOPR010/GOPR010_frame_000006\nfog/val/GOPR000/GOPR000_frame_000002_rgb_anon.png\n")
    assert [s.name for s in list_samples("acdc", root, "val", lst)] == ["GOPR010_frame_000006", "GOPR000_frame_000002"]


def test_acdc_labels_by_hand_and_values_outside_refused(tmp_path):
    trainids = np.array([[0, 1, 9, 10], [13, 18, 255, 8]], np.uint8)
    path = tmp_path / "x_gt_labelTrainIds.png"
    write_png(path, trainids)
    np.testing.assert_array_equal(read_label("acdc", path), trainids)
    np.testing.assert_array_equal(read_label("acdc", path, num_classes=7), [[0, 0, 0, 4], [6, 6, 255, 3]])
    np.testing.assert_array_equal(read_label("dark_zurich", path, num_classes=16), [[0, 1, 255, 9], [12, 15, 255, 8]])
    write_png(path, np.array([[0, 19]], np.uint8))
    with pytest.raises(DatasetError) as e:
        read_label("acdc", path)
    assert str(e.value) == f"{path}: label value 19 outside 0..18/255 (Cityscapes trainIds)"
    ids = tmp_path / "x_gt_labelIds.png"  # the label ids ACDC also ships, mapped as Cityscapes'
    write_png(ids, np.array([[7, 26, 0, 33]], np.uint8))
    np.testing.assert_array_equal(read_label("acdc", ids), [[0, 13, 255, 18]])
    write_png(ids, np.array([[7, 40]], np.uint8))
    with pytest.raises(DatasetError, match="label id 40 outside the Cityscapes label ids 0..33/255"):
        read_label("acdc", ids)


def test_acdc_orphans_and_fingerprint(tmp_path):
    root = make_acdc(tmp_path / "ACDC", conditions=("fog", "snow"))
    whole = fingerprint("acdc", root, "train", conditions=["fog", "snow"])
    assert fingerprint("acdc", root, "train", conditions=["fog"]) != whole
    missing = fingerprint("acdc", root, "train", conditions=["fog", "rain"])  # the error, hashed
    assert missing == fingerprint("acdc", root, "train", conditions=["fog", "rain"]) != whole
    image = root / "rgb_anon/snow/train/GOPR010/GOPR010_frame_000004_rgb_anon.png"
    image.unlink()
    assert fingerprint("acdc", root, "train", conditions=["fog", "snow"]) != whole
    assert labels_without_image("acdc", root, "train", conditions=["fog", "snow"]) == [
        str(root / "gt/snow/train/GOPR010/GOPR010_frame_000004_gt_labelTrainIds.png")
    ]
    assert labels_without_image("acdc", root, "train", conditions=["fog"]) == []


# ------------------------------------------------------------------------------------------- dark zurich


def test_dark_zurich_listing(tmp_path):
    root = make_dark_zurich(tmp_path / "DZ")
    assert conditions_of("dark_zurich") == ("night",)
    train = list_samples("dark_zurich", root, "train")  # night by default, no labels ship
    assert len(train) == 2 and all("/train/night/" in s.image and s.label is None for s in train)
    assert len(list_samples("dark_zurich", root, "train", conditions=["day", "night", "twilight"])) == 6
    val = list_samples("dark_zurich", root, "val")
    assert [s.label for s in val] == [
        str(root / f"gt/val/night/GOPRn{i}/GOPRn{i}_frame_00000{6 + i}_gt_labelTrainIds.png") for i in range(2)
    ]
    assert check_samples("dark_zurich", val, 19) == 2
    assert list_samples("dark_zurich", root, "test")[0].label is None
    with pytest.raises(DatasetError, match=r"rgb_anon/val/twilight: image \(condition twilight, split val\) folder"):
        list_samples("dark_zurich", root, "val", conditions=["twilight"])
    with pytest.raises(DatasetError, match="layout dark_zurich: unknown condition 'fog'; expected some of day, night"):
        list_samples("dark_zurich", root, "val", conditions=["fog"])
    (root / "gt/val/night/GOPRn1/GOPRn1_frame_000007_gt_labelTrainIds.png").unlink()
    with pytest.raises(DatasetError, match="GOPRn1_frame_000007_rgb_anon.png: no label found .expected .*_gt_labelIds"):
        list_samples("dark_zurich", root, "val")


def test_an_unlabelled_sample_has_no_label_to_read():
    with pytest.raises(DatasetError, match="no label: the sample is of an unlabelled split"):
        read_label("dark_zurich", None)


# ------------------------------------------------------------------------------------------- tiny real runs

H, W = 24, 48


def make_gta5(root: Path, n=3):
    for i in range(n):
        write_png(root / "images" / f"{i:05d}.png", picture(i, H, W))
        write_palette_png(root / "labels" / f"{i:05d}.png", np.random.default_rng(i).integers(0, 34, (H, W)))


def tiny_target_config(workdir: Path, layout: str) -> dict:
    """TINY with a miniature GTA5 source and the miniature `layout` target; one method, no snapshots: seconds."""
    cfg = copy.deepcopy({k: v for k, v in TINY.items() if k != "toy"})
    cfg["toy"] = None
    make_gta5(workdir / "GTA5")
    target = {"layout": layout, "root": str(workdir / layout), "size": [16, 32]}
    if layout == "mapillary":
        make_mapillary(workdir / layout, splits=(("training", 3), ("validation", 2)))
        target |= {"train_split": "training", "val_split": "validation"}
    elif layout == "acdc":
        make_acdc(workdir / layout, per_split=(("train", 1), ("val", 1)), hw=(H, W))
        target |= {"train_split": "train", "val_split": "val", "conditions": ["fog", "night", "rain", "snow"]}
    else:
        make_dark_zurich(workdir / layout, n_train=3, n_val=2, hw=(H, W))
        target |= {"train_split": "train", "val_split": "val"}
    cfg["experiment"] = f"tiny_{layout}"
    cfg["data"] = {
        "num_classes": NUM_CLASSES[layout],
        "mean_bgr": TINY["data"]["mean_bgr"],
        "source": {"layout": "gta5", "root": str(workdir / "GTA5"), "split": "all", "size": [16, 32]},
        "target": target,
    }
    for stage in ("pretrain", "selftrain"):
        cfg[stage].update(snapshot_every=0, save_every=100)
    cfg["pseudo_labels"] = {"methods": ["esl"], "esl": {"floor": 0.1}}
    cfg["evaluate"] = {"batch_size": 4}
    cfg["entropy"] = {"size": None, "pictures": 1}
    return cfg


def test_the_conditions_reach_the_index_jobs_and_a_bad_one_is_refused_by_the_schema(tmp_path):
    cfg = tiny_target_config(tmp_path, "acdc")
    cfg["data"]["target"]["conditions"] = ["snow", "night"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    with dry_run(tmp_path) as wf:
        index = {j.wildcards["split"]: j.params for j in wf.dag.jobs if j.rule.name == "index"}
    root = cfg["data"]["target"]["root"]
    for split, name in (("target_train", "train"), ("target_val", "val")):
        assert index[split].dataset == {
            "layout": "acdc",
            "root": root,
            "split": name,
            "list_file": None,
            "conditions": ["snow", "night"],
        }
        assert index[split].fingerprint == fingerprint("acdc", root, name, conditions=["snow", "night"])
    assert "conditions" not in index["source_train"].dataset
    del cfg["data"]["target"]["conditions"]  # absent: no key (params as before), the layout's default listed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    with dry_run(tmp_path) as wf:
        (job,) = [j for j in wf.dag.jobs if j.rule.name == "index" and j.wildcards["split"] == "target_val"]
    assert "conditions" not in job.params.dataset and job.params.fingerprint == fingerprint("acdc", root, "val")
    cfg["data"]["target"]["conditions"] = ["night", "sunny"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml"]
    proc = subprocess.run([*snakemake, "-n"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "config data.target.conditions.1: 'sunny' is not one of" in proc.stdout + proc.stderr


@pytest.mark.parametrize("layout", ["mapillary", "acdc", "dark_zurich"])
def test_a_tiny_run_on_each_target(tmp_path, layout):
    """The whole workflow on Mapillary (7 classes: its figures too); on ACDC and Dark Zurich (19 classes, as the
    paper configs' runs) the summary and the example figure (their ground truth, or none) only, to spare CI time."""
    cfg = tiny_target_config(tmp_path, layout)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = tmp_path / "results" / cfg["experiment"]
    rel = f"results/{cfg['experiment']}"
    targets = [] if layout == "mapillary" else [f"{rel}/summary.csv", f"{rel}/plots/examples.png"]
    snakemake = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml"]
    proc = subprocess.run(
        [*snakemake, "-q", "--cores", "2", "--max-threads", "1", *targets], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = read_csv(res / "summary.csv")
    assert list(summary["model"]) == ["pretrain", "esl_r1"]
    names = NAMES_7 if layout == "mapillary" else list(CLASS_NAMES)
    assert [c.removeprefix("iou_") for c in summary.columns if c.startswith("iou_")] == names
    assert list(read_csv(res / "pseudo_labels/esl_r1_thresholds.csv")["class_name"]) == names
    target_train, target_val = (
        read_csv(res / f"index/{s}.csv", keep_default_na=False) for s in ("target_train", "target_val")
    )
    assert len(target_train) == {"mapillary": 3, "acdc": 4, "dark_zurich": 3}[layout]
    assert len(target_val) == {"mapillary": 2, "acdc": 4, "dark_zurich": 2}[layout]
    assert (target_val["label"] != "").all()
    assert (target_train["label"] == "").all() == (layout == "dark_zurich")  # Dark Zurich's train ships no labels
    assert (res / "plots/examples.png").is_file()
    if layout == "mapillary":
        assert (res / "plots/class_iou.png").is_file() and (res / "plots/entropy_pretrain.png").is_file()
