"""CBST pseudo-labels (class-balanced: per class, the max-prob at the top-p fraction of its pixels), exact vs a sort."""

import json

import h5py
import numpy as np
import pytest

from esl.io.h5 import STRING
from esl.io.tables import read_csv
from esl.ops.thresholds import method_params
from esl.stages.pseudo_labels import pseudo_labels_h5

C = 4


def write_entropy(path, label, max_prob):
    n, h, w = label.shape
    with h5py.File(path, "w") as f:
        f.create_dataset("label", data=label, chunks=(1, h, w))
        f.create_dataset("entropy", data=np.zeros(label.shape, np.float32), chunks=(1, h, w))
        f.create_dataset("max_prob", data=max_prob, chunks=(1, h, w))
        f.create_dataset("names", data=np.array([f"i{k}" for k in range(n)], dtype=object), dtype=STRING)
        f.attrs["provenance"] = json.dumps({})


def sorted_cbst(label, max_prob, p):
    """Reference: per class, sort descending, take the value at index round_half_even(p·n) (clipped); keep >=."""
    t = np.zeros(C, np.float32)
    for c in range(C):
        x = np.sort(max_prob[label == c])[::-1]
        if x.size:
            t[c] = x[min(int(round(p * x.size)), x.size - 1)]
    keep = max_prob >= t[label]
    return t, np.where(keep, label, 255).astype(np.uint8)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.0, 1.0])
def test_cbst_matches_a_sort(tmp_path, p):
    rng = np.random.default_rng(3)
    label = rng.integers(0, C - 1, (5, 6, 9)).astype(np.uint8)  # class C-1 never predicted: threshold 0
    max_prob = rng.uniform(1 / C, 1, label.shape).astype(np.float32)
    max_prob[rng.random(label.shape) < 0.3] = np.float32(0.625)  # ties
    max_prob[0, 0, :4] = np.nextafter(np.float32(0.625), np.float32(1))  # neighbours one ulp apart
    write_entropy(tmp_path / "e.h5", label, max_prob)
    out = pseudo_labels_h5(
        tmp_path / "e.h5",
        tmp_path / "cbst.h5",
        method="cbst",
        params={"p": p},
        prov={},
        gt_labels=None,
        quality_csv=tmp_path / "q.csv",
        thresholds_csv=tmp_path / "t.csv",
        num_classes=C,
        chunk_images=2,
    )
    t_ref, pl_ref = sorted_cbst(label, max_prob, p)
    np.testing.assert_array_equal(out["thresholds"], t_ref)
    with h5py.File(tmp_path / "cbst.h5") as f:
        np.testing.assert_array_equal(f["label"][()], pl_ref)
        assert f.attrs["method"] == "cbst"
    table = read_csv(tmp_path / "t.csv")
    np.testing.assert_array_equal(table["n_kept"], [(pl_ref == c).sum() for c in range(C)])
    if p == 0.2:  # about the top fifth of each class is kept (ties at the threshold all count)
        counts = np.array([(label == c).sum() for c in range(C - 1)])
        assert np.all(table["n_kept"][: C - 1] >= np.round(0.2 * counts))


def test_cbst_params():
    assert method_params("cbst", None) == {"p": 0.2}
    with pytest.raises(ValueError, match="unknown parameters"):
        method_params("cbst", {"q": 0.5})


def test_workflow_plans_cbst_with_default_params(tmp_path):
    import sys
    from pathlib import Path

    import yaml

    sys.path.insert(0, str(Path(__file__).parent))
    from test_workflow import TINY, planned_jobs

    config = yaml.safe_load(yaml.safe_dump(TINY))
    config["pseudo_labels"]["methods"] = ["cbst"]  # no `cbst:` section: p = 0.2
    del config["evaluate"]["ensembles"]  # TINY's ensemble names esl_r1
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(tmp_path)
    assert {"pseudo_labels:method=cbst,k=1", "selftrain:method=cbst,k=1", "evaluate:model=cbst_r1"} <= set(jobs)
    assert not any("esl" in j or "mpsl" in j for j in jobs)
