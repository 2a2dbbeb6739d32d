"""HDF5 and CSV I/O: atomic writes, provenance records, string datasets."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import h5py
import numpy as np

from esl.io.files import atomic_path

STRING = h5py.string_dtype("utf-8")


@contextlib.contextmanager
def create_h5(path, prov: dict):
    """Open a new HDF5 file under a temporary name, stamp its provenance, rename it when the block succeeds."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["provenance"] = json.dumps(prov, default=str)
            yield f


# The rule that makes each artifact folder of results/{experiment}/, for the advice in error messages.
MADE_BY = {"infer": "infer", "entropy": "entropy", "pseudo_labels": "pseudo_labels", "eval": "evaluate"}


def remake_hint(path) -> str:
    """How to get a bad artifact made again: deleting it makes Snakemake re-run the job (a plain re-run would not:
    the file is newer than its inputs)."""
    rule = MADE_BY.get(Path(path).parent.name)
    made = f" (rule {rule}; or `snakemake --forcerun {rule}`)" if rule else ""
    return f"delete it and run snakemake again{made}"


def open_h5(path) -> h5py.File:
    """`h5py.File(path, "r")`, or one line naming the file, what is wrong and how to make it again."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"{path}: not a readable HDF5 file ({why}); {remake_hint(path)}") from None


def require_datasets(f: h5py.File, path, *keys) -> None:
    for key in keys:
        if key not in f:
            raise ValueError(f"{path}: no {key!r} dataset; {remake_hint(path)}")


def write_names(f: h5py.File, names) -> None:
    f.create_dataset("names", data=np.array(list(names), dtype=object), dtype=STRING)


def read_names(f: h5py.File) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in f["names"][()]]
