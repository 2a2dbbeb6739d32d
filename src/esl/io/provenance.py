"""What produced an artifact: the provenance JSON every HDF5 file (attribute `provenance`), CSV (first line
`# provenance: {json}`) and checkpoint carries (docs/ARCHITECTURE.md, "Artifacts").

`provenance` records the package version, the time, the parameter values and their hash, the input files (size and
sha256) and the thread count (`threads`): CPU results depend on it in the last bits (torch's reductions split the work
by thread), so two runs under other `--cores` can differ slightly and the provenance says why.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sys
from pathlib import Path

import h5py

from esl import __version__

HASH_LIMIT = 1 << 30  # inputs larger than this are recorded by size only


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


def provenance(config: dict | None = None, inputs=(), threads: int | None = None) -> dict:
    """What produced an artifact: parameter values and their hash, input files, package version, time, threads.

    `threads`: the job's CPU thread count; None: torch's intra-op thread count now if torch is loaded (the stages set
    it from the rule's threads before they compute), else left out (nothing of torch ran: e.g. the index)."""
    config = config or {}
    if threads is None and "torch" in sys.modules:
        threads = sys.modules["torch"].get_num_threads()
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
        **({} if threads is None else {"threads": int(threads)}),
    }


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
