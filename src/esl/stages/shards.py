"""Sharded per-image work: which images a shard takes, and gathering shard HDF5 files into one (rule `infer_gather`).

Shards are contiguous runs of the sample order whose boundaries fall on multiples of the batch size, so every forward
pass of a sharded run sees exactly the batch it would see unsharded: the gathered file equals the unsharded one.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import h5py

from esl.io.h5 import create_h5, read_names, write_names
from esl.io.layouts import read_index
from esl.io.provenance import provenance
from esl.stages.params import StageParams, check_int, input_files, the_file

BLOCK = 64  # images copied per read/write while gathering


def shard_slice(n: int, index: int, count: int, batch_size: int = 1) -> slice:
    """The samples of shard `index` (0-based) of `count` over `n` samples: whole batches, as even as possible."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index} of {count}: expected 0 <= shard < count")
    batches = -(-n // batch_size)
    if count > batches:
        raise ValueError(f"{count} shards but only {batches} batches of {batch_size} ({n} images): use fewer shards")
    start = (index * batches) // count * batch_size
    stop = min(n, ((index + 1) * batches) // count * batch_size)
    return slice(start, stop)


def gather_h5(shards, out_h5, prov: dict, expected_names=None) -> int:
    """Concatenate the per-image datasets of `shards` (in order) into `out_h5`: same datasets, dtypes, chunking and
    compression, `names` concatenated, attributes other than `provenance` taken from the shards (which must agree).
    `expected_names`: the full sample order the result must have. Returns the number of images."""
    shards = [Path(s) for s in shards]
    if not shards:
        raise ValueError("gather: no shard files")
    files = [h5py.File(s, "r") for s in shards]
    try:
        keys, attrs, names = _check_shards(shards, files)
        if expected_names is not None:
            _check_order(shards[0].parent, names, list(expected_names))
        with create_h5(out_h5, prov) as out:
            for k in keys:
                _concatenate(files, k, out, len(names))
            write_names(out, names)
            for key in attrs:
                out.attrs[key] = files[0].attrs[key]
        return len(names)
    finally:
        for f in files:
            f.close()


def _check_shards(paths: list[Path], files: list) -> tuple[list[str], dict, list[str]]:
    """The per-image dataset names, attributes and concatenated names of the shards, which must agree on datasets,
    dtypes, per-image shapes and attributes."""
    first = files[0]
    keys = sorted(k for k in first if k != "names")
    attrs = _attrs(first)
    names = []
    for path, f in zip(paths, files):
        if sorted(k for k in f if k != "names") != keys:
            raise ValueError(f"{path}: datasets {sorted(f)} differ from {paths[0]}'s {sorted(first)}")
        if _attrs(f) != attrs:
            raise ValueError(f"{path}: attributes differ from {paths[0]}'s")
        shard_names = read_names(f)
        for k in keys:
            a, b = f[k], first[k]
            if a.dtype != b.dtype or a.shape[1:] != b.shape[1:] or a.shape[0] != len(shard_names):
                raise ValueError(f"{path}: dataset {k} is {a.dtype} {a.shape}, expected {b.dtype} (n, *{b.shape[1:]})")
        names += shard_names
    return keys, attrs, names


def _check_order(where, names: list[str], expected: list[str]) -> None:
    if expected != names:
        pairs = enumerate(zip(names, expected))
        diff = next((i for i, (a, b) in pairs if a != b), min(len(names), len(expected)))
        raise ValueError(
            f"{where}: the shards hold {len(names)} images, expected {len(expected)} in index order "
            f"(first difference at position {diff})"
        )


def _concatenate(files: list, key: str, out: h5py.File, n: int) -> None:
    """Dataset `key` of every shard, in order, into `out` with the first shard's dtype, chunking and compression."""
    src = files[0][key]
    ds = out.create_dataset(
        key,
        shape=(n, *src.shape[1:]),
        dtype=src.dtype,
        chunks=src.chunks,
        compression=src.compression,
        compression_opts=src.compression_opts,
        shuffle=src.shuffle,
    )
    offset = 0
    for f in files:
        part = f[key]
        for i in range(0, part.shape[0], BLOCK):
            block = part[i : i + BLOCK]
            ds[offset + i : offset + i + len(block)] = block
        offset += part.shape[0]


def _attrs(f: h5py.File) -> dict:
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in f.attrs.items() if k != "provenance"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Params(StageParams):
    """Rule `infer_gather`'s params: `shards` = K, the number of shard files."""

    rule = "infer_gather"
    shards: int

    def check(self) -> None:
        check_int(self.shards, "infer.shards", low=1)


def run(params: Params, inputs, outputs, log=None) -> None:
    """`inputs["shards"]` (1-of-K ... K-of-K) -> the output, in the order of `inputs["index"]`."""
    log = sys.stdout if log is None else log
    shards = list(inputs["shards"])
    if len(shards) != params.shards:
        raise ValueError(f"rule infer_gather: {len(shards)} shard files for params shards={params.shards}")
    names = [s.name for s in read_index(inputs["index"])]
    prov = provenance(params.as_dict(), input_files(inputs))
    n = gather_h5(shards, the_file(outputs), prov, expected_names=names)
    print(f"gathered {len(shards)} shards: {n} images", file=log)
