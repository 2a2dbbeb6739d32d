"""Sharded per-image work: which images a shard takes, and gathering shard HDF5 files into one.

Shards are contiguous runs of the sample order whose boundaries fall on multiples of the batch size, so every forward
pass of a sharded run sees exactly the batch it would see unsharded: the gathered file equals the unsharded one.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from .h5io import create_h5, read_names, write_names

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
        first = files[0]
        keys = sorted(k for k in first if k != "names")
        attrs = _attrs(first)
        names = []
        for path, f in zip(shards, files):
            if sorted(k for k in f if k != "names") != keys:
                raise ValueError(f"{path}: datasets {sorted(f)} differ from {shards[0]}'s {sorted(first)}")
            if _attrs(f) != attrs:
                raise ValueError(f"{path}: attributes differ from {shards[0]}'s")
            shard_names = read_names(f)
            for k in keys:
                a, b = f[k], first[k]
                if a.dtype != b.dtype or a.shape[1:] != b.shape[1:] or a.shape[0] != len(shard_names):
                    raise ValueError(
                        f"{path}: dataset {k} is {a.dtype} {a.shape}, expected {b.dtype} (n, *{b.shape[1:]})"
                    )
            names += shard_names
        if expected_names is not None and list(expected_names) != names:
            pairs = enumerate(zip(names, expected_names))
            diff = next((i for i, (a, b) in pairs if a != b), min(len(names), len(expected_names)))
            raise ValueError(
                f"{shards[0].parent}: the shards hold {len(names)} images, expected {len(expected_names)} in index "
                f"order (first difference at position {diff})"
            )
        n = len(names)
        with create_h5(out_h5, prov) as out:
            for k in keys:
                src = first[k]
                ds = out.create_dataset(
                    k,
                    shape=(n, *src.shape[1:]),
                    dtype=src.dtype,
                    chunks=src.chunks,
                    compression=src.compression,
                    compression_opts=src.compression_opts,
                    shuffle=src.shuffle,
                )
                offset = 0
                for f in files:
                    part = f[k]
                    for i in range(0, part.shape[0], BLOCK):
                        block = part[i : i + BLOCK]
                        ds[offset + i : offset + i + len(block)] = block
                    offset += part.shape[0]
            write_names(out, names)
            for key in attrs:
                out.attrs[key] = first.attrs[key]
        return n
    finally:
        for f in files:
            f.close()


def _attrs(f: h5py.File) -> dict:
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in f.attrs.items() if k != "provenance"}
