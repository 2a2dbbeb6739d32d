"""Figures of the report drawn from the stages' tables (matplotlib, off-screen): rules `plot_training` (the training
curves of `metrics.csv`), `plot_iou` (mIoU per model, per-class IoU grouped by model) and `plot_pseudo_labels`
(thresholds per class and method; pseudo-label precision and coverage per class). Each writes PNGs with
`esl.stages.report.save_figure` (atomic, provenance in a PNG text chunk); the figures of the maps (entropy
histograms, example images) are `esl.stages.plot_maps`.
"""

from __future__ import annotations

import dataclasses
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from esl.io.provenance import provenance
from esl.io.tables import read_csv
from esl.ops.thresholds import METHODS
from esl.stages.params import StageParams, input_files, named
from esl.stages.report import save_figure

matplotlib.use("Agg")  # no display on cluster nodes

# What a threshold of each map means (the dataset a method ranks, esl.ops.thresholds.METHODS).
MAP_LABELS = {"entropy": "normalised entropy (keep if <= threshold)", "max_prob": "max-prob (keep if >= threshold)"}


def colours(names) -> dict:
    """One colour per name (models, pseudo-label sets), stable across the figures of one run."""
    cycle = plt.get_cmap("tab10").colors
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def _method(label_set: str) -> str:
    """`esl_r2` -> `esl`."""
    return label_set.rsplit("_r", 1)[0]


def _smooth(values: pd.Series) -> pd.Series:
    """A centred running mean over about 1/50 of the points (the raw curve is drawn faintly beneath)."""
    return values.rolling(max(1, len(values) // 50), center=True, min_periods=1).mean()


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, color="0.35", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


# ---- training curves -------------------------------------------------------------------------------------------


def plot_training(tables: dict, path, prov: dict | None = None) -> None:
    """One row per model (`tables`: name -> its `metrics.csv`): the loss terms (`loss_*` columns, log scale when all
    positive; raw faint, smoothed bold), the learning rate, and the throughput (images/s) against iteration. A table
    without rows (a given `pretrain.checkpoint`: nothing was trained) gets a note instead of curves."""
    n = max(len(tables), 1)
    fig, axes = plt.subplots(n, 3, figsize=(13, 2.5 * n), squeeze=False, gridspec_kw={"width_ratios": [2.2, 1, 1]})
    for row, (model, table) in zip(axes, tables.items()):
        losses = [c for c in table.columns if c.startswith("loss_") and table[c].notna().any()]
        if table.empty or "iteration" not in table.columns:
            _empty(row[0], f"{model}: no training (a given checkpoint)")
            for ax in row[1:]:
                ax.set_axis_off()
            continue
        table = table.sort_values("iteration")
        it = table["iteration"]
        ax = row[0]
        for colour, column in zip(plt.get_cmap("tab10").colors, losses):
            values = table[column].astype(float)
            ax.plot(it, values, color=colour, lw=0.6, alpha=0.3)
            ax.plot(it, _smooth(values), color=colour, lw=1.4, label=column.removeprefix("loss_"))
        finite = table[losses].to_numpy(dtype=float) if losses else np.empty(0)
        finite = finite[np.isfinite(finite)]
        if finite.size and (finite > 0).all():
            ax.set_yscale("log")
        if losses:
            ax.legend(fontsize=7, loc="upper right", ncol=min(len(losses), 4))
        else:
            _empty(ax, "no loss columns")
        ax.set_title(f"{model}: loss terms", fontsize=10)
        for ax, column, title in ((row[1], "lr", "learning rate"), (row[2], "images_per_s", "images/s")):
            if column in table.columns and table[column].notna().any():
                ax.plot(it, table[column].astype(float), color="0.25", lw=1.0)
            else:
                _empty(ax, f"no {column}")
            ax.set_title(f"{model}: {title}", fontsize=10)
        for ax in row:
            ax.set_xlabel("iteration", fontsize=8)
            ax.tick_params(which="both", labelsize=7)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, prov)


# ---- IoU -------------------------------------------------------------------------------------------------------


def _means(table: pd.DataFrame) -> dict:
    """The mean rows of an `eval/{model}.csv` (class_id < 0): {"mIoU": ..., "mIoU-13": ...}."""
    rows = table[table["class_id"] < 0]
    return {str(n): float(v) for n, v in zip(rows["class_name"], rows["iou"])}


def _classes(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["class_id"] >= 0].sort_values("class_id")


def _bar_groups(ax, groups: list[str], series: dict, colour: dict, fmt: str | None = None) -> None:
    """Bars grouped along x (`groups`), one bar per series in each group (`series`: name -> values, NaN: no bar)."""
    x = np.arange(len(groups))
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        values = np.asarray(values, dtype=float)
        bars = ax.bar(x - 0.4 + width * (i + 0.5), values, width, color=colour[name], label=name)
        if fmt:
            ax.bar_label(bars, labels=["" if np.isnan(v) else fmt.format(v) for v in values], fontsize=7, padding=1)
    ax.set_xticks(x, groups, rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.grid(axis="y", alpha=0.3)


def _legend(ax) -> None:
    """The series' legend outside the axes, at the top right."""
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0, frameon=False)


def plot_miou(tables: dict, path, prov: dict | None = None) -> None:
    """Target-val mIoU per model (`tables`: name -> `eval/{model}.csv`), with the value on each bar; with 16 classes
    also mIoU-13 (hatched) beside it."""
    names = list(tables)
    means = {m: _means(t) for m, t in tables.items()}
    kinds = [k for k in ("mIoU", "mIoU-13") if any(k in v for v in means.values())]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(names) + 2), 3.6))
    x = np.arange(len(names))
    width = 0.8 / max(len(kinds), 1)
    colour = colours(names)
    for i, kind in enumerate(kinds):
        values = [means[m].get(kind, np.nan) for m in names]
        bars = ax.bar(
            x - 0.4 + width * (i + 0.5),
            values,
            width,
            color=[colour[m] for m in names],
            hatch="//" if i else None,
            edgecolor="white" if i else None,
            label=kind,
        )
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=8, padding=1)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=9)
    ax.set_ylabel("mIoU (%), target val")
    top = max([v for d in means.values() for v in d.values() if np.isfinite(v)], default=1.0)
    ax.set_ylim(0, max(top * 1.15, 1.0))
    ax.grid(axis="y", alpha=0.3)
    if len(kinds) > 1:
        ax.legend(fontsize=8)
    ax.set_title("mIoU per model", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, prov)


def plot_class_iou(tables: dict, path, prov: dict | None = None) -> None:
    """Target-val IoU per class, one bar per model in each class's group."""
    names = list(tables)
    first = _classes(next(iter(tables.values())))
    classes = list(first["class_name"])
    series = {m: _classes(t)["iou"].to_numpy(dtype=float) for m, t in tables.items()}
    fig, ax = plt.subplots(figsize=(min(16.0, max(8.0, 2 + len(classes) * (0.25 + 0.12 * len(names)))), 3.8))
    _bar_groups(ax, classes, series, colours(names))
    ax.set_ylabel("IoU (%), target val")
    ax.set_ylim(0, 100)
    _legend(ax)
    ax.set_title("Per-class IoU by model", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, prov)


# ---- pseudo-labels ---------------------------------------------------------------------------------------------


def plot_thresholds(tables: dict, path, prov: dict | None = None) -> None:
    """Per-class thresholds (`tables`: pseudo-label set, e.g. `esl_r1` -> its `_thresholds.csv`), one panel per
    method (a method's thresholds are on the map it ranks: entropy or max-prob), one bar per round in each class's
    group. A method without thresholds (the `nolabels` control) gets a note."""
    methods = list(dict.fromkeys(_method(s) for s in tables))
    fig, axes = plt.subplots(len(methods), 1, figsize=(11, 3.0 * max(len(methods), 1)), squeeze=False)
    colour = colours(list(tables))
    for ax, method in zip(axes[:, 0], methods):
        sets = {s: t.sort_values("class_id") for s, t in tables.items() if _method(s) == method}
        first = next(iter(sets.values()))
        series = {s: t["threshold"].to_numpy(dtype=float) for s, t in sets.items()}
        if not any(np.isfinite(v).any() for v in series.values()):
            _empty(ax, f"{method}: no thresholds (keeps no pixel)")
            ax.set_title(method, fontsize=10)
            continue
        _bar_groups(ax, list(first["class_name"]), series, colour)
        ax.set_ylim(0, 1.05)
        dataset = METHODS[method].dataset if method in METHODS else ""
        ax.set_ylabel(f"threshold\n{MAP_LABELS.get(dataset, dataset)}", fontsize=8)
        _legend(ax)
        ax.set_title(f"{method}: per-class thresholds", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, prov)


def plot_quality(tables: dict, path, prov: dict | None = None) -> None:
    """Pseudo-label precision and coverage per class (and overall, "all"), against target-train ground truth, one
    bar per pseudo-label set (`tables`: set -> its `_quality.csv`) in each class's group. Without ground truth the
    tables are NaN and the panels say so."""
    names = list(tables)
    first = next(iter(tables.values()))
    groups = list(first["class_name"])
    fig, axes = plt.subplots(2, 1, figsize=(11, 6.2))
    colour = colours(names)
    for ax, column, title in zip(axes, ("precision", "coverage"), ("precision (kept pixels right)", "coverage")):
        series = {s: t[column].to_numpy(dtype=float) for s, t in tables.items()}
        if not any(np.isfinite(v).any() for v in series.values()):
            _empty(ax, f"no {column}: no target-train ground truth")
        else:
            _bar_groups(ax, groups, series, colour)
            ax.set_ylim(0, 1.05)
            _legend(ax)
        ax.set_ylabel(column, fontsize=9)
        ax.set_title(f"Pseudo-label {title} per class", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, prov)


# ---- the rules -------------------------------------------------------------------------------------------------


def _tables(inputs, name: str, labels: list, rule: str) -> dict:
    """{label: table} of the input files called `name`, one per label, in order."""
    paths = list(named(inputs, name, []))
    if len(paths) != len(labels):
        raise ValueError(f"rule {rule}: {len(paths)} {name} files for {len(labels)} names ({', '.join(labels)})")
    return {label: read_csv(path) for label, path in zip(labels, paths)}


def _prov(params: StageParams, inputs) -> dict:
    return provenance(config=params.as_dict(), inputs=input_files(inputs))


def _check_names(rule: str, key: str, names) -> None:
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"rule {rule}: params {key} must be a non-empty list of names, got {names!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingPlotParams(StageParams):
    """Rule `plot_training`: the models, in the order of `inputs["metrics"]`."""

    rule = "plot_training"
    models: list

    def check(self) -> None:
        _check_names(self.rule, "models", self.models)


def run_plot_training(params: TrainingPlotParams, inputs, outputs, log=None) -> None:
    """`inputs["metrics"]` (`{model dir}/metrics.csv`, one per model) -> `outputs["training"]`."""
    log = sys.stdout if log is None else log
    tables = _tables(inputs, "metrics", params.models, params.rule)
    plot_training(tables, outputs["training"], _prov(params, inputs))
    rows = ", ".join(f"{m}: {len(t)} rows" for m, t in tables.items())
    print(f"wrote {outputs['training']} ({rows})", file=log)


@dataclasses.dataclass(frozen=True, kw_only=True)
class IouPlotParams(StageParams):
    """Rule `plot_iou`: the models (and ensembles), in the order of `inputs["evals"]`."""

    rule = "plot_iou"
    models: list

    def check(self) -> None:
        _check_names(self.rule, "models", self.models)


def run_plot_iou(params: IouPlotParams, inputs, outputs, log=None) -> None:
    """`inputs["evals"]` (`eval/{model}.csv`) -> `outputs["miou"]` (mIoU per model), `outputs["classes"]` (IoU per
    class grouped by model)."""
    log = sys.stdout if log is None else log
    tables = _tables(inputs, "evals", params.models, params.rule)
    prov = _prov(params, inputs)
    plot_miou(tables, outputs["miou"], prov)
    plot_class_iou(tables, outputs["classes"], prov)
    print(f"wrote {outputs['miou']}, {outputs['classes']} ({len(tables)} models)", file=log)


@dataclasses.dataclass(frozen=True, kw_only=True)
class PseudoLabelPlotParams(StageParams):
    """Rule `plot_pseudo_labels`: the pseudo-label sets (`{method}_r{k}`), in the order of the inputs."""

    rule = "plot_pseudo_labels"
    sets: list

    def check(self) -> None:
        _check_names(self.rule, "sets", self.sets)


def run_plot_pseudo_labels(params: PseudoLabelPlotParams, inputs, outputs, log=None) -> None:
    """`inputs["thresholds"]`, `inputs["quality"]` (`pseudo_labels/{set}_thresholds.csv`, `_quality.csv`) ->
    `outputs["thresholds"]`, `outputs["quality"]`."""
    log = sys.stdout if log is None else log
    prov = _prov(params, inputs)
    plot_thresholds(_tables(inputs, "thresholds", params.sets, params.rule), outputs["thresholds"], prov)
    plot_quality(_tables(inputs, "quality", params.sets, params.rule), outputs["quality"], prov)
    print(f"wrote {outputs['thresholds']}, {outputs['quality']} ({', '.join(params.sets)})", file=log)
