"""Atomic writes: a killed job's half-written `<name>.tmp-<pid>` is removed by the next write of the same output."""

import pandas as pd

from esl.io.files import remove_stale_temporaries
from esl.io.provenance import provenance
from esl.io.tables import read_csv, write_csv


def test_a_write_removes_the_stale_temporaries_of_its_own_output_only(tmp_path):
    stale = tmp_path / "summary.csv.tmp-4242"
    stale.write_text("half written")
    keep = [tmp_path / "summary.csv.tmp-notapid", tmp_path / "other.csv.tmp-4242", tmp_path / "summary.csv.bak"]
    for k in keep:
        k.write_text("x")
    write_csv(pd.DataFrame({"a": [1]}), tmp_path / "summary.csv", provenance({}))
    assert not stale.exists()
    assert all(k.exists() for k in keep)
    assert list(read_csv(tmp_path / "summary.csv")["a"]) == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["summary.csv"] + [k.name for k in keep])


def test_stale_temporary_folders_go_too(tmp_path):
    stale = tmp_path / "pretrain_pictures.tmp-77"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub/0001.png").write_bytes(b"x")
    remove_stale_temporaries(tmp_path / "pretrain_pictures")
    assert not stale.exists()


def test_a_truncated_artifact_is_one_line_with_the_remedy(tmp_path):
    """A job killed while h5py wrote, or a copy cut short: not h5py's raw OSError, and not 'Nothing to be done' on a
    re-run (the broken file is newer than its inputs) — the message says to delete it."""
    import h5py
    import numpy as np
    import pytest

    from esl.stages.entropy import entropy_maps_h5

    folder = tmp_path / "results/x/infer"
    folder.mkdir(parents=True)
    good = folder / "pretrain.h5"
    with h5py.File(good, "w") as f:
        f.create_dataset("logits", data=np.zeros((2, 3, 4, 4), np.float16))
    data = good.read_bytes()
    bad = folder / "esl_r1.h5"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as e:
        entropy_maps_h5(bad, tmp_path / "out.h5", size=None, batch_size=2, prov={}, pictures=0)
    msg = str(e.value)
    assert msg.startswith(f"{bad}: not a readable HDF5 file") and "\n" not in msg
    assert "delete it and run snakemake again (rule infer; or `snakemake --forcerun infer`)" in msg
    with pytest.raises(ValueError, match=r"pretrain\.h5: no 'names' dataset; delete it and run snakemake again"):
        entropy_maps_h5(good, tmp_path / "out.h5", size=None, batch_size=2, prov={}, pictures=0)
    assert not (tmp_path / "out.h5").exists()


def test_a_pseudo_label_file_without_labels_is_named(tmp_path):
    import h5py
    import pytest
    from helpers import domain_params, write_split

    from esl.io.layouts import read_index
    from esl.io.torchdata import SegmentationSet

    index = write_split(tmp_path / "t", 2, seed=0)
    path = tmp_path / "results/x/pseudo_labels/esl_r1.h5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("names", data=["000", "001"])
    p = domain_params()
    with pytest.raises(ValueError, match=r"esl_r1\.h5: no 'label' dataset; delete it .*rule pseudo_labels"):
        SegmentationSet(read_index(index), p["layout"], p["size"], p["mean_bgr"], p["num_classes"], str(path))
