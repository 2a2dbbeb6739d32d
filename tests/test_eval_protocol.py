"""Evaluation outputs: class names per label space, mIoU-16 and mIoU-13 for SYNTHIA, and the summary columns."""

import numpy as np
import pandas as pd

from esl.evaluate import iou_table
from esl.h5io import write_csv
from esl.pseudo_labels import class_name
from esl.summary import summarize

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
    assert [class_name(c, 16) for c in range(16)] == NAMES_16
    assert [class_name(c, 19) for c in range(19)] == NAMES_19


def test_summary_carries_miou13(tmp_path):
    for model, seed in (("pretrain", 2), ("esl_r1", 3)):
        write_csv(iou_table(random_confusion(16, seed)), tmp_path / f"{model}.csv", {})
    table = summarize(["pretrain", "esl_r1"], {m: tmp_path / f"{m}.csv" for m in ("pretrain", "esl_r1")}, {})
    assert list(table.columns[:3]) == ["model", "mIoU", "mIoU-13"]
    assert "iou_wall" in table.columns and "iou_terrain" not in table.columns
    ref = pd.read_csv(tmp_path / "esl_r1.csv", comment="#").set_index("class_name")["iou"]
    assert table.loc[1, "mIoU-13"] == ref["mIoU-13"]
