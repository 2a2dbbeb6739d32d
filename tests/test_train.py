"""Training pieces: deterministic batch order, poly schedule, loss, and that a tiny model learns."""

import math

import torch
from torch.utils.data import Dataset

from esl.model import build_model
from esl.train import BatchSchedule, TrainConfig, poly_lr, seg_loss, train


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
