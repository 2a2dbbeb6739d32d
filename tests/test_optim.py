"""`param_groups: reference`: ADVENT's duplicated parameter listing stepped as torch 0.4.1's SGD did (`esl.optim`)."""

import copy
import io
import warnings

import pytest
import torch
from torch.utils.data import Dataset

from esl.models.deeplabv2 import build_model
from esl.ops.optim import ReferenceSGD, advent_backbone_entries, count_entries, make_optimizer
from esl.runtime.resume import Preempted, ResumeFile
from esl.stages.train_loop import TrainConfig, train

LR, MOMENTUM, WD, STEPS = 0.01, 0.9, 0.05, 5


def advent_listing(model):
    """ADVENT's `optim_parameters`, restated: (entries, lr multiplier) for its 1x and 10x groups."""
    backbone = []
    for b in [model.conv1, model.bn1, model.layer1, model.layer2, model.layer3, model.layer4]:
        for j in b.modules():
            for k in j.parameters():
                if k.requires_grad:
                    backbone.append(k)
    heads = list(model.layer5.parameters()) + list(model.layer6.parameters())
    return [(backbone, 1.0), (heads, 10.0)]


def step_041(listing, lr, buffers):
    """torch 0.4.1's `SGD.step` over the listing, entry by entry (weight decay in place on p.grad, one momentum
    buffer per tensor in `buffers`, keyed by id)."""
    with torch.no_grad():
        for entries, mult in listing:
            for p in entries:
                if p.grad is None:
                    continue
                d_p = p.grad.data
                d_p.add_(p.data, alpha=WD)
                if id(p) not in buffers:
                    buf = buffers[id(p)] = torch.zeros_like(p.data)
                    buf.mul_(MOMENTUM).add_(d_p)
                else:
                    buf = buffers[id(p)]
                    buf.mul_(MOMENTUM).add_(d_p, alpha=1)
                p.data.add_(buf, alpha=-lr * mult)


def fixed_grads(model, step):
    """The same random gradient per trainable parameter name at each step (a fresh copy each call)."""
    g = torch.Generator().manual_seed(100 + step)
    return {n: torch.randn(p.shape, generator=g) for n, p in model.named_parameters() if p.requires_grad}


def set_grads(model, grads):
    for n, p in model.named_parameters():
        p.grad = grads[n].clone() if n in grads else None


def lr_at(step):
    return LR * (1 - step / STEPS) ** 0.9


def run_optimizer(model, optimizer, steps=range(STEPS)):
    for step in steps:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step) * group["initial_lr"] / LR
        set_grads(model, fixed_grads(model, step))
        optimizer.step()
    return model


def run_041(model):
    listing, buffers = advent_listing(model), {}
    for step in range(STEPS):
        set_grads(model, fixed_grads(model, step))
        step_041(listing, lr_at(step), buffers)
    return model


def config(param_groups):
    return TrainConfig(iters=STEPS, batch_size=2, lr=LR, momentum=MOMENTUM, weight_decay=WD, param_groups=param_groups)


def small_model():
    torch.manual_seed(0)
    return build_model(3, layers=[1, 2, 1, 1], width=4)


def assert_same_weights(a, b):
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def differs(a, b):
    return any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_advent_listing_counts_and_multiplicities():
    model = build_model(3, layers=[1, 1, 1, 1], width=4)
    entries = advent_backbone_entries(model)
    params, mult = count_entries(entries)
    assert (len(entries), len(params)) == (53, 17)
    assert entries == advent_listing(model)[0][0]
    assert mult[0] == 1  # conv1
    assert sorted(mult) == [1] + [3] * 12 + [4] * 4  # three convs per Bottleneck, one downsample conv per stage
    assert sum(mult) == len(entries)


def test_reference_equals_torch_041_sgd_over_advents_listing():
    base = small_model()
    ref = run_optimizer(model := copy.deepcopy(base), make_optimizer(model, config("reference")))
    assert isinstance(make_optimizer(base, config("reference")), ReferenceSGD)
    assert_same_weights(ref, run_041(copy.deepcopy(base)))

    unique = run_optimizer(model := copy.deepcopy(base), make_optimizer(model, config("unique")))
    assert differs(ref, unique)

    # Current torch's SGD over the same duplicated listing does not reproduce 0.4.1's (the statement of the issue).
    model = copy.deepcopy(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "duplicate parameters"
        groups = [{"params": e, "lr": LR * m, "initial_lr": LR * m} for e, m in advent_listing(model)]
        current = torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM, weight_decay=WD)
        current = run_optimizer(model, current)
    assert differs(ref, current)


def test_reference_leaves_grads_alone_and_skips_missing_ones():
    model = small_model()
    optimizer = make_optimizer(model, config("reference"))
    set_grads(model, grads := fixed_grads(model, 0))
    model.layer5.conv2d_list[0].weight.grad = None
    before = copy.deepcopy(model.layer5.conv2d_list[0].weight)
    optimizer.step()
    for n, p in model.named_parameters():
        if p.grad is not None:
            assert torch.equal(p.grad, grads[n]), n
    assert torch.equal(model.layer5.conv2d_list[0].weight, before)


def test_unknown_param_groups_is_an_error_naming_the_choices():
    with pytest.raises(ValueError, match=r"config train.param_groups: 'twice' is not one of unique, reference"):
        make_optimizer(small_model(), config("twice"))
    assert type(make_optimizer(small_model(), config("unique"))) is torch.optim.SGD


def test_state_dict_round_trip_mid_run_equals_an_uninterrupted_run():
    base = small_model()
    whole = run_optimizer(model := copy.deepcopy(base), make_optimizer(model, config("reference")))

    first = copy.deepcopy(base)
    run_optimizer(first, optimizer := make_optimizer(first, config("reference")), range(2))
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": optimizer.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    second = build_model(3, layers=[1, 2, 1, 1], width=4)
    second.load_state_dict(state["model"])
    optimizer = make_optimizer(second, config("reference"))
    optimizer.load_state_dict(state["optimizer"])
    assert_same_weights(whole, run_optimizer(second, optimizer, range(2, STEPS)))


class Halves(Dataset):
    """Images whose top half is bright (class 1) and bottom half dark (class 0)."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        label = torch.zeros(16, 16, dtype=torch.int64)
        label[:8] = 1
        return (label.float() * 2 - 1)[None].repeat(3, 1, 1) + 0.01 * i, label, i


def test_training_with_reference_resumes_bit_identically(tmp_path):
    cfg = TrainConfig(iters=6, batch_size=2, lr=LR, weight_decay=WD, seed=1, log_interval=0, param_groups="reference")
    whole = small_model()
    train(whole, Halves(), None, cfg, "cpu", log=io.StringIO())

    resumed, resume = small_model(), ResumeFile(tmp_path / "state.pt", {"param_groups": "reference"}, every=100)
    calls = iter(range(100))
    with pytest.raises(Preempted):
        train(resumed, Halves(), None, cfg, "cpu", log=io.StringIO(), resume=resume, stop=lambda: next(calls) == 2)
    resumed = small_model()  # a fresh process: the state file holds everything
    train(resumed, Halves(), None, cfg, "cpu", log=io.StringIO(), resume=resume)
    assert_same_weights(whole, resumed)
    assert differs(whole, small_model())
