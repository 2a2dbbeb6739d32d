"""Multi-process training: DDP over torchrun (gloo on the CPU) computes what one process computes on the union."""

import io

import pytest
import torch
from helpers import train_spec

from esl.io.torchdata import BatchSchedule
from esl.stages.train import launch


def test_process_shares_of_a_batch_are_disjoint_and_make_up_the_single_process_batch():
    single = BatchSchedule(10, 4, seed=3, start=0, stop=7)
    shares = [BatchSchedule(10, 4, seed=3, start=0, stop=7, rank=r, world=2) for r in range(2)]
    for i in range(7):
        whole = single.batch(i)
        assert shares[0].batch(i) == whole[0::2] and shares[1].batch(i) == whole[1::2]
    assert [len(b) for b in shares[1]] == [2] * 7
    with pytest.raises(ValueError, match="not divisible"):
        BatchSchedule(10, 3, seed=3, start=0, stop=7, rank=0, world=2)


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_two_process_ddp_steps_equal_single_process_steps_on_the_union(tmp_path):
    """Self-training, 2 SGD steps (momentum included), global batch 4, frozen BatchNorm: 2 gloo processes with 2 images
    each give the single process's weights. The images hold different numbers of ignored pixels, so a loss normalised
    per process instead of over the global batch would not match."""
    common = dict(iters=2, batch_size=4, batchnorm="frozen", lr=0.01)
    single = train_spec(tmp_path, "selftrain", "single", **common)
    ddp = train_spec(tmp_path, "selftrain", "ddp", threads=2, gpus=2, **common)
    threads = torch.get_num_threads()
    try:
        assert launch(single, log=io.StringIO()) == 0
    finally:
        torch.set_num_threads(threads)
    log = tmp_path / "ddp.log"
    with open(log, "w") as f:
        rc = launch(ddp, log=f)
    assert rc == 0, log.read_text()[-3000:]
    assert "2 processes" in log.read_text()
    a, b = weights(tmp_path / "single/model.pt"), weights(tmp_path / "ddp/model.pt")
    assert list(a) == list(b)
    init = weights_of_initial(single)
    for k in a:  # float tolerance relative to how far the two steps moved each tensor
        step = (a[k].double() - init[k].double()).abs().max()
        err = (a[k].double() - b[k].double()).abs().max()
        assert err <= 1e-5 * step + 1e-9, (k, float(err), float(step))
    moved = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], init[k])]
    assert any(".conv2d_list." in k for k in moved) and all("running_" not in k for k in moved)
    assert not (tmp_path / "ddp/resume").exists()  # the spec file and the state are gone after success


def weights_of_initial(spec):
    from esl.models.checkpoints import initial_model

    return initial_model(spec.source["num_classes"], spec.model, spec.train["seed"]).state_dict()


@pytest.mark.parametrize(
    "train, device, message",
    [
        (
            {"gpus": max(2, torch.cuda.device_count() + 1)},
            "auto",
            "config pretrain.gpus={g} but only {v} CUDA devices are visible",
        ),
        ({"gpus": 2, "batch_size": 3}, "cpu", "config pretrain.batch_size=3 is not divisible by pretrain.gpus=2"),
        ({"gpus": 2, "batchnorm": "sync"}, "cpu", "config pretrain.batchnorm=sync needs CUDA devices"),
        ({"gpus": 2, "method": "advent"}, "cpu", "config pretrain.gpus=2: AdvEnt's discriminators are not distributed"),
        ({"batchnorm": "batch"}, "cpu", "config pretrain.batchnorm='batch' is not one of train, frozen, sync"),
    ],
)
def test_impossible_settings_are_refused_with_the_key_named(tmp_path, train, device, message):
    expected = message.format(g=max(2, torch.cuda.device_count() + 1), v=torch.cuda.device_count())
    with pytest.raises(ValueError) as e:
        train_spec(tmp_path, device=device, **train)  # refused when the job is made, before any work
    assert str(e.value).startswith(expected)
