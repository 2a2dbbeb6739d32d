"""CSV tables with a provenance line: `write_csv` (first line `# provenance: {json}`, atomic), `read_csv` (skips it)."""

from __future__ import annotations

import json

import pandas as pd

from esl.io.files import atomic_path


def write_csv(df: pd.DataFrame, path, prov: dict, index: bool = False) -> None:
    """Write a CSV whose first line is `# provenance: {json}`, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write("# provenance: " + json.dumps(prov, default=str) + "\n")
            df.to_csv(f, index=index)


def read_csv(path, **kwargs) -> pd.DataFrame:
    return pd.read_csv(path, comment="#", **kwargs)
