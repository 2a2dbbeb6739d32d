"""The dataset as part of the workflow's state: `esl.io.layouts.fingerprint` (the rule `index`'s param) changes when a
file of the split is edited, added or deleted, and only then; and the index log counts labels without their image.
The workflow side (an edited file re-plans the index and what follows) is in tests/test_workflow.py."""

import io
import os
import shutil

import cv2
import numpy as np
import pytest

from esl.io.layouts import fingerprint, labels_without_image, list_samples
from esl.stages.index import Params, run
from esl.toy import generate_toy

TOY = dict(seed=0, height=32, width=64, n_source=3, n_target_train=2, n_target_val=2, shift=1.0)


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def make_trainids(root, split="train", stems=("a", "b", "c")):
    rng = np.random.default_rng(0)
    for s in stems:
        write_png(root / split / "images" / f"{s}.png", rng.integers(0, 255, (8, 12, 3), dtype=np.uint8))
        write_png(root / split / "labels" / f"{s}.png", rng.integers(0, 19, (8, 12), dtype=np.uint8))
    return root


def touch_later(path):
    """Move a file's mtime on by a second (an edit that keeps the size would do the same)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_the_fingerprint_follows_the_files_of_the_split(tmp_path):
    root = make_trainids(tmp_path / "data")
    fp = fingerprint("trainids", root, "train")
    assert len(fp) == 16 and fingerprint("trainids", root, "train") == fp  # stable
    (root / "train/notes.txt").write_text("not a sample")
    make_trainids(root, "val", ("z",))  # another split
    assert fingerprint("trainids", root, "train") == fp

    touch_later(root / "train/labels/b.png")  # an edited label
    edited = fingerprint("trainids", root, "train")
    assert edited != fp
    (root / "train/images/c.png").unlink()  # a deleted image (its label stays behind)
    deleted = fingerprint("trainids", root, "train")
    assert deleted not in (fp, edited)
    make_trainids(root, "train", ("d",))  # an added sample
    assert fingerprint("trainids", root, "train") not in (fp, edited, deleted)

    # paths relative to the root, mtimes kept: a copy has the same fingerprint, whatever its place
    copy = tmp_path / "elsewhere/data"
    shutil.copytree(root, copy)
    assert fingerprint("trainids", copy, "train") == fingerprint("trainids", root, "train")


def test_the_fingerprint_of_a_list_file_split_covers_the_listed_files_and_the_list(tmp_path):
    root = make_trainids(tmp_path / "data")
    listed = tmp_path / "list.txt"
    listed.write_text("b\na\n")
    fp = fingerprint("trainids", root, "train", listed)
    touch_later(root / "train/labels/c.png")  # not listed: not in the index, no re-run
    assert fingerprint("trainids", root, "train", listed) == fp
    touch_later(root / "train/labels/a.png")
    assert fingerprint("trainids", root, "train", listed) != fp
    fp = fingerprint("trainids", root, "train", listed)
    listed.write_text("a\nb\n")  # another order is another index
    assert fingerprint("trainids", root, "train", listed) != fp


def test_a_split_that_cannot_be_listed_still_has_a_fingerprint(tmp_path):
    """Planning the workflow must not fail on a missing dataset: the index job reports it."""
    assert fingerprint("trainids", tmp_path / "absent", "train") != fingerprint("trainids", tmp_path / "other", "train")
    root = make_trainids(tmp_path / "data")
    (root / "train/labels/a.png").unlink()  # list_samples refuses an image without its label
    assert len(fingerprint("trainids", root, "train")) == 16


def test_generated_data_have_the_same_fingerprint_before_and_after_generation(tmp_path):
    """Toy data made by the workflow: the index's param, taken when Snakemake plans the job (before the files exist),
    must equal the one of the next start (after), and two generations (other times, other folders) must agree, or the
    toy default would re-index and re-run everything (and cached pretraining would never be shared)."""

    def fp(top, split="val"):
        return fingerprint("trainids", top / "target", split, manifest=top / "manifest.csv")

    a, b = tmp_path / "a", tmp_path / "b"
    before = fp(a)
    generate_toy(a, **TOY)
    generate_toy(b, **TOY)
    assert fp(a) == before == fp(b)
    assert fp(a, "train") == fp(b, "train")

    touch_later(a / "target/val/labels/target_val_0001.png")
    edited = fp(a)
    assert edited != before and fp(a, "train") == fp(b, "train")  # only that split
    (b / "target/val/images/target_val_0000.png").unlink()
    (b / "target/val/labels/target_val_0000.png").unlink()  # a whole sample gone
    assert fp(b) not in (before, edited)
    generate_toy(b, **TOY)  # generated again: as new
    assert fp(b) == before
    shutil.copy(b / "target/val/images/target_val_0000.png", b / "target/val/images/extra.png")
    shutil.copy(b / "target/val/labels/target_val_0000.png", b / "target/val/labels/extra.png")
    assert fp(b) != before  # a sample the generator did not write


@pytest.mark.parametrize("layout", ["trainids", "gta5", "cityscapes"])
def test_labels_without_their_image_are_found(tmp_path, layout):
    rng = np.random.default_rng(1)
    img, lab = rng.integers(0, 255, (8, 12, 3), dtype=np.uint8), np.zeros((8, 12), np.uint8)
    root = tmp_path / layout
    if layout == "trainids":
        split, images, labels = "train", root / "train/images", root / "train/labels"
        pairs = [(images / f"{s}.png", labels / f"{s}.png") for s in "abc"]
    elif layout == "gta5":
        split, images, labels = "all", root / "images", root / "labels"
        pairs = [(images / f"{s}.png", labels / f"{s}.png") for s in "abc"]
    else:
        split = "val"
        images, labels = root / "leftImg8bit/val/city", root / "gtFine/val/city"
        pairs = [(images / f"{s}_leftImg8bit.png", labels / f"{s}_gtFine_labelIds.png") for s in "abc"]
        write_png(labels / "a_gtFine_color.png", img)  # not a label: never counted
    for image, label in pairs:
        write_png(image, img)
        write_png(label, lab)
    assert labels_without_image(layout, root, split) == []
    pairs[1][0].unlink()
    assert labels_without_image(layout, root, split) == [str(pairs[1][1])]
    assert [s.name for s in list_samples(layout, root, split)] == ["a", "c"]
    assert labels_without_image(layout, tmp_path / "absent", split) == []


def test_the_index_log_counts_labels_without_their_image(tmp_path):
    root = make_trainids(tmp_path / "data", stems=("a", "b", "c", "d"))
    (root / "train/images/b.png").unlink()
    (root / "train/images/d.png").unlink()
    params = Params.from_rule(
        {
            "dataset": {"layout": "trainids", "root": str(root), "split": "train", "list_file": None},
            "num_classes": 19,
            "fingerprint": fingerprint("trainids", root, "train"),
        }
    )
    log = io.StringIO()
    run(params, [], [str(tmp_path / "index.csv")], log=log)
    lines = log.getvalue().splitlines()
    assert lines[0] == (
        "warning: 2 label file(s) without an image, not indexed (restore the image or delete the label), e.g."
        f" {root}/train/labels/b.png"
    )
    assert lines[1].startswith("index: 2 samples") and params.fingerprint in lines[2]
