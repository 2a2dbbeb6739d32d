"""Figures the report embeds (matplotlib, drawn off-screen)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on cluster nodes

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

from .h5io import atomic_path  # noqa: E402
from .snapshots import choose  # noqa: E402

MARKERS = {
    "final": ("s", "tab:blue", "final"),
    "best": ("*", "tab:red", "best (target-val labels; optimistic)"),
    "selected": ("o", "tab:green", "selected (label-free)"),
}


def plot_snapshots(tables: dict, path, selection: str = "entropy") -> None:
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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
