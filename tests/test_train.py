"""Training pieces: deterministic batch order, poly schedule, loss, and that a tiny model learns."""

import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from esl.io.torchdata import BatchSchedule
from esl.models.deeplabv2 import build_model
from esl.ops.losses import seg_loss
from esl.ops.optim import poly_lr
from esl.stages.train_loop import TrainConfig, train


def test_batch_schedule_is_epochwise_permutation_and_resumable():
    full = list(BatchSchedule(10, 4, seed=7, start=0, stop=5))
    flat = [i for b in full for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    resumed = list(BatchSchedule(10, 4, seed=7, start=3, stop=5))
    assert resumed == full[3:]
    assert list(BatchSchedule(10, 4, seed=8, start=0, stop=5)) != full


def test_poly_lr():
    assert poly_lr(0.01, 0, 100, 0.9) == 0.01
    assert math.isclose(poly_lr(0.01, 50, 100, 0.9), 0.01 * 0.5**0.9)


def test_seg_loss_matches_manual_ce_and_all_ignored_is_zero():
    torch.manual_seed(0)
    main, aux = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    label = torch.randint(0, 3, (2, 4, 4))
    label[0, 0, 0] = 255
    valid = label != 255
    manual = 0.0
    for logits, w in ((main, 1.0), (aux, 0.1)):
        logp = torch.log_softmax(logits, 1)
        picked = logp.gather(1, label.clamp(max=2)[:, None])[:, 0]
        manual += w * float(-(picked[valid]).mean())
    assert math.isclose(float(seg_loss(aux, main, label, 0.1)), manual, rel_tol=1e-5)
    assert float(seg_loss(aux, main, torch.full((2, 4, 4), 255), 0.1)) == 0.0


def upsample_aligned(x: np.ndarray, size) -> np.ndarray:
    """float64 bilinear resize of (..., h, w) with align_corners=True: output (i, j) samples the input at
    (i·(h−1)/(H−1), j·(w−1)/(W−1)), interpolating its four neighbours."""
    h, w = x.shape[-2:]
    H, W = size
    y, xx = np.arange(H) * (h - 1) / (H - 1), np.arange(W) * (w - 1) / (W - 1)
    y0, x0 = np.minimum(np.floor(y).astype(int), h - 2), np.minimum(np.floor(xx).astype(int), w - 2)
    dy, dx = (y - y0)[:, None], (xx - x0)[None, :]
    a, b = x[..., y0, :][..., x0], x[..., y0, :][..., x0 + 1]
    c, d = x[..., y0 + 1, :][..., x0], x[..., y0 + 1, :][..., x0 + 1]
    return a * (1 - dy) * (1 - dx) + b * (1 - dy) * dx + c * dy * (1 - dx) + d * dy * dx


def test_seg_loss_upsamples_smaller_logits_to_the_label_size():
    """Logits of 3x5 against labels of 7x9: each head upsampled (bilinear, align_corners=True) to 7x9, then the CE
    averaged over the non-255 pixels of the batch; computed here in float64 NumPy."""
    rng = np.random.default_rng(4)
    main, aux = rng.normal(size=(2, 3, 3, 5)) * 2, rng.normal(size=(2, 3, 3, 5)) * 2
    label = rng.integers(0, 3, size=(2, 7, 9))
    label[0, :2, :3] = 255
    label[1, 6] = 255
    valid = label != 255

    def ce(logits):
        up = upsample_aligned(logits, (7, 9))
        logp = up - np.log(np.exp(up).sum(axis=1, keepdims=True))
        picked = np.take_along_axis(logp, np.where(valid, label, 0)[:, None], axis=1)[:, 0]
        return -picked[valid].mean()

    expected = ce(main) + 0.4 * ce(aux)
    got = seg_loss(*(torch.tensor(x, dtype=torch.float32) for x in (aux, main)), torch.tensor(label), 0.4)
    assert math.isclose(float(got), expected, rel_tol=1e-5)
    # the test tells the conventions apart: without aligned corners (or nearest) the loss is another number
    other = nn.functional.interpolate(torch.tensor(main), size=(7, 9), mode="bilinear", align_corners=False)
    unaligned = float(nn.functional.cross_entropy(other, torch.tensor(label), ignore_index=255))
    assert not math.isclose(unaligned, ce(main), rel_tol=1e-3)


class Stripes(Dataset):
    """Images whose top half is bright (class 1) and bottom half dark (class 0)."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        label = torch.zeros(32, 32, dtype=torch.int64)
        label[:16] = 1
        image = (label.float() * 2 - 1)[None].repeat(3, 1, 1) + 0.01 * i
        return image, label, i


def test_tiny_model_learns_and_training_is_deterministic():
    def run():
        torch.manual_seed(0)
        model = build_model(2, layers=(1, 1, 1, 1), width=8)
        cfg = TrainConfig(iters=30, batch_size=4, lr=0.01, seed=1)
        stats = train(model, Stripes(), Stripes(), cfg, torch.device("cpu"))
        return model, stats

    model_a, stats_a = run()
    model_b, _ = run()
    for (k, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        assert torch.equal(a, b), k
    model_a.eval()
    with torch.no_grad():
        _, main = model_a(Stripes()[0][0][None])
    pred = torch.nn.functional.interpolate(main, size=(32, 32), mode="bilinear", align_corners=True).argmax(1)[0]
    assert (pred == Stripes()[0][1]).float().mean() > 0.9


def test_bf16_amp_is_ignored_on_the_cpu():
    """amp='bf16' on the CPU trains in float32 (esl.runtime.device.autocast is a no-op there): the very same weights
    as amp=False, bit for bit."""

    def run(amp):
        torch.manual_seed(0)
        model = build_model(2, layers=(1, 1, 1, 1), width=4)
        train(model, Stripes(), Stripes(), TrainConfig(iters=3, batch_size=4, lr=0.01, seed=1, amp=amp), "cpu")
        return model.state_dict()

    plain, bf16 = run(False), run("bf16")
    for k, v in plain.items():
        assert torch.equal(bf16[k], v), k
