"""Evaluation against hand computations: ADVENT's ensemble (weighted sum of upsampled main-head logits, argmax), the
upsampling to each label's size, ignore pixels, and the target-train mean entropy of the label-free selection."""

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from esl.io.images import read_image, read_label
from esl.io.layouts import list_samples, read_index
from esl.stages.evaluate import evaluate_ensemble, evaluate_model, iou_table, mean_entropy

C = 3


class Fixed(nn.Module):
    """A 'model' whose main head returns the same logits for every image of the batch (aux: None)."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return None, self.logits.expand(x.shape[0], *self.logits.shape).clone()


def write_samples(root, labels, size=(4, 4)):
    """trainids images (content irrelevant to `Fixed`) with the given label maps."""
    (root / "train/images").mkdir(parents=True)
    (root / "train/labels").mkdir(parents=True)
    for i, label in enumerate(labels):
        cv2.imwrite(str(root / f"train/images/{i}.png"), np.full((*size, 3), 100, np.uint8))
        cv2.imwrite(str(root / f"train/labels/{i}.png"), np.asarray(label, np.uint8))
    return list_samples("trainids", root, "train")


def run(members, samples, size=(4, 4)):
    kw = dict(layout="trainids", size=size, mean_bgr=[0, 0, 0], num_classes=C, batch_size=2)
    return evaluate_ensemble(members, samples, **kw)


def test_ensemble_is_the_weighted_sum_of_logits_then_argmax(tmp_path):
    """Logits at the label size (no resampling): per pixel, class = argmax(w1*a + w2*b); 255 is ignored."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(C, 4, 4)), rng.normal(size=(C, 4, 4))
    label = rng.integers(0, C, size=(4, 4))
    label[0, :2] = 255
    samples = write_samples(tmp_path, [label, label])
    for w in ([1.0, 0.0], [0.0, 1.0], [0.7, 0.3], [1.0, 2.5]):
        pred = np.argmax(w[0] * a + w[1] * b, axis=0)
        keep = label != 255
        expected = np.zeros((C, C), np.int64)
        for t, p in zip(label[keep], pred[keep]):
            expected[t, p] += 2  # two identical images
        conf = run([(Fixed(a), w[0]), (Fixed(b), w[1])], samples)
        np.testing.assert_array_equal(conf, expected, err_msg=str(w))
    single = evaluate_model(
        Fixed(a), samples, layout="trainids", size=(4, 4), mean_bgr=[0, 0, 0], num_classes=C, batch_size=1
    )
    np.testing.assert_array_equal(single, run([(Fixed(a), 1.0)], samples))


def bilinear_aligned(x, size):
    """Bilinear resize of (C, h, w) with align_corners=True, written out: output pixel (i, j) samples the input at
    (i·(h−1)/(H−1), j·(w−1)/(W−1))."""
    c, h, w = x.shape
    H, W = size
    out = np.empty((c, H, W))
    for i in range(H):
        y = i * (h - 1) / (H - 1)
        y0 = min(int(np.floor(y)), h - 2)
        dy = y - y0
        for j in range(W):
            xx = j * (w - 1) / (W - 1)
            x0 = min(int(np.floor(xx)), w - 2)
            dx = xx - x0
            out[:, i, j] = (
                x[:, y0, x0] * (1 - dy) * (1 - dx)
                + x[:, y0, x0 + 1] * (1 - dy) * dx
                + x[:, y0 + 1, x0] * dy * (1 - dx)
                + x[:, y0 + 1, x0 + 1] * dy * dx
            )
    return out


def test_logits_are_upsampled_to_the_label_size_with_aligned_corners(tmp_path):
    """3x5 logits, labels of 7x9 (the evaluation upsamples to each label's own size, not to the input size)."""
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(C, 3, 5))
    label = rng.integers(0, C, size=(7, 9))
    samples = write_samples(tmp_path, [label], size=(7, 9))
    pred = np.argmax(bilinear_aligned(logits, (7, 9)), axis=0)
    expected = np.zeros((C, C), np.int64)
    np.add.at(expected, (label.ravel(), pred.ravel()), 1)
    np.testing.assert_array_equal(run([(Fixed(logits), 1.0)], samples, size=(3, 5)), expected)
    unaligned = torch.nn.functional.interpolate(torch.tensor(logits)[None], size=(7, 9), mode="bilinear")
    assert (unaligned[0].argmax(0).numpy() != pred).any()  # the other convention would give other counts


def test_mean_entropy_by_hand(tmp_path):
    """Mean over all pixels of -sum p ln p / ln C of the main head's softmax (logits at the input size)."""
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(C, 4, 4)) * 2
    samples = write_samples(tmp_path, [np.zeros((4, 4))] * 3)
    p = np.exp(logits) / np.exp(logits).sum(0)
    expected = float(np.mean(-(p * np.log(p)).sum(0) / np.log(C)))
    got = mean_entropy(
        Fixed(logits), samples, layout="trainids", size=(4, 4), mean_bgr=[0, 0, 0], num_classes=C, batch_size=2
    )
    assert got == pytest.approx(expected, rel=1e-6)
    uniform = mean_entropy(
        Fixed(np.zeros((C, 4, 4))), samples, layout="trainids", size=(4, 4), mean_bgr=[0, 0, 0], num_classes=C
    )
    assert uniform == pytest.approx(1.0, abs=1e-6)


def test_the_workflow_ensemble_row_by_hand(tiny_run, monkeypatch):
    """The tiny run's ensemble `ens` (0.5·pretrain + 1.0·esl_r1): its summary mIoU recomputed here from the two
    checkpoints image by image (forward, upsampling to the label, weighted sum, argmax, IoU with numpy)."""
    from esl.io.tables import read_csv
    from esl.models.checkpoints import load_checkpoint

    monkeypatch.chdir(tiny_run)  # the index holds paths relative to the workflow's directory
    res = tiny_run / "results/tiny"
    models = [
        load_checkpoint(res / "pretrain/model.pt")[0].eval(),
        load_checkpoint(res / "selftrain/esl_r1/model.pt")[0].eval(),
    ]
    samples = read_index(res / "index/target_val.csv")  # 4 images: one batch, as evaluate.batch_size
    mean = np.array([104.0, 117.0, 123.0], np.float32)
    images = np.stack([read_image(s.image, (32, 64)).astype(np.float32) - mean for s in samples])
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        mains = [model(x)[1] for model in models]
    conf = np.zeros((19, 19), np.int64)
    for i, s in enumerate(samples):
        label = read_label("trainids", s.label, None, num_classes=19)
        score = 0
        for main, w in zip(mains, (0.5, 1.0)):
            up = torch.nn.functional.interpolate(main[i : i + 1], size=label.shape, mode="bilinear", align_corners=True)
            score = score + w * up[0].numpy()
        pred = score.argmax(0)
        keep = label != 255
        conf += np.bincount(19 * label[keep].astype(int) + pred[keep], minlength=19 * 19).reshape(19, 19)
    tp = np.diag(conf)
    with np.errstate(invalid="ignore"):
        iou = tp / (conf.sum(0) + conf.sum(1) - tp)
    summary = read_csv(res / "summary.csv").set_index("model")
    assert summary.loc["ens", "mIoU"] == pytest.approx(round(float(np.nanmean(iou)) * 100, 2), abs=1e-9)
    assert np.isnan(summary.loc["ens", "mIoU_best"]) and np.isnan(summary.loc["ens", "pl_precision"])


class TwoHeads(nn.Module):
    """A 'model' with both heads: image i of the split (every pixel of its input = 10·(i+1), mean 0) gets the fixed
    logits aux[i] and main[i]; it also checks that it is fed at the configured input size."""

    def __init__(self, aux, main, input_size):
        super().__init__()
        self.register_buffer("aux", torch.as_tensor(aux, dtype=torch.float32))
        self.register_buffer("main", torch.as_tensor(main, dtype=torch.float32))
        self.input_size = tuple(input_size)

    def forward(self, x):
        assert tuple(x.shape[-2:]) == self.input_size
        i = (x.mean(dim=(1, 2, 3)) / 10).round().long() - 1
        return self.aux[i].clone(), self.main[i].clone()


def confusion(labels, preds):
    conf = np.zeros((C, C), np.int64)
    for label, pred in zip(labels, preds):
        keep = label != 255
        np.add.at(conf, (label[keep], pred[keep]), 1)
    return conf


def test_evaluate_model_by_hand(tmp_path):
    """Three images (two batches) with labels of their own sizes (7x9, 5x11, 7x9), fed at 6x10, logits of 3x5: the
    main head's logits upsampled (bilinear, align_corners=True) to each LABEL's size, argmax, 255 left out; the
    confusion matrix and the IoUs computed here with NumPy."""
    rng = np.random.default_rng(3)
    sizes = [(7, 9), (5, 11), (7, 9)]
    main, aux = rng.normal(size=(3, C, 3, 5)), rng.normal(size=(3, C, 3, 5))
    labels = [rng.integers(0, C, size=s) for s in sizes]
    labels[0][:2, :4] = 255
    labels[1][:, 0] = 255
    (tmp_path / "train/images").mkdir(parents=True)
    (tmp_path / "train/labels").mkdir(parents=True)
    for i, (label, s) in enumerate(zip(labels, sizes)):
        cv2.imwrite(str(tmp_path / f"train/images/{i}.png"), np.full((*s, 3), 10 * (i + 1), np.uint8))
        cv2.imwrite(str(tmp_path / f"train/labels/{i}.png"), label.astype(np.uint8))
    samples = list_samples("trainids", tmp_path, "train")
    kw = dict(layout="trainids", size=(6, 10), mean_bgr=[0, 0, 0], num_classes=C, batch_size=2)
    conf = evaluate_model(TwoHeads(aux, main, (6, 10)), samples, **kw)

    expected = confusion(labels, [bilinear_aligned(m, lab.shape).argmax(0) for m, lab in zip(main, labels)])
    np.testing.assert_array_equal(conf, expected)
    assert conf.sum() == sum(int((lab != 255).sum()) for lab in labels)  # the 255 pixels are left out
    tp = np.diag(expected).astype(float)
    iou = tp / (expected.sum(0) + expected.sum(1) - tp)
    table = iou_table(conf)
    np.testing.assert_allclose(table["iou"][:C], np.round(iou * 100, 2))
    assert table.loc[table["class_name"] == "mIoU", "iou"].item() == pytest.approx(round(iou.mean() * 100, 2))

    # what the other choices would count instead: the aux head, the other corner convention, upsampling to the input
    # size and then to the label's (nearest)
    def upsampled(logits, size, aligned=True):
        x = torch.tensor(logits)[None]
        return nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=aligned)[0]

    others = {
        "aux": [bilinear_aligned(a, lab.shape).argmax(0) for a, lab in zip(aux, labels)],
        "unaligned": [upsampled(m, lab.shape, False).argmax(0).numpy() for m, lab in zip(main, labels)],
        "input size": [
            cv2.resize(upsampled(m, (6, 10)).argmax(0).numpy().astype(np.uint8), lab.shape[::-1], cv2.INTER_NEAREST)
            for m, lab in zip(main, labels)
        ],
    }
    for name, preds in others.items():
        assert (confusion(labels, preds) != expected).any(), name
