"""Target inference: the fast path (worker processes, writer thread, bounded queue) writes exactly the plain forward's
float16 logits; amp is ignored on the CPU; bad settings are refused in one line."""

import h5py
import numpy as np
import pytest
import torch
from helpers import MEAN, NUM_CLASSES, SIZE, TINY_MODEL, write_split

from esl import datasets
from esl.data import SegmentationSet, device_mean, normalize
from esl.infer import infer_logits
from esl.model import build_model


def plain_logits(model, samples):
    """The reference: one image at a time, float32, main head cast to float16."""
    ds = SegmentationSet(samples, "trainids", SIZE, MEAN, NUM_CLASSES, labels="none")
    model.eval()
    with torch.no_grad():
        return np.concatenate([model(ds[i][0][None])[1].to(torch.float16).numpy() for i in range(len(ds))])


@pytest.mark.parametrize("batch_size, num_workers, amp", [(4, 0, False), (3, 2, False), (16, 0, "bf16")])
def test_fast_path_writes_the_plain_logits(tmp_path, batch_size, num_workers, amp):
    samples = datasets.read_index(write_split(tmp_path / "target", 10, seed=5))
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


def test_bad_amp_is_refused(tmp_path):
    samples = datasets.read_index(write_split(tmp_path / "target", 2, seed=5))
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


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
@pytest.mark.parametrize("channels_last", [False, True])
def test_normalize_on_the_device_equals_the_float_input(tmp_path, channels_last, device):
    """The uint8 batch converted by `normalize` is bit for bit the workers' float input, computed here in NumPy."""
    samples = datasets.read_index(write_split(tmp_path / "target", 3, seed=7))
    raw = SegmentationSet(samples, "trainids", SIZE, MEAN, NUM_CLASSES, labels="none", raw=True)
    batch = torch.stack([raw[i][0] for i in range(len(raw))])
    assert batch.dtype == torch.uint8 and batch.shape == (3, *SIZE, 3)
    got = normalize(batch.to(device), MEAN, channels_last)
    assert got.device.type == device
    assert torch.equal(got, normalize(batch.to(device), device_mean(MEAN, device), channels_last))  # the loops' form
    got = got.cpu()
    want = np.stack(
        [(datasets.read_image(s.image, SIZE).astype(np.float32) - np.float32(MEAN)).transpose(2, 0, 1) for s in samples]
    )
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), want)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    assert got.is_contiguous(memory_format=fmt)
