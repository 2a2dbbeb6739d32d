"""Figures the report embeds (matplotlib, drawn off-screen): rule `plot_snapshots`, and `save_figure`, which every
plotting stage (`esl.stages.plots`, `esl.stages.plot_maps`) writes its PNG with."""

from __future__ import annotations

import dataclasses
import json
import sys

import matplotlib
import matplotlib.pyplot as plt

from esl.io.files import atomic_path
from esl.io.provenance import provenance
from esl.io.tables import read_csv
from esl.stages.params import StageParams, input_files, named, the_file
from esl.stages.snapshots import check_selection, choose

matplotlib.use("Agg")  # no display on cluster nodes


DPI = 100


def save_figure(fig, path, prov: dict | None = None, dpi: int = DPI) -> None:
    """`fig` as a PNG at `path`, atomically (written under a temporary name, then renamed), with the provenance JSON
    as the PNG text chunk `provenance` when given; the figure is closed."""
    metadata = {"Software": "esl (matplotlib)"}
    if prov is not None:
        metadata["provenance"] = json.dumps(prov, default=str)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, metadata=metadata)
    finally:
        plt.close(fig)


MARKERS = {
    "final": ("s", "tab:blue", "final"),
    "best": ("*", "tab:red", "best (target-val labels; optimistic)"),
    "selected": ("o", "tab:green", "selected (label-free)"),
}


def plot_snapshots(tables: dict, path, selection: str = "entropy", prov: dict | None = None) -> None:
    """One panel per model: target-val mIoU against iteration (left axis) and the target-train mean entropy the
    label-free selection uses (right axis, dashed), with the final, best and selected models marked. PNG, atomic."""
    n = max(len(tables), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, (model, table) in zip(axes[0], tables.items()):
        table = table.sort_values("iteration")
        ax.plot(table["iteration"], table["mIoU"], color="0.3", lw=1.2, label="mIoU (target val)")
        for choice, (marker, colour, label) in MARKERS.items():
            it = choose(table, choice, selection)
            miou = float(table.loc[table["iteration"] == it, "mIoU"].iloc[0])
            size = 110 if choice == "best" else 55
            ax.scatter([it], [miou], marker=marker, s=size, color=colour, zorder=3, label=f"{label}: {miou:.2f}")
        ax.set_title(model)
        ax.set_xlabel("iteration")
        ax.set_ylabel("mIoU (%)")
        ax.grid(alpha=0.3)
        twin = ax.twinx()
        twin.plot(table["iteration"], table["target_entropy"], color="tab:green", ls="--", lw=0.8, alpha=0.7)
        twin.set_ylabel("mean target-train entropy", color="tab:green", fontsize=8)
        twin.tick_params(axis="y", labelsize=7, colors="tab:green")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path, prov, dpi=110)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Params(StageParams):
    """Rule `plot_snapshots`: the models with snapshots (in the order of `inputs["snapshots"]`), evaluate.selection."""

    rule = "plot_snapshots"
    models: list
    selection: str

    def check(self) -> None:
        check_selection(self.selection)


def run(params: Params, inputs, outputs, log=None) -> None:
    """`inputs["snapshots"]` (eval/{model}_snapshots.csv, one per model) -> plots/snapshots.png."""
    log = sys.stdout if log is None else log
    paths = list(named(inputs, "snapshots", []))
    if len(paths) != len(params.models):
        raise ValueError(f"rule plot_snapshots: {len(paths)} snapshot tables for {len(params.models)} models")
    tables = {model: read_csv(path) for model, path in zip(params.models, paths)}
    out = the_file(outputs)
    prov = provenance(config=params.as_dict(), inputs=input_files(inputs))
    plot_snapshots(tables, out, selection=params.selection, prov=prov)
    print(f"wrote {out} ({len(tables)} models)", file=log)
