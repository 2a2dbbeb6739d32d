"""HDF5 and CSV I/O: atomic writes, provenance records, string datasets."""

from __future__ import annotations

import contextlib
import datetime as _dt
import glob
import hashlib
import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from . import __version__

HASH_LIMIT = 1 << 30  # inputs larger than this are recorded by size only
STRING = h5py.string_dtype("utf-8")


def config_hash(config) -> str:
    """sha256 of the canonical JSON of a parameter dict."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def file_digest(path) -> dict:
    path = Path(path)
    size = path.stat().st_size
    if size > HASH_LIMIT:
        return {"size": size}
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return {"size": size, "sha256": h.hexdigest()}


def provenance(config: dict | None = None, inputs=()) -> dict:
    """What produced an artifact: parameter values and their hash, input files, package version, time."""
    config = config or {}
    files = {}
    for p in inputs:
        p = Path(p)
        if p.is_file():
            files[str(p)] = file_digest(p)
        elif p.is_dir():
            files[str(p)] = {"dir": True}
    return {
        "package": f"esl {__version__}",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "config_hash": config_hash(config),
        "inputs": files,
    }


def remove_stale_temporaries(path, keep=None) -> None:
    """Delete `<name>.tmp-<pid>` files or folders beside `path` (but `keep`): what a killed job left half-written."""
    path = Path(path)
    for stale in path.parent.glob(f"{glob.escape(path.name)}.tmp-*"):
        if stale != keep and stale.name[len(path.name) + 5 :].isdigit():
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds.

    Temporaries of the same output left by a killed job (`<name>.tmp-<pid>`, many GB at Cityscapes scale) are removed
    first: only one job writes an output at a time (Snakemake locks the output directory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    remove_stale_temporaries(path, keep=tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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


def read_provenance(path) -> dict:
    path = Path(path)
    if path.suffix == ".csv":
        with open(path) as f:
            first = f.readline()
        if not first.startswith("# provenance: "):
            raise ValueError(f"{path}: no provenance line")
        return json.loads(first[len("# provenance: ") :])
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["provenance"])


def write_csv(df: pd.DataFrame, path, prov: dict, index: bool = False) -> None:
    """Write a CSV whose first line is `# provenance: {json}`, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("# provenance: " + json.dumps(prov, default=str) + "\n")
            df.to_csv(f, index=index)


def read_csv(path, **kwargs) -> pd.DataFrame:
    return pd.read_csv(path, comment="#", **kwargs)
