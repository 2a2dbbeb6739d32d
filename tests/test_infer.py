"""Target inference: the fast path (worker processes, writer thread, bounded queue) writes exactly the plain forward's
float16 logits; amp is ignored on the CPU; bad settings are refused in one line."""

import h5py
import numpy as np
import pytest
import torch
from conftest import DEVICES
from helpers import MEAN, NUM_CLASSES, SIZE, TINY_MODEL, domain_params, write_split

from esl.io.images import read_image
from esl.io.layouts import read_index
from esl.io.provenance import read_provenance
from esl.io.torchdata import SegmentationSet, device_mean, normalize
from esl.models.checkpoints import save_checkpoint
from esl.models.deeplabv2 import build_model
from esl.stages.infer import Params, infer_logits, run


def plain_logits(model, samples):
    """The reference: one image at a time, float32, main head cast to float16."""
    ds = SegmentationSet(samples, "trainids", SIZE, MEAN, NUM_CLASSES, labels="none")
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(ds[i][0][None])[1].to(torch.float16).numpy() for i in range(len(ds))])


@pytest.mark.parametrize("batch_size, num_workers, amp", [(4, 0, False), (3, 2, False), (16, 0, "bf16")])
def test_fast_path_writes_the_plain_logits(tmp_path, batch_size, num_workers, amp):
    samples = read_index(write_split(tmp_path / "target", 10, seed=5))
    torch.manual_seed(0)
    model = build_model(NUM_CLASSES, **{k: v for k, v in TINY_MODEL.items() if k != "init"})
    want = plain_logits(model, samples)
    out = tmp_path / "infer.h5"
    infer_logits(
        model,
        samples,
        layout="trainids",
        size=list(SIZE),
        mean_bgr=MEAN,
        out_h5=out,
        prov={},
        batch_size=batch_size,
        device=torch.device("cpu"),
        num_workers=num_workers,
        amp=amp,  # CUDA only: float32 on the CPU
    )
    with h5py.File(out, "r") as f:
        got = f["logits"][()]
        assert f["logits"].dtype == np.float16 and f["logits"].chunks == (1, *got.shape[1:])
        assert [n.decode() for n in f["names"][()]] == [s.name for s in samples]
    # batched float32 convolutions may round differently from batch 1 in the last bits, float16 hides most of it
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2e-3, atol=2e-3)


def test_bf16_is_ignored_on_the_cpu(tmp_path):
    """amp='bf16' on the CPU computes in float32 (esl.runtime.device.autocast is a no-op there): the very same
    float16 bits as amp=False, with the same batches."""
    samples = read_index(write_split(tmp_path / "target", 6, seed=5))
    torch.manual_seed(0)
    model = build_model(NUM_CLASSES, **{k: v for k, v in TINY_MODEL.items() if k != "init"})
    logits = {}
    for amp in (False, "bf16"):
        out = tmp_path / f"infer_{amp}.h5"
        infer_logits(
            model,
            samples,
            layout="trainids",
            size=list(SIZE),
            mean_bgr=MEAN,
            out_h5=out,
            prov={},
            batch_size=4,
            device=torch.device("cpu"),
            amp=amp,
        )
        with h5py.File(out, "r") as f:
            logits[amp] = f["logits"][()]
    np.testing.assert_array_equal(logits["bf16"].view(np.uint16), logits[False].view(np.uint16))


def test_bad_amp_is_refused(tmp_path):
    samples = read_index(write_split(tmp_path / "target", 2, seed=5))
    model = build_model(NUM_CLASSES, **{k: v for k, v in TINY_MODEL.items() if k != "init"})
    with pytest.raises(ValueError, match="infer.amp"):
        infer_logits(
            model,
            samples,
            layout="trainids",
            size=list(SIZE),
            mean_bgr=MEAN,
            out_h5=tmp_path / "x.h5",
            prov={},
            amp="fp8",
        )
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_normalize_on_the_device_equals_the_float_input(tmp_path, channels_last, device):
    """The uint8 batch converted by `normalize` is bit for bit the workers' float input, computed here in NumPy."""
    samples = read_index(write_split(tmp_path / "target", 3, seed=7))
    raw = SegmentationSet(samples, "trainids", SIZE, MEAN, NUM_CLASSES, labels="none", raw=True)
    batch = torch.stack([raw[i][0] for i in range(len(raw))])
    assert batch.dtype == torch.uint8 and batch.shape == (3, *SIZE, 3)
    got = normalize(batch.to(device), MEAN, channels_last)
    assert got.device.type == device
    assert torch.equal(got, normalize(batch.to(device), device_mean(MEAN, device), channels_last))  # the loops' form
    got = got.cpu()
    want = np.stack(
        [(read_image(s.image, SIZE).astype(np.float32) - np.float32(MEAN)).transpose(2, 0, 1) for s in samples]
    )
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), want)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert got.is_contiguous(memory_format=fmt)


RULE_PARAMS = {"target": domain_params(), "batch_size": 2, "amp": False, "num_workers": 0}  # as rule `infer` gives


def test_params_are_the_rules_and_provenance_records_them(tmp_path):
    """`as_dict` is the rule's params exactly (no `shard` key in an unsharded job: its cache key and provenance stay
    what they always were); a shard job's run infers its slice, and a bad value is refused in one line naming the
    config key."""
    index = write_split(tmp_path / "target", 5, seed=3)
    torch.manual_seed(0)
    model = build_model(NUM_CLASSES, **{k: v for k, v in TINY_MODEL.items() if k != "init"})
    save_checkpoint(tmp_path / "model.pt", model, {k: v for k, v in TINY_MODEL.items() if k != "init"})
    inputs = {"model": str(tmp_path / "model.pt"), "index": str(index)}
    params = Params.from_rule(RULE_PARAMS)
    assert params.as_dict() == RULE_PARAMS and params.shard is None
    run(params, inputs, [str(tmp_path / "all.h5")], device="cpu")
    assert read_provenance(tmp_path / "all.h5")["config"] == RULE_PARAMS
    with h5py.File(tmp_path / "all.h5", "r") as f:
        whole = f["logits"][()]
    parts = []
    for i in range(2):  # 3 batches of 2: the shards hold 1 and 2 batches
        sharded = Params.from_rule({"shard": [i, 2], **RULE_PARAMS})
        assert sharded.as_dict() == {"shard": [i, 2], **RULE_PARAMS}
        run(sharded, inputs, {"h5": str(tmp_path / f"m.{i + 1}-of-2.h5")}, device="cpu")
        with h5py.File(tmp_path / f"m.{i + 1}-of-2.h5", "r") as f:
            parts.append(f["logits"][()])
    assert [len(p) for p in parts] == [2, 3]
    np.testing.assert_array_equal(np.concatenate(parts).view(np.uint16), whole.view(np.uint16))

    with pytest.raises(ValueError, match=r"config infer.shards=4: 4 shards but only 3 batches"):
        run(Params.from_rule({"shard": [0, 4], **RULE_PARAMS}), inputs, [str(tmp_path / "x.h5")], device="cpu")
    for bad, match in (
        ({"amp": "fp16"}, "config infer.amp='fp16' must be false or bf16"),
        ({"batch_size": 0}, "config infer.batch_size=0 must be an integer >= 1"),
        ({"shard": [2, 2]}, "params shard=.2, 2. must be .index, K."),
        ({"target": {"layout": "trainids"}}, "rule infer: params target lacks size, mean_bgr, num_classes"),
        ({"shards": 2}, r"rule infer: unexpected params \['shards'\]"),
    ):
        with pytest.raises(ValueError, match=match):
            Params.from_rule({**RULE_PARAMS, **bad})
    with pytest.raises(ValueError, match=r"rule infer: missing params \['batch_size', 'target'\]"):
        Params.from_rule({})
    assert not (tmp_path / "x.h5").exists()
