"""Sharded target inference: K shard files gathered are the unsharded file; K = 2 plans 2 shard jobs and a gather."""

import h5py
import numpy as np
import pytest
import torch
from helpers import MEAN, NUM_CLASSES, SIZE, TINY_MODEL, write_split
from test_workflow import TINY, planned_jobs, write_config

from esl import datasets
from esl.h5io import read_provenance
from esl.infer import infer_logits
from esl.model import build_model
from esl.shards import gather_h5, shard_slice


@pytest.mark.parametrize("n, batch", [(1, 1), (10, 4), (12, 4), (7, 1), (50, 16)])
def test_shards_cover_the_samples_in_order_with_whole_batches(n, batch):
    batches = -(-n // batch)
    for count in range(1, batches + 1):
        parts = [shard_slice(n, i, count, batch) for i in range(count)]
        assert [i for s in parts for i in range(n)[s]] == list(range(n))
        assert all(s.stop > s.start and s.start % batch == 0 for s in parts)
        sizes = [-(-(s.stop - s.start) // batch) for s in parts]  # batches per shard: as even as possible
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match=f"{batches + 1} shards but only {batches} batches"):
        shard_slice(n, 0, batches + 1, batch)


def read_all(path):
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in f}
        meta = {k: (f[k].dtype, f[k].shape, f[k].chunks) for k in f}
        attrs = {k: np.asarray(v).tolist() for k, v in f.attrs.items() if k != "provenance"}
    return data, meta, attrs


def test_gathered_shards_equal_the_unsharded_file(tmp_path):
    """10 images in batches of 4: 2 shards (1 + 2 batches) and 3 shards (a batch each)."""
    index = write_split(tmp_path / "target", 10, seed=4)
    samples = datasets.read_index(index)
    names = [s.name for s in samples]
    torch.manual_seed(0)
    model = build_model(NUM_CLASSES, **{k: v for k, v in TINY_MODEL.items() if k != "init"})
    common = dict(layout="trainids", size=list(SIZE), mean_bgr=MEAN, batch_size=4, device=torch.device("cpu"))
    infer_logits(model, samples, out_h5=tmp_path / "single.h5", prov={"run": "single"}, **common)
    single = read_all(tmp_path / "single.h5")
    assert list(single[0]) == ["logits", "names"] and single[0]["logits"].shape[0] == 10
    for count in (2, 3):
        shards = []
        for i in range(count):
            shards.append(tmp_path / f"m.shard{i}of{count}.h5")
            part = samples[shard_slice(len(samples), i, count, 4)]
            infer_logits(model, part, out_h5=shards[-1], prov={"shard": i}, **common)
        out = tmp_path / f"gathered{count}.h5"
        gather_h5(shards, out, {"run": "gathered"}, expected_names=names)
        gathered = read_all(out)
        assert gathered[1] == single[1]  # datasets, dtypes, shapes, chunks
        assert gathered[2] == single[2]  # attributes other than provenance
        for k in single[0]:
            assert np.array_equal(gathered[0][k], single[0][k]), (count, k)
        assert read_provenance(out) == {"run": "gathered"}

    with pytest.raises(ValueError, match="expected 10 in index order"):
        gather_h5(shards[::-1], tmp_path / "bad.h5", {}, expected_names=names)
    assert not (tmp_path / "bad.h5").exists()


def test_two_shards_plan_two_shard_jobs_and_a_gather_per_model(tmp_path):
    write_config(tmp_path, TINY)
    sharded = planned_jobs(tmp_path, {"infer": {"batch_size": 4, "shards": 2}})
    assert [j for j in sharded if j.startswith("infer")] == [
        "infer_gather:model=pretrain",
        "infer_shard:model=pretrain,shard=0",
        "infer_shard:model=pretrain,shard=1",
    ]
    unsharded = planned_jobs(tmp_path)
    assert [j for j in unsharded if j.startswith("infer")] == ["infer:model=pretrain"]
    assert [j for j in sharded if not j.startswith("infer")] == [j for j in unsharded if not j.startswith("infer")]
