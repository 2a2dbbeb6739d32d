"""TODO docstring."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from pathlib import Path


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
