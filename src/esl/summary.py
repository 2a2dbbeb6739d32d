"""The summary table: one row per model with mIoU (and mIoU-13 for SYNTHIA's 16 classes), per-class IoU and the
quality of its training pseudo-labels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .h5io import read_csv


def summarize(models, evals: dict, quality: dict) -> pd.DataFrame:
    """models: names in row order; evals: model -> eval CSV; quality: model -> pseudo-label quality CSV (self-trained
    models only; `pretrain` gets NaN)."""
    rows = []
    for model in models:
        table = read_csv(evals[model])
        per_class = table[table["class_id"] >= 0]
        row = {"model": model}
        for _, mean in table[table["class_id"] < 0].iterrows():  # mIoU, and mIoU-13 for the 16 SYNTHIA classes
            row[str(mean["class_name"])] = float(mean["iou"])
        row.update({f"iou_{n}": v for n, v in zip(per_class["class_name"], per_class["iou"])})
        row["pl_precision"], row["pl_coverage"] = np.nan, np.nan
        if model in quality:
            q = read_csv(quality[model])
            overall = q[q["class_name"] == "all"].iloc[0]
            row["pl_precision"], row["pl_coverage"] = float(overall["precision"]), float(overall["coverage"])
        rows.append(row)
    return pd.DataFrame(rows)
