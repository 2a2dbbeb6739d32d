"""Several seeds (config `seeds`): rule `summary_seeds` aggregates the per-seed `summary.csv` tables per model, rule
`plot_seeds` draws each seed's mIoU per model.

`summary_seeds.csv` has one row per model (and ensemble), in the summaries' order: `n` (seeds), then `{col}_mean`
and `{col}_std` (sample std, ddof 1; empty for one seed) of mIoU (and mIoU-13), every per-class IoU, the pseudo-label
precision and coverage and the best/selected snapshots' mIoU (and mIoU-13), each over the seeds where the value
exists (a class's IoU is empty in a seed where neither its prediction nor its label has the class); then the paired
differences, per seed, of the model's mIoU (and mIoU-13) against `pretrain` of the same seed
(`{metric}_vs_pretrain_mean/_std`) and against the no-labels control of the same round (`nolabels_r{k}`,
`{metric}_vs_nolabels_mean/_std`), empty where there is no such reference (pretrain itself, the control itself, no
control run, an ensemble against the control).
"""

from __future__ import annotations

import dataclasses
import re
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from esl.io.provenance import provenance
from esl.io.tables import read_csv, write_csv
from esl.stages.params import StageParams, input_files, named, the_file
from esl.stages.report import save_figure

matplotlib.use("Agg")  # no display on cluster nodes

HEADLINES = ("mIoU", "mIoU-13")  # the means a paired difference is taken of (mIoU-13: SYNTHIA's 16 classes)
# besides the headlines and iou_*
AGGREGATED = ("pl_precision", "pl_coverage", "mIoU_best", "mIoU_selected", "mIoU-13_best", "mIoU-13_selected")
CONTROL = "nolabels"  # pseudo_labels.methods' control: target images, no target label


@dataclasses.dataclass(frozen=True, kw_only=True)
class Params(StageParams):
    """Rules `summary_seeds`, `plot_seeds`: the run seeds (config seeds), in the order of `inputs["summaries"]`, and
    the ensembles' names (config evaluate.ensembles; never paired with the no-labels control)."""

    rule = "summary_seeds"
    seeds: list
    ensembles: list = dataclasses.field(default_factory=list)

    def check(self) -> None:
        if not self.seeds or len(set(map(str, self.seeds))) != len(self.seeds):
            raise ValueError(f"config seeds={self.seeds!r}: give a list of distinct seeds, e.g. [0, 1, 2]")


def read_summaries(seeds: list, paths: list) -> pd.DataFrame:
    """The per-seed summary.csv tables, stacked with a first column `seed`; every seed must list the same models."""
    if len(paths) != len(seeds):
        raise ValueError(f"rule summary_seeds: {len(paths)} summary.csv files for {len(seeds)} seeds ({seeds})")
    tables = []
    for seed, path in zip(seeds, paths):
        table = read_csv(path)
        if tables and list(table["model"]) != list(tables[0]["model"]):
            raise ValueError(
                f"{path}: models {list(table['model'])} differ from seed {seeds[0]}'s {list(tables[0]['model'])};"
                " re-run the seeds with one config (snakemake --forcerun summary)"
            )
        tables.append(table.assign(seed=seed))
    stacked = pd.concat(tables, ignore_index=True)
    return stacked[["seed"] + [c for c in stacked.columns if c != "seed"]]


def _control(model: str, models, ensembles=()) -> str | None:
    """The no-labels control of `model`'s round (`esl_r2` -> `nolabels_r2`) when it ran and is not `model`; none for
    an ensemble (whatever its name)."""
    method, _, k = model.rpartition("_r")
    control = f"{CONTROL}_r{k}"
    if model in ensembles or not re.fullmatch(r"[a-z]+", method) or not k.isdigit():
        return None
    return control if method != CONTROL and control in models else None


def aggregate(per_seed: pd.DataFrame, ensembles=()) -> pd.DataFrame:
    """`read_summaries`' table -> one row per model: n, mean and std over seeds, paired differences (module doc)."""
    models = list(dict.fromkeys(per_seed["model"]))
    headlines = [c for c in HEADLINES if c in per_seed]
    columns = headlines + [c for c in per_seed if c.startswith("iou_")] + [c for c in AGGREGATED if c in per_seed]
    wide = {c: per_seed.pivot(index="seed", columns="model", values=c) for c in headlines}
    rows = []
    for model in models:
        values = per_seed[per_seed["model"] == model]
        row = {"model": model, "n": len(values)}
        for c in columns:
            x = values[c].astype(float)
            row[f"{c}_mean"] = x.mean()
            row[f"{c}_std"] = x.std(ddof=1)  # NaN for one seed
        for ref_name, ref in (
            ("pretrain", "pretrain" if model != "pretrain" else None),
            (CONTROL, _control(model, models, ensembles)),
        ):
            for c in headlines:
                d = wide[c][model] - wide[c][ref] if ref else pd.Series(dtype=float)
                row[f"{c}_vs_{ref_name}_mean"] = d.mean() if ref else np.nan
                row[f"{c}_vs_{ref_name}_std"] = d.std(ddof=1) if ref else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def run(params: Params, inputs, outputs, log=None) -> None:
    """`inputs["summaries"]` (each seed's summary.csv, in `params.seeds` order) -> summary_seeds.csv."""
    log = sys.stdout if log is None else log
    per_seed = read_summaries(list(params.seeds), list(named(inputs, "summaries", [])))
    table = aggregate(per_seed, params.ensembles)
    write_csv(table, the_file(outputs), provenance(params.as_dict(), input_files(inputs)))
    shown = [c for c in table.columns if c.startswith(("mIoU_mean", "mIoU_std", "mIoU_vs_"))]
    print(f"{len(params.seeds)} seeds {params.seeds}:", file=log)
    print(table[["model", "n", *shown]].to_string(index=False, float_format="%.2f"), file=log)


# ---- the figure ------------------------------------------------------------------------------------------------


def plot_seeds(per_seed: pd.DataFrame, path, prov: dict | None = None) -> None:
    """Target-val mIoU per model: one marker per seed (the same marker for a seed across models), the mean as a tick
    with ± one std, so a method's gain can be read against the spread of the seeds."""
    models = list(dict.fromkeys(per_seed["model"]))
    seeds = list(dict.fromkeys(per_seed["seed"]))
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(models) + 2.5), 3.6))
    x = np.arange(len(models))
    mean = [per_seed.loc[per_seed["model"] == m, "mIoU"].mean() for m in models]
    std = [per_seed.loc[per_seed["model"] == m, "mIoU"].std(ddof=1) for m in models]
    # the mean as a wide tick, not a bar: the y axis spans the seeds' values, and a bar would start off 0
    ax.errorbar(x, mean, yerr=np.nan_to_num(std), fmt="_", ms=28, mew=2, color="0.3", capsize=5, label="mean ± std")
    markers = "osD^v<>P*X"
    offsets = np.linspace(-0.18, 0.18, len(seeds)) if len(seeds) > 1 else [0.0]
    for i, seed in enumerate(seeds):
        rows = per_seed[per_seed["seed"] == seed].set_index("model")
        ax.plot(
            x + offsets[i],
            [rows.loc[m, "mIoU"] for m in models],
            markers[i % len(markers)],
            ms=6,
            ls="none",
            label=f"seed {seed}",
        )
    values = per_seed["mIoU"].astype(float)
    low, high = values.min(), values.max()
    pad = max(1.0, 0.25 * (high - low))
    ax.set_ylim(low - pad, high + pad)  # the seeds' spread, not the distance to 0, is what the figure is for
    ax.set_xticks(x, models, rotation=20, ha="right", fontsize=9)
    ax.set_ylabel("mIoU (%), target val")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0, frameon=False)
    ax.set_title(f"mIoU per model over {len(seeds)} seeds", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, prov)


def run_plot(params: Params, inputs, outputs, log=None) -> None:
    """`inputs["summaries"]` -> `outputs["seeds"]` (plots/seeds.png)."""
    log = sys.stdout if log is None else log
    per_seed = read_summaries(list(params.seeds), list(named(inputs, "summaries", [])))
    plot_seeds(per_seed, outputs["seeds"], provenance(config=params.as_dict(), inputs=input_files(inputs)))
    print(f"wrote {outputs['seeds']} ({len(params.seeds)} seeds)", file=log)
