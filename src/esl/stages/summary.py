"""The summary table (rule `summary`): one row per model (and ensemble) with mIoU (and mIoU-13 for SYNTHIA's 16
classes), per-class IoU, the quality of its training pseudo-labels, and the best and selected snapshots
(esl.stages.snapshots)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from esl.io.provenance import provenance
from esl.io.tables import read_csv, write_csv
from esl.stages.params import StageParams, input_files, named, the_file
from esl.stages.snapshots import check_selection, choices_row


@dataclasses.dataclass(frozen=True, kw_only=True)
class Params(StageParams):
    """Rule `summary`: the models (and ensembles) in row order, each trained model's final iteration (None for a
    given checkpoint), config evaluate.selection."""

    rule = "summary"
    models: list
    final_iters: dict
    selection: str

    def check(self) -> None:
        check_selection(self.selection)
        unknown = sorted(set(self.final_iters) - set(self.models))
        if unknown:
            raise ValueError(f"rule summary: params final_iters names models not in models: {unknown}")


def run(params: Params, inputs, outputs, log=None) -> None:
    """`inputs["evals"]` (eval/{model}.csv), `inputs["quality"]` (pseudo_labels/{model}_quality.csv) and
    `inputs["snapshots"]` (eval/{model}_snapshots.csv), matched to models by file name -> summary.csv."""
    log = sys.stdout if log is None else log
    evals = {Path(f).stem: f for f in named(inputs, "evals", [])}
    quality = {Path(f).name.removesuffix("_quality.csv"): f for f in named(inputs, "quality", [])}
    snapshots = {Path(f).name.removesuffix("_snapshots.csv"): f for f in named(inputs, "snapshots", [])}
    missing = [m for m in params.models if m not in evals]
    if missing:
        raise ValueError(f"rule summary: no eval/{{model}}.csv among the inputs for {', '.join(missing)}")
    table = summarize(
        params.models, evals, quality, snapshots, final_iters=params.final_iters, selection=params.selection
    )
    write_csv(table, the_file(outputs), provenance(params.as_dict(), input_files(inputs)))
    print(table.to_string(index=False), file=log)


def summarize(
    models,
    evals: dict,
    quality: dict,
    snapshots: dict | None = None,
    final_iters: dict | None = None,
    selection: str = "entropy",
) -> pd.DataFrame:
    """models: names in row order; evals: model -> eval CSV; quality: model -> pseudo-label quality CSV (self-trained
    models only; `pretrain` gets NaN); snapshots: model -> `eval/{model}_snapshots.csv` (models that keep snapshots;
    without, best and selected are the final model); final_iters: model -> its final iteration (None for a given
    checkpoint; ensembles are absent and get NaN best/selected columns)."""
    snapshots, final_iters = snapshots or {}, final_iters or {}
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
        if model in final_iters:
            shots = read_csv(snapshots[model]) if model in snapshots else None
            means = {m: row[m] for m in ("mIoU", "mIoU-13") if m in row}
            row.update(choices_row(shots, means, final_iters[model], selection))
        else:  # an ensemble: no snapshots to choose from
            row.update(mIoU_best=np.nan, best_iter=np.nan, mIoU_selected=np.nan, selected_iter=np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    for col in ("best_iter", "selected_iter"):  # integers, empty where there is none
        table[col] = table[col].astype("Int64")
    return table
