"""Dataset layouts on miniature copies written with the real encodings."""

import struct
import zlib

import cv2
import numpy as np
import pytest
import torch

from esl.io.images import check_samples, read_image, read_label
from esl.io.labels import CLASS_NAMES_13, CLASS_NAMES_16, CLASSES_13, label_space, to_16_classes, to_19_classes
from esl.io.layouts import NUM_CLASSES, DatasetError, Sample, check_num_classes, list_samples, read_index, write_index
from esl.io.provenance import provenance, read_provenance

H, W = 6, 8

# Written independently of the module: (raw id, expected trainId), anything else → 255.
GTA_TABLE = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10}
GTA_TABLE |= {24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
SYNTHIA_TABLE = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9, 10: 10, 17: 11, 8: 12, 19: 13}
SYNTHIA_TABLE |= {12: 14, 11: 15}
TO16 = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 255, 10: 9, 11: 10, 12: 11, 13: 12, 14: 255}
TO16 |= {15: 13, 16: 255, 17: 14, 18: 15, 255: 255}


def expected(raw, table):
    return np.vectorize(lambda v: table.get(int(v), 255))(raw).astype(np.uint8)


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def write_palette_png(path, index, depth=8):
    """A palette PNG (colour type 3), as GTA5 labels ship; the palette colours are irrelevant."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    h, w = index.shape
    per_byte = 8 // depth
    rows = []
    for row in index.astype(np.uint8):
        padded = np.zeros(-(-w // per_byte) * per_byte, np.uint8)
        padded[:w] = row
        packed = np.zeros(len(padded) // per_byte, np.uint8)
        for k in range(per_byte):
            packed |= padded[k::per_byte] << (8 - depth * (k + 1))
        rows.append(b"\x00" + packed.tobytes())
    palette = bytes(np.random.default_rng(0).integers(0, 256, 3 * (1 << depth), dtype=np.uint8))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, 3, 0, 0, 0))
    data += chunk(b"PLTE", palette) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def image(seed):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def all_ids(values, seed):
    """An H×W map holding every value of `values` (cycled) in a shuffled order."""
    flat = np.resize(np.asarray(values), H * W)
    return np.random.default_rng(seed).permutation(flat).reshape(H, W)


# ------------------------------------------------------------------------------------------- builders


def make_trainids(root, split="train", stems=("b", "a", "c")):
    for i, s in enumerate(stems):
        write_png(root / split / "images" / f"{s}.png", image(i))
        write_png(root / split / "labels" / f"{s}.png", all_ids(list(range(19)) + [255], i).astype(np.uint8))
    return root


def make_gta5(root, palette=True):
    raws = {}
    for i, s in enumerate(("00002", "00001", "00010")):
        raw = all_ids(range(0, 40), i).astype(np.uint8)
        write_png(root / "images" / f"{s}.png", image(i))
        if palette:
            write_palette_png(root / "labels" / f"{s}.png", raw)
        else:
            write_png(root / "labels" / f"{s}.png", raw)
        raws[s] = raw
    return raws


def make_synthia(root):
    raws = {}
    for i, s in enumerate(("0000001", "0000000")):
        r = all_ids(range(0, 24), i).astype(np.uint16)
        inst = np.random.default_rng(i).integers(0, 60000, (H, W), dtype=np.uint16)
        bgr = np.stack([np.zeros_like(r), inst, r], axis=2)  # written as BGR: id in R = index 2
        write_png(root / "RGB" / f"{s}.png", image(i))
        write_png(root / "GT" / "LABELS" / f"{s}.png", bgr)
        raws[s] = r
    return raws


CS_IDS = list(range(0, 34)) + [255]


def make_cityscapes(root, split="val", trainids_for=()):
    raws = {}
    for i, (city, n) in enumerate(
        (("frankfurt", "000000_000294"), ("aachen", "000001_000019"), ("frankfurt", "000000_000019"))
    ):
        stem = f"{city}_{n}"
        raw = all_ids(CS_IDS, i).astype(np.uint8)
        write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image(i))
        write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", raw)
        write_png(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", image(i + 10))
        if stem in trainids_for:
            write_png(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", expected(raw, GTA_TABLE))
        raws[stem] = raw
    return raws


# ------------------------------------------------------------------------------------------- constants


def test_constants():
    assert NUM_CLASSES == {
        "trainids": 19,
        "gta5": 19,
        "synthia": 16,
        "cityscapes": 19,
        "mapillary": 7,  # tests/test_targets.py
        "acdc": 19,
        "dark_zurich": 19,
    }
    assert CLASS_NAMES_16 == (
        "road",
        "sidewalk",
        "building",
        "wall",
        "fence",
        "pole",
        "light",
        "sign",
        "vegetation",
        "sky",
        "person",
        "rider",
        "car",
        "bus",
        "motorcycle",
        "bicycle",
    )
    assert CLASSES_13 == (0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    assert "wall" not in CLASS_NAMES_13 and len(CLASS_NAMES_13) == 13
    assert label_space(16).names == CLASS_NAMES_16 and label_space(19).num_classes == 19
    assert label_space(3).names == ("class0", "class1", "class2")


def test_to_16_and_back():
    x = np.array(list(range(19)) + [255], dtype=np.uint8).reshape(4, 5)
    out = to_16_classes(x)
    assert out.dtype == np.uint8 and out.shape == x.shape
    np.testing.assert_array_equal(out, expected(x, TO16))
    back = to_19_classes(out)
    keep = out != 255
    np.testing.assert_array_equal(back[keep], x[keep])
    assert (back[~keep] == 255).all()
    with pytest.raises(ValueError, match="value 19 outside 0..18/255"):
        to_16_classes(np.array([3, 19]))


def test_check_num_classes():
    check_num_classes("trainids", 5)
    check_num_classes("synthia", 19)
    with pytest.raises(DatasetError, match="layout gta5: num_classes must be 19"):
        check_num_classes("gta5", 13)
    with pytest.raises(DatasetError, match="unknown dataset layout 'kitti'"):
        check_num_classes("kitti", 19)


# ------------------------------------------------------------------------------------------- trainids


def test_trainids_listing_and_labels(tmp_path):
    root = make_trainids(tmp_path / "toy")
    make_trainids(tmp_path / "toy", split="val", stems=("z",))
    samples = list_samples("trainids", root, "train")
    assert [s.name for s in samples] == ["a", "b", "c"]
    assert samples[0] == Sample("a", str(root / "train/images/a.png"), str(root / "train/labels/a.png"))
    assert [s.name for s in list_samples("trainids", root, "val")] == ["z"]
    lab = read_label("trainids", samples[0].label)
    np.testing.assert_array_equal(lab, cv2.imread(samples[0].label, cv2.IMREAD_UNCHANGED))
    np.testing.assert_array_equal(read_image(samples[1].image), image(0))
    assert read_image(samples[1].image, size=(12, 4)).shape == (12, 4, 3)
    small = read_label("trainids", samples[0].label, size=(3, 4))
    assert small.shape == (3, 4) and small.dtype == np.uint8
    # pixel-centre nearest (as PIL's NEAREST): output pixel i samples source floor((i + 0.5) * 2)
    np.testing.assert_array_equal(small, lab[1::2, 1::2])
    assert all(s.label is None for s in list_samples("trainids", root, "train", with_labels=False))


def test_trainids_value_outside(tmp_path):
    root = make_trainids(tmp_path / "toy")
    bad = np.zeros((H, W), np.uint8)
    bad[2, 3] = 42
    write_png(root / "train" / "labels" / "b.png", bad)
    with pytest.raises(DatasetError, match=r"b\.png: label value 42 outside 0\.\.18/255"):
        read_label("trainids", root / "train" / "labels" / "b.png")
    # the same file is valid for a 50-class toy, and 42 is out of a 10-class one
    assert read_label("trainids", root / "train" / "labels" / "b.png", num_classes=50)[2, 3] == 42
    with pytest.raises(DatasetError, match=r"b\.png: label value 42 outside 0\.\.9/255"):
        read_label("trainids", root / "train" / "labels" / "b.png", num_classes=10)
    with pytest.raises(DatasetError, match=r"b\.png: label value 42"):
        check_samples("trainids", list_samples("trainids", root, "train"), 19)


def test_errors_missing(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere: dataset root not found \(layout gta5\)"):
        list_samples("gta5", tmp_path / "nowhere", "all")
    root = make_trainids(tmp_path / "toy")
    with pytest.raises(DatasetError, match=r"test: split 'test' folder not found \(layout trainids\)"):
        list_samples("trainids", root, "test")
    (tmp_path / "gta").mkdir()
    (tmp_path / "gta" / "images").mkdir()
    with pytest.raises(DatasetError, match=r"gta/labels: label folder not found \(layout gta5\)"):
        list_samples("gta5", tmp_path / "gta", "all")
    with pytest.raises(DatasetError, match=r"gta/images: no images found \(layout gta5\)"):
        list_samples("gta5", tmp_path / "gta", "all", with_labels=False)
    with pytest.raises(DatasetError, match=r"GT/LABELS: label folder not found \(layout synthia\)"):
        (tmp_path / "syn" / "RGB").mkdir(parents=True)
        list_samples("synthia", tmp_path / "syn", "all")
    with pytest.raises(DatasetError, match=r"leftImg8bit/val: image folder not found \(layout cityscapes\)"):
        list_samples("cityscapes", tmp_path, "val")
    (root / "train" / "labels" / "a.png").unlink()
    (root / "train" / "labels" / "c.png").unlink()
    with pytest.raises(DatasetError, match=r"images/a\.png: no label found"):
        list_samples("trainids", root, "train")
    assert len(list_samples("trainids", root, "train", with_labels=False)) == 3


def test_unreadable_image_and_label(tmp_path):
    root = make_trainids(tmp_path / "toy")
    (root / "train" / "images" / "b.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"b\.png: cannot read image"):
        read_image(root / "train" / "images" / "b.png")
    with pytest.raises(DatasetError, match=r"missing\.png: image not found"):
        read_image(root / "missing.png")
    samples = list_samples("trainids", root, "train")
    with pytest.raises(DatasetError, match=r"images/b\.png: cannot read image"):
        check_samples("trainids", samples, 19)
    assert check_samples("trainids", samples, 19, sample_every=2) == 2  # decodes a and c, skips the broken b
    (root / "train" / "labels" / "a.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetError, match=r"labels/a\.png: cannot read label"):
        read_label("trainids", root / "train" / "labels" / "a.png")
    (root / "train" / "labels" / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"labels/b\.png: label not found \(sample b\)"):
        check_samples("trainids", samples, 19, sample_every=100)


# ------------------------------------------------------------------------------------- resizing like the reference


@pytest.fixture
def pil_image():
    """Pillow's `Image` module: the reference resize. Required (an ImportError here fails the test, never skips)."""
    from PIL import Image

    return Image


def textured_png(path, h, w, seed=0):
    """A photo-like test image written as PNG: multi-scale noise, pixel noise, gradients, sharp-edged rectangles and
    one-pixel lines, different in each channel (so that a channel swap would show)."""
    rng = np.random.default_rng(seed)
    img = rng.normal(100, 20, (h, w, 3)).astype(np.float32)
    for s in (8, 64):
        small = rng.normal(0, 30, (h // s + 2, w // s + 2, 3)).astype(np.float32)
        img += cv2.resize(small, (w // s * s + 2 * s, h // s * s + 2 * s), interpolation=cv2.INTER_LINEAR)[:h, :w]
    img += (
        np.linspace(0, 80, w, dtype=np.float32)[None, :, None] + np.linspace(0, 40, h, dtype=np.float32)[:, None, None]
    )
    for _ in range(30):
        y, x = rng.integers(0, h), rng.integers(0, w)
        img[y : y + rng.integers(4, 200), x : x + rng.integers(4, 300)] = rng.uniform(0, 255, 3)
    img[::7] = 255 - img[::7]
    img = np.clip(img, 0, 255).astype(np.uint8)
    assert cv2.imwrite(str(path), img)
    return path


def pil_reference(image_module, path, h, w):
    """ADVENT's loader: PIL open, convert('RGB'), resize((W, H), BICUBIC), then RGB → BGR."""
    with image_module.open(path) as im:
        rgb = np.asarray(im.convert("RGB").resize((w, h), image_module.BICUBIC))
    return rgb[:, :, ::-1]


def agreement(a, b):
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()), float((d == 0).mean())


@pytest.mark.parametrize(
    "src_hw, size",
    [((1024, 2048), (512, 1024)), ((1052, 1914), (720, 1280)), ((180, 320), (360, 640))],
    ids=["cityscapes", "gta5", "enlarge"],
)
def test_read_image_resizes_like_pil_bicubic(tmp_path, pil_image, src_hw, size):
    path = textured_png(tmp_path / "img.png", *src_hw)
    ref = pil_reference(pil_image, path, *size)
    out = read_image(path, size)
    assert out.shape == (*size, 3) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    max_diff, exact = agreement(out, ref)
    assert max_diff <= 2 and exact >= 0.99, (max_diff, exact)
    # The bar can fail: plain cv2 bicubic (no antialiasing, another kernel) does not meet it, nor a channel swap.
    cubic = cv2.resize(cv2.imread(str(path), cv2.IMREAD_COLOR), size[::-1], interpolation=cv2.INTER_CUBIC)
    max_diff, exact = agreement(cubic, ref)
    assert max_diff > 2 and exact < 0.99, (max_diff, exact)
    assert agreement(out[:, :, ::-1], ref)[1] < 0.99


def test_read_image_at_its_own_size_is_the_decoded_image(tmp_path):
    path = textured_png(tmp_path / "img.png", 64, 96, seed=1)
    np.testing.assert_array_equal(read_image(path, (64, 96)), cv2.imread(str(path), cv2.IMREAD_COLOR))


# ------------------------------------------------------------------------------------------- gta5


@pytest.mark.parametrize("palette", [True, False])
def test_gta5(tmp_path, palette):
    raws = make_gta5(tmp_path / "gta", palette=palette)
    samples = list_samples("gta5", tmp_path / "gta", "all")
    assert [s.name for s in samples] == ["00001", "00002", "00010"]
    assert list_samples("gta5", tmp_path / "gta", "train") == samples
    for s in samples:
        np.testing.assert_array_equal(read_label("gta5", s.label), expected(raws[s.name], GTA_TABLE))
        np.testing.assert_array_equal(
            read_label("gta5", s.label, num_classes=16), expected(expected(raws[s.name], GTA_TABLE), TO16)
        )
    assert check_samples("gta5", samples, 19) == 3
    with pytest.raises(DatasetError, match="split must be 'all' or 'train'"):
        list_samples("gta5", tmp_path / "gta", "val")


def test_palette_low_bit_depth(tmp_path):
    raw = all_ids(range(16), 3)
    write_palette_png(tmp_path / "l.png", raw, depth=4)
    np.testing.assert_array_equal(read_label("trainids", tmp_path / "l.png", num_classes=16), raw)


def test_list_file(tmp_path):
    make_gta5(tmp_path / "gta")
    lst = tmp_path / "list.txt"
    lst.write_text("00010.png\n\n# a comment\n00001\nimages/00002.png\n")
    names = [s.name for s in list_samples("gta5", tmp_path / "gta", "mysplit", list_file=lst)]
    assert names == ["00010", "00001", "00002"]
    lst.write_text("00010.png\n00003.png\n")
    with pytest.raises(DatasetError, match=r"list\.txt: entry '00003\.png' matches no image"):
        list_samples("gta5", tmp_path / "gta", "all", list_file=lst)
    lst.write_text("00010.png\n00010\n")
    with pytest.raises(DatasetError, match=r"list\.txt: sample '00010' listed twice"):
        list_samples("gta5", tmp_path / "gta", "all", list_file=lst)
    lst.write_text("# nothing\n")
    with pytest.raises(DatasetError, match="no images found"):
        list_samples("gta5", tmp_path / "gta", "all", list_file=lst)
    with pytest.raises(DatasetError, match=r"absent\.txt: cannot read list file"):
        list_samples("gta5", tmp_path / "gta", "all", list_file=tmp_path / "absent.txt")


# ------------------------------------------------------------------------------------------- synthia


def test_synthia(tmp_path):
    raws = make_synthia(tmp_path / "syn")
    samples = list_samples("synthia", tmp_path / "syn", "all")
    assert [s.name for s in samples] == ["0000000", "0000001"]
    assert samples[0].label.endswith("GT/LABELS/0000000.png")
    for s in samples:
        lab16 = read_label("synthia", s.label, num_classes=16)
        np.testing.assert_array_equal(lab16, expected(raws[s.name], SYNTHIA_TABLE))
        lab19 = read_label("synthia", s.label, num_classes=19)
        assert set(np.unique(lab19)) <= set(range(19)) - {9, 14, 16} | {255}
        np.testing.assert_array_equal(to_16_classes(lab19), lab16)
    assert read_label("synthia", samples[0].label, size=(3, 16), num_classes=16).shape == (3, 16)
    assert check_samples("synthia", samples, 16) == 2


def test_synthia_8bit_or_single_channel(tmp_path):
    make_synthia(tmp_path / "syn")
    p = tmp_path / "syn" / "GT" / "LABELS" / "0000001.png"
    write_png(p, np.full((H, W, 3), 3, np.uint8))
    with pytest.raises(DatasetError, match=r"0000001\.png: expected a 16-bit multi-channel SYNTHIA label.*uint8"):
        read_label("synthia", p, num_classes=16)
    write_png(p, np.full((H, W), 3, np.uint16))
    with pytest.raises(DatasetError, match=r"0000001\.png: expected a 16-bit multi-channel.*1 channel"):
        read_label("synthia", p, num_classes=16)


# ------------------------------------------------------------------------------------------- cityscapes


def test_cityscapes(tmp_path):
    raws = make_cityscapes(tmp_path / "cs", trainids_for=("aachen_000001_000019",))
    make_cityscapes(tmp_path / "cs", split="train")
    samples = list_samples("cityscapes", tmp_path / "cs", "val")
    assert [s.name for s in samples] == ["aachen_000001_000019", "frankfurt_000000_000019", "frankfurt_000000_000294"]
    assert samples[0].label.endswith("gtFine/val/aachen/aachen_000001_000019_gtFine_labelTrainIds.png")
    assert samples[1].label.endswith("gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png")
    assert samples[1].image.endswith("leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png")
    for s in samples:
        np.testing.assert_array_equal(read_label("cityscapes", s.label), expected(raws[s.name], GTA_TABLE))
        np.testing.assert_array_equal(
            read_label("cityscapes", s.label, num_classes=16), expected(expected(raws[s.name], GTA_TABLE), TO16)
        )
    lst = tmp_path / "val.txt"
    lst.write_text("frankfurt/frankfurt_000000_000294_leftImg8bit.png\naachen_000001_000019\n")
    assert [s.name for s in list_samples("cityscapes", tmp_path / "cs", "val", list_file=lst)] == [
        "frankfurt_000000_000294",
        "aachen_000001_000019",
    ]
    assert check_samples("cityscapes", samples, 19) == 3


def test_cityscapes_bad_ids(tmp_path):
    make_cityscapes(tmp_path / "cs", trainids_for=("aachen_000001_000019",))
    lab = tmp_path / "cs" / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000019_gtFine_labelIds.png"
    raw = np.full((H, W), 7, np.uint8)
    raw[0, 0], raw[1, 1] = 40, 34
    write_png(lab, raw)
    with pytest.raises(DatasetError, match=r"frankfurt_000000_000019_gtFine_labelIds\.png: label id 34 outside"):
        read_label("cityscapes", lab)
    tid = tmp_path / "cs" / "gtFine" / "val" / "aachen" / "aachen_000001_000019_gtFine_labelTrainIds.png"
    write_png(tid, np.full((H, W), 19, np.uint8))
    with pytest.raises(DatasetError, match=r"aachen_000001_000019_gtFine_labelTrainIds\.png: label value 19 outside"):
        read_label("cityscapes", tid)
    (tmp_path / "cs" / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000294_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetError, match=r"frankfurt_000000_000294_leftImg8bit\.png: no label found"):
        list_samples("cityscapes", tmp_path / "cs", "val")


# ------------------------------------------------------------------------------------------- index


def test_index_round_trip(tmp_path):
    samples = [Sample("00001", "a/00001.png", "b/00001.png"), Sample("NA", "a/NA.png", None)]
    path = tmp_path / "index.csv"
    write_index(samples, path, provenance({"layout": "gta5"}))
    assert read_index(path) == samples
    assert read_provenance(path)["config"] == {"layout": "gta5"}
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match=r"other\.csv: not a sample index"):
        read_index(tmp_path / "other.csv")


def test_the_index_reports_size_mismatches_and_grayscale_images_with_counts(tmp_path):
    """Accepted (real datasets have a few), but no longer silently: the index log says how many and shows one."""
    import io

    root = make_trainids(tmp_path / "toy")
    a = read_image(root / "train/images/a.png")
    write_png(root / "train/images/a.png", a[..., 0])  # grayscale PNG (colour type 0)
    label_c = cv2.imread(str(root / "train/labels/c.png"), cv2.IMREAD_UNCHANGED)
    write_png(root / "train/labels/c.png", label_c[:-2])  # two rows short of its image
    log = io.StringIO()
    assert check_samples("trainids", list_samples("trainids", root, "train"), 19, log=log) == 3
    lines = log.getvalue().splitlines()
    h, w = a.shape[:2]
    assert lines == [
        f"warning: 1 of 3 images differ in size from their label (each is resized to the input size on its own), "
        f"e.g. {root}/train/images/c.png {h}x{w}, label {h - 2}x{w}",
        f"warning: 1 of 3 images are grayscale (read as 3 equal channels), e.g. {root}/train/images/a.png",
    ]
    clean = make_trainids(tmp_path / "clean")
    log = io.StringIO()
    check_samples("trainids", list_samples("trainids", clean, "train"), 19, log=log)
    assert log.getvalue() == ""


def test_pseudo_labels_are_looked_up_by_image_name(tmp_path):
    """The training set pairs each image with the pseudo-label row of its NAME: tests/helpers writes the file in the
    reverse of the index's order, so a positional lookup would hand image i the labels of image n−1−i."""
    import h5py
    from helpers import MEAN, NUM_CLASSES, SIZE, write_pseudo_labels, write_split

    from esl.io.torchdata import SegmentationSet

    index = write_split(tmp_path / "target", 5, seed=2)
    path = write_pseudo_labels(index, tmp_path / "pl.h5", seed=3)
    samples = read_index(index)
    with h5py.File(path, "r") as f:
        names = [n.decode() for n in f["names"][()]]
        rows = {name: f["label"][i] for i, name in enumerate(names)}
    assert names == [s.name for s in samples][::-1]
    ds = SegmentationSet(samples, "trainids", SIZE, MEAN, NUM_CLASSES, labels=str(path))
    for i, s in enumerate(samples):
        _, label, j = ds[i]
        assert j == i and label.dtype == torch.int64 and tuple(label.shape) == SIZE
        label = label.numpy()
        np.testing.assert_array_equal(label, rows[s.name])
        # independently of the file: the kept pixels are the image's own ground truth (the helper's construction)
        gt = read_label("trainids", s.label, SIZE, num_classes=NUM_CLASSES)
        kept = label != 255
        assert kept.mean() > 0.6
        np.testing.assert_array_equal(label[kept], gt[kept])
        other = read_label("trainids", samples[len(samples) - 1 - i].label, SIZE, num_classes=NUM_CLASSES)
        if i != len(samples) // 2:  # the middle image is its own mirror
            assert (other[kept] != gt[kept]).any()  # the position's labels would not pass the check above
