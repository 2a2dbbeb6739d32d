"""MinEnt / AdvEnt: self-information, entropy loss, the discriminator, and what an adversarial step updates."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from esl.models.adapters import AdvEnt, Discriminator, MinEnt, adapter_params, build_adapter, discriminator_output_size
from esl.models.deeplabv2 import build_model
from esl.ops.losses import entropy_loss, self_information
from esl.stages.train_loop import TrainConfig, train

torch.set_num_threads(1)  # tiny tensors: a second thread only adds contention on a shared 2-core machine


def brute_self_information(prob: np.ndarray) -> np.ndarray:
    n, c, h, w = prob.shape
    out = np.zeros_like(prob, dtype=np.float64)
    for i in range(n):
        for k in range(c):
            for y in range(h):
                for x in range(w):
                    p = float(prob[i, k, y, x])
                    out[i, k, y, x] = 0.0 if p == 0 else -p * math.log(p, 2) / math.log(c, 2)
    return out


def random_probs(shape, seed=0, zeros=True):
    g = torch.Generator().manual_seed(seed)
    prob = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64) * 3, dim=1)
    if zeros:  # exact zeros and a one-hot pixel: 0·log 0 must count as 0
        prob[0, :, 0, 0] = 0
        prob[0, 1, 0, 0] = 1
    return prob


def test_self_information_matches_brute_force():
    prob = random_probs((2, 5, 3, 4))
    got = self_information(prob).numpy()
    assert got.shape == (2, 5, 3, 4)
    np.testing.assert_allclose(got, brute_self_information(prob.numpy()), rtol=1e-12, atol=1e-15)
    assert np.all(got[0, :, 0, 0] == 0)
    assert not np.isnan(got).any()


def test_entropy_loss_is_mean_normalised_entropy():
    prob = random_probs((2, 7, 4, 3), seed=1)
    si = brute_self_information(prob.numpy())
    expected = si.sum(axis=1).mean()  # per-pixel entropy summed over classes, averaged over images and pixels
    assert math.isclose(float(entropy_loss(prob)), expected, rel_tol=1e-12)
    uniform = torch.full((1, 4, 2, 2), 0.25)
    assert math.isclose(float(entropy_loss(uniform)), 1.0, rel_tol=1e-6)


def test_discriminator_layout_and_output_size():
    d = Discriminator(19)
    convs = [m for m in d if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(19, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs)
    relus = [m for m in d if isinstance(m, nn.LeakyReLU)]
    assert len(relus) == 4 and all(r.negative_slope == 0.2 for r in relus)
    assert isinstance(list(d)[-1], nn.Conv2d)  # logits, no activation at the end
    small = Discriminator(3, ndf=4)
    with torch.no_grad():
        out = small(torch.zeros(1, 3, 65, 129))
    # 65 -> 32 -> 16 -> 8 -> 4 -> 2 ; 129 -> 64 -> 32 -> 16 -> 8 -> 4
    assert out.shape == (1, 1, 2, 4)
    assert (discriminator_output_size(512), discriminator_output_size(1024)) == (16, 32)


def test_minent_loss_and_gradient_lowers_entropy():
    torch.manual_seed(0)
    main = torch.randn(1, 4, 5, 5, requires_grad=True)
    aux = torch.randn(1, 4, 5, 5, requires_grad=True)
    m = MinEnt(0.001, 0.0002)
    loss = m.target_loss(aux, main, 0)

    def ent(logits):
        p = torch.softmax(logits.detach().double(), 1).numpy()
        return brute_self_information(p).sum(axis=1).mean()

    assert math.isclose(float(loss.detach()), 0.001 * ent(main) + 0.0002 * ent(aux), rel_tol=1e-5)
    loss.backward()
    with torch.no_grad():
        stepped = main - 1000.0 * main.grad
    assert ent(stepped) < ent(main)


def test_minent_upsamples_to_the_target_size():
    logits = torch.randn(1, 3, 4, 4)
    m = MinEnt(1.0, 0.0, target_size=(8, 8))
    up = nn.functional.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=True)
    expected = brute_self_information(torch.softmax(up.double(), 1).numpy()).sum(axis=1).mean()
    assert math.isclose(float(m.target_loss(None, logits, 0)), expected, rel_tol=1e-5)


def peaked_and_flat(seed):
    """Source outputs confident (low entropy), target outputs flat (high entropy): separable by entropy maps."""
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(2, 5, 32, 32, generator=g) * 8
    tgt = torch.randn(2, 5, 32, 32, generator=g) * 0.1
    return src, tgt


def test_advent_discriminator_learns_on_separable_inputs_and_lr_is_poly():
    torch.manual_seed(0)
    adv = AdvEnt(5, "cpu", lambda_main=0.001, lambda_aux=0.0002, lr_d=1e-3, ndf=8, horizon=100, power=0.9)
    src, tgt = peaked_and_flat(1)
    losses = [adv.update((src * 0.5, src), (tgt * 0.5, tgt), it) for it in range(30)]
    assert losses[0].keys() == {"d_main", "d_aux"}
    assert losses[-1]["d_main"] < 0.5 * losses[0]["d_main"]
    assert losses[-1]["d_aux"] < 0.5 * losses[0]["d_aux"]
    for opt in adv.optimizers.values():
        assert opt.param_groups[0]["betas"] == (0.9, 0.99)
        assert math.isclose(opt.param_groups[0]["lr"], 1e-3 * (1 - 29 / 100) ** 0.9)
    # The trained main discriminator calls the target "target" (logit > 0) and the source "source".
    with torch.no_grad():
        d = adv.discriminators["main"]
        assert d(self_information(torch.softmax(tgt, 1))).mean() > 0 > d(self_information(torch.softmax(src, 1))).mean()


def test_advent_generator_term_reaches_the_outputs_but_not_the_discriminators():
    torch.manual_seed(0)
    adv = AdvEnt(5, "cpu", lambda_main=0.001, lambda_aux=0.0002, lr_d=1e-4, ndf=8, horizon=10)
    _, tgt = peaked_and_flat(2)
    main = tgt.clone().requires_grad_(True)
    aux = tgt.clone().requires_grad_(True)
    before = {k: v.clone() for k, v in adv.discriminators.state_dict().items()}
    loss = adv.target_loss(aux, main, 0)
    # Independent value: BCE-with-logits against label 0 is softplus(score), averaged, per head.
    with torch.no_grad():
        expected = sum(
            lam * nn.functional.softplus(adv.discriminators[h](self_information(torch.softmax(x, 1)))).mean()
            for h, lam, x in (("main", 0.001, main), ("aux", 0.0002, aux))
        )
    assert math.isclose(float(loss.detach()), float(expected), rel_tol=1e-5)
    loss.backward()
    assert main.grad is not None and main.grad.abs().sum() > 0 and aux.grad.abs().sum() > 0
    assert all(p.grad is None for p in adv.discriminators.parameters())
    assert all(p.requires_grad for p in adv.discriminators.parameters())  # restored for their own update
    assert all(torch.equal(before[k], v) for k, v in adv.discriminators.state_dict().items())
    # The discriminator step leaves the (detached) outputs alone and changes the discriminators.
    adv.update((aux.detach() * 5, main.detach() * 5), (aux.detach(), main.detach()), 0)
    assert main.grad is not None and not any(
        torch.equal(before[k], v) for k, v in adv.discriminators.state_dict().items() if k.endswith("weight")
    )


def test_advent_state_round_trip():
    adv = AdvEnt(3, "cpu", lambda_main=1e-3, lambda_aux=0.0, lr_d=1e-4, ndf=4, horizon=10)
    assert set(adv.discriminators) == {"main"}  # no aux discriminator when its λ is 0
    src, tgt = torch.randn(1, 3, 32, 32) * 5, torch.randn(1, 3, 32, 32)
    adv.update((None, src), (None, tgt), 0)
    other = AdvEnt(3, "cpu", lambda_main=1e-3, lambda_aux=0.0, lr_d=1e-4, ndf=4, horizon=10)
    other.load_state_dict(adv.state_dict())
    for (k, a), b in zip(adv.discriminators.state_dict().items(), other.discriminators.state_dict().values()):
        assert torch.equal(a, b), k
    assert other.optimizers["main"].state_dict()["state"].keys() == adv.optimizers["main"].state_dict()["state"].keys()


def test_build_adapter_and_params():
    assert build_adapter("source_only", {}, 19, "cpu") is None
    m = build_adapter("minent", {}, 19, "cpu")
    assert isinstance(m, MinEnt) and (m.lambda_main, m.lambda_aux) == (0.001, 0.0002)
    with pytest.raises(ValueError, match="unknown adaptation method 'dann'"):
        build_adapter("dann", {}, 19, "cpu")
    with pytest.raises(ValueError, match="horizon"):
        build_adapter("advent", {}, 19, "cpu")
    p = adapter_params({"iters": 120, "poly_iters": 250, "power": 0.9, "adapt": {"lr_d": 2e-4}}, [72, 128], [64, 128])
    assert p == {"lr_d": 2e-4, "horizon": 250, "power": 0.9, "source_size": [72, 128], "target_size": [64, 128]}
    a = build_adapter("advent", p, 19, "cpu")
    assert isinstance(a, AdvEnt) and a.lr_d == 2e-4 and a.horizon == 250 and set(a.discriminators) == {"main", "aux"}


class Images(Dataset):
    def __init__(self, labelled):
        self.labelled = labelled

    def __len__(self):
        return 4

    def __getitem__(self, i):
        label = torch.zeros(32, 32, dtype=torch.int64)
        label[:16] = 1
        image = (label.float() * 2 - 1)[None].repeat(3, 1, 1) + 0.1 * i
        return image, (label if self.labelled else torch.empty(0, dtype=torch.int64)), i


@pytest.mark.parametrize("method", ["minent", "advent"])
def test_train_with_an_adapter_on_unlabelled_target(method):
    """Same seed, same data: the adapter's term changes the trained weights (it reaches the backward pass); with its
    λs at 0 the weights are those of training without an adapter, bit for bit."""

    def run(adapt):
        torch.manual_seed(0)
        model = build_model(2, layers=(1, 1, 1, 1), width=4)
        cfg = TrainConfig(iters=3, batch_size=2, lr=0.01, seed=1)
        adapter = None
        if adapt is not None:
            p = adapter_params({"iters": 3, "power": 0.9, "adapt": {"ndf": 8, **adapt}}, [32, 32], [32, 32])
            adapter = build_adapter(method, p, 2, "cpu")
        stats = train(model, Images(True), Images(False), cfg, torch.device("cpu"), adapter=adapter)
        return dict(model.named_parameters()), stats

    plain, plain_stats = run(None)
    adapted, stats = run({})  # the reference λs: main 0.001, aux 0.0002
    zero, zero_stats = run({"lambda_main": 0.0, "lambda_aux": 0.0})
    assert "tgt" not in stats and stats["adapt"] > 0 and "adapt" not in plain_stats and zero_stats["adapt"] == 0
    if method == "advent":
        assert stats["d_main"] > 0 and stats["d_aux"] > 0
    changed = [k for k, v in plain.items() if not torch.equal(adapted[k], v)]
    # the target term's gradient reaches the backbone and both classifiers (layer5: aux head, layer6: main head)
    for part in ("conv1.", "layer1.", "layer5.", "layer6."):
        assert any(k.startswith(part) for k in changed), (part, changed)
    for k, v in plain.items():
        assert torch.equal(zero[k], v), k
