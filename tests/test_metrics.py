"""Confusion matrix, IoU and mIoU against brute force and hand-made cases."""

import math

import numpy as np
import pytest
import torch
from conftest import DEVICES

from esl.ops.metrics import confusion_matrix, iou_from_confusion, mean_iou


def brute_confusion(label, pred, c, ignore=255):
    conf = [[0] * c for _ in range(c)]
    for g, p in zip(np.asarray(label).ravel().tolist(), np.asarray(pred).ravel().tolist()):
        if g == ignore or g >= c:
            continue
        conf[g][p] += 1
    return np.array(conf, dtype=np.int64)


def brute_iou(conf):
    c = len(conf)
    out = []
    for k in range(c):
        tp = conf[k][k]
        fp = sum(conf[i][k] for i in range(c)) - tp
        fn = sum(conf[k][j] for j in range(c)) - tp
        out.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
    return np.array(out)


@pytest.mark.parametrize("seed", range(5))
def test_random_vs_brute_force(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 8))
    label = rng.integers(0, c, (2, 9, 11)).astype(np.uint8)
    label[rng.random(label.shape) < 0.2] = 255
    label[rng.random(label.shape) < 0.05] = c  # >= C: skipped too
    pred = rng.integers(0, c, label.shape).astype(np.uint8)
    expected = brute_confusion(label, pred, c)
    conf = confusion_matrix(label, pred, c)
    assert conf.dtype == np.int64 and conf.shape == (c, c)
    np.testing.assert_array_equal(conf, expected)
    tconf = confusion_matrix(torch.from_numpy(label), torch.from_numpy(pred).long(), c)
    assert isinstance(tconf, np.ndarray) and tconf.dtype == np.int64
    np.testing.assert_array_equal(tconf, expected)
    np.testing.assert_array_equal(confusion_matrix(torch.from_numpy(label), pred, c), expected)  # mixed inputs
    np.testing.assert_allclose(iou_from_confusion(conf), brute_iou(expected.tolist()), equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
def test_tensors_on_device(device):
    rng = np.random.default_rng(7)
    label = rng.integers(0, 5, (3, 17, 13)).astype(np.uint8)
    label[::2, ::3] = 255
    pred = rng.integers(0, 5, label.shape)
    conf = confusion_matrix(torch.from_numpy(label).to(device), torch.from_numpy(pred).to(device), 5)
    np.testing.assert_array_equal(conf, brute_confusion(label, pred, 5))


def test_hand_made():
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 0]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 2, 0]])
    conf = confusion_matrix(label, pred, 4)
    np.testing.assert_array_equal(conf, [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    iou = iou_from_confusion(conf)
    # class 0: TP 2, FP 1, FN 1; class 1: TP 2, FP 1; class 2: TP 1, FN 1; class 3 absent everywhere → NaN
    np.testing.assert_allclose(iou[:3], [0.5, 2 / 3, 0.5])
    assert math.isnan(iou[3])
    assert mean_iou(iou) == round((0.5 + 2 / 3 + 0.5) / 3 * 100, 2) == 55.56
    assert mean_iou(iou, classes=[1]) == 66.67
    assert mean_iou(iou, classes=(0, 2, 3)) == 50.0
    assert math.isnan(mean_iou(iou, classes=[3]))


def test_predicted_but_absent_class_counts_zero():
    conf = confusion_matrix(np.array([0, 0]), np.array([0, 1]), 2)
    iou = iou_from_confusion(conf)
    np.testing.assert_allclose(iou, [0.5, 0.0])  # class 1 predicted only: IoU 0, not NaN
    assert mean_iou(iou) == 25.0


def test_custom_ignore_and_errors():
    label = np.array([0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(confusion_matrix(label, pred, 3, ignore=1), [[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="shapes differ"):
        confusion_matrix(label, pred[:3], 3)
    with pytest.raises(ValueError, match=r"prediction values outside 0\.\.2"):
        confusion_matrix(label, np.array([0, 0, 3, 0]), 3)
    with pytest.raises(ValueError, match=r"prediction values outside 0\.\.2"):
        confusion_matrix(torch.tensor(label), torch.tensor([0, 0, 3, 0]), 3)
    # a bad prediction on an ignored pixel does not matter
    np.testing.assert_array_equal(confusion_matrix(np.array([255, 0]), np.array([9, 0]), 3).sum(), 1)
    with pytest.raises(ValueError, match="square"):
        iou_from_confusion(np.zeros((2, 3)))
