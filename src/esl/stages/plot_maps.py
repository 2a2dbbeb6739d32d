"""Figures of the report drawn from the maps (matplotlib, off-screen): rules `plot_entropy` (per-class entropy
histograms of a model, from the pass-1 histograms the entropy stage stored: no new pass over the maps) and
`plot_examples` (a few target images with the prediction, the pseudo-labels of each method and the ground truth).

The histograms are read exactly off pass 1 by `esl.ops.histograms.entropy_bins`; label maps of any known label space
(19, 16 or 7 classes) are drawn in the Cityscapes colours (`esl.io.labels.shown_as_19`).
"""

from __future__ import annotations

import dataclasses
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter

from esl.io.h5 import open_h5, read_names, require_datasets
from esl.io.images import read_image, read_label
from esl.io.labels import IGNORE, PALETTE, colorize, label_space, shown_as_19
from esl.io.layouts import LAYOUTS, read_index
from esl.io.tables import read_csv
from esl.ops.histograms import FirstPass, entropy_bins
from esl.ops.thresholds import METHODS
from esl.stages.params import StageParams, check_int, named
from esl.stages.plots import _prov, colours
from esl.stages.report import save_figure

matplotlib.use("Agg")  # no display on cluster nodes


def read_pass1_entropy(path, num_classes: int) -> np.ndarray:
    """The (C, 65536) pass-1 entropy histograms of an entropy file: as stored (`pass1_entropy`), or counted from its
    `label` and `entropy` maps when the file has none (made before the entropy stage stored them)."""
    with open_h5(path) as f:
        first = FirstPass.read(f, path, num_classes, keys=("entropy",))
        if first is None:
            require_datasets(f, path, "label", "entropy")
            first = FirstPass(num_classes, keys=("entropy",))
            for i in range(f["label"].shape[0]):
                first.add(f["label"][i : i + 1], entropy=f["entropy"][i : i + 1])
        return np.asarray(first.rank("entropy").hist_hi)


def plot_entropy_histograms(
    hist_hi: np.ndarray, path, model: str = "", thresholds: dict | None = None, prov: dict | None = None
) -> None:
    """One panel per class: the histogram of the normalised entropy of the target-train pixels predicted as that class
    (share of the class's pixels per bin, log scale), with the per-class thresholds of `thresholds` (pseudo-label set
    -> (C,) entropy thresholds, e.g. ESL's made from this model) as vertical lines."""
    counts = entropy_bins(hist_hi)
    num_classes, bins = counts.shape
    names = label_space(num_classes).names
    ncols = 5
    nrows = -(-num_classes // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.7 * ncols, 1.9 * nrows + 0.5), squeeze=False)
    edges = np.linspace(0.0, 1.0, bins + 1)
    colour = colours(list(thresholds or {}))
    for c, ax in enumerate(axes.flat):
        if c >= num_classes:
            ax.set_axis_off()
            continue
        n = int(counts[c].sum())
        ax.set_title(f"{names[c]} ({n:,} px)", fontsize=8)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=6)
        if n == 0:
            ax.text(0.5, 0.5, "never predicted", ha="center", va="center", fontsize=7, color="0.4")
            ax.set_yticks([])
            continue
        share = counts[c] / n
        ax.stairs(share, edges, fill=True, color="tab:purple", alpha=0.75)
        ax.set_yscale("log")
        ax.set_ylim(min(1e-3, share[share > 0].min() / 2), 1.5)  # at least three decades: major ticks to read
        ax.yaxis.set_minor_formatter(NullFormatter())
        if c % ncols == 0:
            ax.set_ylabel("share of pixels", fontsize=7)
        for label_set, values in (thresholds or {}).items():
            t = float(values[c])
            if np.isfinite(t):
                ax.axvline(t, color=colour[label_set], lw=1.1, ls="--", label=label_set)
    handles = [plt.Line2D([], [], color=colour[s], ls="--", label=f"{s} threshold") for s in thresholds or {}]
    title = f"Normalised entropy of the target-train pixels per predicted class, {model}"
    fig.suptitle(title + " (share of the class's pixels per bin of 1/64)", fontsize=10)
    if handles:
        fig.legend(handles=handles, loc="upper right", fontsize=8, ncol=len(handles))
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    save_figure(fig, path, prov)


def _colour(label: np.ndarray, num_classes: int) -> np.ndarray:
    """RGB picture of a label map of `num_classes` classes, in the Cityscapes colours of the trainIds that show its
    classes (`shown_as_19`: 16 SYNTHIA's, 7 Mapillary's, 19 as they are); ignored pixels black."""
    return colorize(shown_as_19(label, num_classes))


def plot_examples(panels: list[dict], columns: list[str], path, num_classes: int, prov: dict | None = None) -> None:
    """A grid of pictures: one row per image (`panels`: name -> {column: RGB image or label map}), one column per
    entry of `columns` (missing ones blank); label maps are coloured (ignored pixels black) and a legend lists the
    classes shown."""
    names = label_space(num_classes).names
    first = next((p for row in panels for p in row["pictures"].values() if p is not None), None)
    height, width = (1, 2) if first is None else first.shape[:2]
    size, legend = 2.6, 0.45  # inches: a panel's width, the legend's strip
    fig_height = (size * height / width + 0.3) * len(panels) + 0.3 + legend
    fig, axes = plt.subplots(len(panels), len(columns), figsize=(size * len(columns), fig_height), squeeze=False)
    shown = set()
    for r, row in enumerate(panels):
        for j, column in enumerate(columns):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            picture = row["pictures"].get(column)
            if picture is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=8, color="0.4", transform=ax.transAxes)
            elif picture.ndim == 2:
                shown.update(int(c) for c in np.unique(picture) if c != IGNORE)
                ax.imshow(_colour(picture, num_classes), interpolation="nearest")
            else:
                ax.imshow(picture, interpolation="nearest")
            if r == 0:
                ax.set_title(column, fontsize=9)
            if j == 0:
                ax.set_ylabel(row["name"], fontsize=7)
    shown = sorted(c for c in shown if c < num_classes)
    ids = shown_as_19(np.array(shown, dtype=np.int64), num_classes)
    handles = [Patch(color=PALETTE[i] / 255.0, label=names[c]) for c, i in zip(shown, ids)]
    handles.append(Patch(color="black", label="ignored (255)"))
    fig.legend(handles=handles, loc="lower center", fontsize=7, ncol=min(len(handles), 10), frameon=False)
    fig.tight_layout(rect=(0, legend / fig_height, 1, 1))
    save_figure(fig, path, prov)


def example_panels(entropy_h5, pseudo: dict, index, layout: str, num_classes: int, count: int):
    """(rows, columns) for `plot_examples`: the first `count` images of the entropy file `entropy_h5` (its argmax is
    the prediction), each with the target-train image and ground truth of `index` (when listed) and the labels of each
    pseudo-label file of `pseudo` (set -> path), looked up by name."""
    samples = {s.name: s for s in read_index(index)}
    with open_h5(entropy_h5) as f:
        require_datasets(f, entropy_h5, "label", "names")
        names = read_names(f)[:count]
        predictions = [f["label"][i] for i in range(len(names))]
    size = predictions[0].shape if predictions else None
    columns = ["image", "prediction"] + [f"{s} pseudo-labels" for s in pseudo]
    rows = [{"name": n, "pictures": {"prediction": p}} for n, p in zip(names, predictions)]
    for label_set, path in pseudo.items():
        with open_h5(path) as f:
            require_datasets(f, path, "label", "names")
            where = {n: i for i, n in enumerate(read_names(f))}
            for row in rows:
                i = where.get(row["name"])
                row["pictures"][f"{label_set} pseudo-labels"] = None if i is None else f["label"][i]
    labelled = False
    for row in rows:
        sample = samples.get(row["name"])
        if sample is not None:
            row["pictures"]["image"] = read_image(sample.image, size)[..., ::-1]  # BGR -> RGB
            if sample.label:
                row["pictures"]["ground truth"] = read_label(layout, sample.label, size, num_classes=num_classes)
                labelled = True
    return rows, columns + (["ground truth"] if labelled else [])


# ---- the rules -------------------------------------------------------------------------------------------------


def _thresholds(inputs, sets: list, rule: str) -> dict:
    """{set: (C,) thresholds} of the pseudo-label sets whose method thresholds the entropy (ESL); others left out."""
    paths = list(named(inputs, "thresholds", []))
    if len(paths) != len(sets):
        raise ValueError(f"rule {rule}: {len(paths)} thresholds files for {len(sets)} sets ({', '.join(sets)})")
    out = {}
    for label_set, path in zip(sets, paths):
        method = METHODS.get(label_set.rsplit("_r", 1)[0])
        if method is not None and method.dataset == "entropy" and method.keep != "none":
            out[label_set] = read_csv(path).sort_values("class_id")["threshold"].to_numpy(dtype=float)
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class EntropyPlotParams(StageParams):
    """Rule `plot_entropy`: the model, the class count, and the pseudo-label sets made from its entropy file (in
    the order of `inputs["thresholds"]`)."""

    rule = "plot_entropy"
    model: str
    num_classes: int
    sets: list

    def check(self) -> None:
        check_int(self.num_classes, "data.num_classes", low=1)


def run_plot_entropy(params: EntropyPlotParams, inputs, outputs, log=None) -> None:
    """`inputs["entropy"]` (`entropy/{model}.h5`) and the sets' `inputs["thresholds"]` -> `outputs["histograms"]`."""
    log = sys.stdout if log is None else log
    hist = read_pass1_entropy(inputs["entropy"], params.num_classes)
    thresholds = _thresholds(inputs, list(params.sets), params.rule)
    plot_entropy_histograms(hist, outputs["histograms"], params.model, thresholds, _prov(params, inputs))
    print(f"wrote {outputs['histograms']} ({int(hist.sum()):,} pixels, thresholds of {list(thresholds)})", file=log)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExamplesPlotParams(StageParams):
    """Rule `plot_examples`: the pseudo-label sets (in the order of `inputs["pseudo"]`), how many images, the target
    layout (to read its ground truth) and the class count."""

    rule = "plot_examples"
    sets: list
    images: int
    layout: str
    num_classes: int

    def check(self) -> None:
        check_int(self.images, "plot_examples images", low=1)
        check_int(self.num_classes, "data.num_classes", low=1)
        if self.layout not in LAYOUTS:
            raise ValueError(f"config data.target.layout={self.layout!r} must be one of {', '.join(LAYOUTS)}")


def run_plot_examples(params: ExamplesPlotParams, inputs, outputs, log=None) -> None:
    """`inputs["entropy"]` (the prediction), `inputs["pseudo"]` (one file per set), `inputs["index"]` (images and
    ground truth) -> `outputs["examples"]`."""
    log = sys.stdout if log is None else log
    paths = list(named(inputs, "pseudo", []))
    if len(paths) != len(params.sets):
        raise ValueError(f"rule {params.rule}: {len(paths)} pseudo-label files for {len(params.sets)} sets")
    rows, columns = example_panels(
        inputs["entropy"],
        dict(zip(params.sets, paths)),
        inputs["index"],
        params.layout,
        params.num_classes,
        params.images,
    )
    plot_examples(rows, columns, outputs["examples"], params.num_classes, _prov(params, inputs))
    print(f"wrote {outputs['examples']} ({len(rows)} images; {', '.join(columns)})", file=log)
