"""The report's figures: each plotting stage from synthetic inputs (the entropy histograms exactly equal to
`np.histogram` of the values), the tiny run's plots, and the report checked in a real browser (headless Chromium,
scripts/check_report.py): every plot's <img> is reachable through the report's UI, decoded, rendered and not blank.

The browser test runs wherever Chromium is installed; where it is not, it is skipped, except in CI (CI=true, which
.ci/run sets and where it installs Chromium), where a missing Chromium fails it.
"""

import base64
import importlib.util
import io
import json
import os
import subprocess
import sys

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SNAKEMAKE
from PIL import Image

from esl.io.h5 import write_names
from esl.io.layouts import Sample, write_index
from esl.io.tables import write_csv
from esl.ops.histograms import FirstPass, entropy_bins
from esl.ops.quality import Quality, threshold_table
from esl.stages import plot_maps, plots
from esl.stages.evaluate import iou_table

_spec = importlib.util.spec_from_file_location("check_report", REPO / "scripts/check_report.py")
check_report = sys.modules["check_report"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_report)

# Every figure of the tiny run (TINY: pseudo-labels esl, mpsl; one round, so one entropy file: pretrain's).
TINY_PLOTS = [
    "class_iou.png",
    "entropy_pretrain.png",
    "examples.png",
    "miou.png",
    "pseudo_label_quality.png",
    "snapshots.png",
    "thresholds.png",
    "training.png",
]


def png(path):
    """(width, height, provenance or None) of a PNG file."""
    with Image.open(path) as image:
        image.load()
        prov = image.text.get("provenance")
        return image.size[0], image.size[1], None if prov is None else json.loads(prov)


# ---- the entropy histograms: exact from pass 1 -----------------------------------------------------------------


def entropy_values(seed=0, shape=(3, 40, 50), num_classes=5):
    """float32 values in [0, 1] (many near 0, where float32 is dense), the bin edges and their neighbours; labels."""
    rng = np.random.default_rng(seed)
    values = (rng.random(shape, dtype=np.float32) ** 3).astype(np.float32)
    edges = np.arange(0, 129, dtype=np.float32) / np.float32(128)
    special = np.concatenate([edges, np.nextafter(edges, np.float32(0)), [np.float32(1e-30), np.float32(1.0)]])
    values.flat[: special.size] = special
    labels = rng.integers(0, num_classes - 1, size=shape).astype(np.uint8)  # the last class never predicted
    return values, labels


@pytest.mark.parametrize("bins", [1, 2, 64, 128])
def test_entropy_bins_equal_numpy_histograms_of_the_values(bins):
    values, labels = entropy_values()
    first = FirstPass(5, keys=("entropy",))
    first.add(labels, entropy=values)
    got = entropy_bins(first.rank("entropy").hist_hi, bins)
    assert got.dtype == np.int64 and got.shape == (5, bins)
    for c in range(5):
        want, _ = np.histogram(values[labels == c], bins=bins, range=(0.0, 1.0))
        np.testing.assert_array_equal(got[c], want, err_msg=f"class {c}")
    assert got[4].sum() == 0


def test_entropy_bins_refuse_other_bins_and_values_outside_0_1():
    first = FirstPass(2, keys=("entropy",))
    first.add(np.array([0, 1]), entropy=np.array([0.5, 2.0], dtype=np.float32))
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        entropy_bins(first.rank("entropy").hist_hi)
    with pytest.raises(ValueError, match="power of two <= 128"):
        entropy_bins(np.zeros((2, 65536), np.int64), 100)
    with pytest.raises(ValueError, match=r"must be \(C, 65536\)"):
        entropy_bins(np.zeros((2, 10), np.int64))


def write_entropy_file(path, values, labels, with_pass1=True):
    num_classes = 5
    with h5py.File(path, "w") as f:
        f.attrs["num_classes"] = num_classes
        f.create_dataset("label", data=labels)
        f.create_dataset("entropy", data=values)
        f.create_dataset("max_prob", data=1 - values)
        write_names(f, [f"img{i}" for i in range(len(labels))])
        if with_pass1:
            first = FirstPass(num_classes)
            first.add(labels, entropy=values, max_prob=1 - values)
            first.write(f)


def test_plot_entropy_reads_the_stored_pass_or_counts_it(tmp_path):
    values, labels = entropy_values(seed=1)
    write_entropy_file(tmp_path / "stored.h5", values, labels)
    write_entropy_file(tmp_path / "bare.h5", values, labels, with_pass1=False)
    stored = plot_maps.read_pass1_entropy(tmp_path / "stored.h5", 5)
    np.testing.assert_array_equal(plot_maps.read_pass1_entropy(tmp_path / "bare.h5", 5), stored)
    assert stored.shape == (5, 65536) and stored.sum() == values.size

    thresholds = {}
    for name, t in (("esl_r1", [0.2, 0.3, 0.1, 0.5, 0.0]), ("mpsl_r1", [0.9] * 5), ("nolabels_r1", [np.nan] * 5)):
        path = tmp_path / f"{name}_thresholds.csv"
        write_csv(threshold_table(np.array(t, np.float32), np.ones(5, int), np.ones(5, int)), path, {})
        thresholds[name] = str(path)
    params = plot_maps.EntropyPlotParams.from_rule({"model": "pretrain", "num_classes": 5, "sets": list(thresholds)})
    out = tmp_path / "plots/entropy_pretrain.png"
    inputs = {"entropy": str(tmp_path / "stored.h5"), "thresholds": list(thresholds.values())}
    log = io.StringIO()
    plot_maps.run_plot_entropy(params, inputs, {"histograms": str(out)}, log=log)
    width, height, prov = png(out)
    assert width > 800 and height > 200 and out.stat().st_size > 10_000  # one row of five classes
    assert prov["config"] == params.as_dict() and str(tmp_path / "stored.h5") in prov["inputs"]
    assert "thresholds of ['esl_r1']" in log.getvalue()  # only the entropy-ranked set is drawn
    with pytest.raises(ValueError, match="2 thresholds files for 3 sets"):
        plot_maps.run_plot_entropy(params, {**inputs, "thresholds": inputs["thresholds"][:2]}, {"histograms": out})


# ---- the figures of the tables ---------------------------------------------------------------------------------


def metrics_table(iters, terms, seed):
    rng = np.random.default_rng(seed)
    it = np.arange(1, iters + 1)
    table = {"iteration": it, "lr": 0.01 * (1 - it / (iters + 1)) ** 0.9}
    for k, term in enumerate(terms):
        table[f"loss_{term}"] = np.exp(-it / iters) * (2 + k) + rng.random(iters) * 0.1
    table["images_per_s"] = 20 + rng.random(iters)
    return pd.DataFrame(table)


def test_plot_training_draws_each_models_curves(tmp_path):
    tables = {
        "pretrain": metrics_table(300, ["src", "adapt", "d_main"], 0),
        "esl_r1": metrics_table(250, ["src", "tgt"], 1),
        "mpsl_r1": metrics_table(250, ["src", "tgt"], 2).assign(loss_adapt=np.nan),  # an absent term: NaN
    }
    paths = []
    for model, table in tables.items():
        paths.append(tmp_path / f"{model}_metrics.csv")
        write_csv(table, paths[-1], {"config": {}})
    params = plots.TrainingPlotParams.from_rule({"models": list(tables)})
    out = tmp_path / "training.png"
    plots.run_plot_training(params, {"metrics": paths}, {"training": out}, log=io.StringIO())
    width, height, prov = png(out)
    assert width >= 1200 and height >= 3 * 200 and prov["config"] == {"models": list(tables)}

    # a given pretrain.checkpoint: a header-only metrics.csv (with its provenance line) gets a note, not a failure
    given = tmp_path / "given_metrics.csv"
    write_csv(pd.DataFrame(columns=["iteration", "lr", "loss_src", "images_per_s"]), given, {"config": {}})
    assert given.read_text().startswith("# provenance: ")
    params = plots.TrainingPlotParams.from_rule({"models": ["pretrain", "esl_r1"]})
    log = io.StringIO()
    plots.run_plot_training(params, {"metrics": [given, paths[1]]}, {"training": out}, log=log)
    assert "pretrain: 0 rows, esl_r1: 250 rows" in log.getvalue()
    with pytest.raises(ValueError, match="1 metrics files for 2 names"):
        plots.run_plot_training(params, {"metrics": [given]}, {"training": out})
    with pytest.raises(ValueError, match="params models must be a non-empty list"):
        plots.TrainingPlotParams.from_rule({"models": []})


def random_confusion(c, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 50, (c, c)) + np.diag(rng.integers(100, 400, c))


@pytest.mark.parametrize("num_classes", [19, 16])
def test_plot_iou_and_the_pseudo_label_figures(tmp_path, num_classes):
    evals = []
    models = ["pretrain", "esl_r1", "mpsl_r1", "ens"]
    for i, model in enumerate(models):
        evals.append(tmp_path / f"{model}.csv")
        write_csv(iou_table(random_confusion(num_classes, i)), evals[-1], {})
    outputs = {"miou": tmp_path / "miou.png", "classes": tmp_path / "class_iou.png"}
    plots.run_plot_iou(plots.IouPlotParams.from_rule({"models": models}), {"evals": evals}, outputs, log=io.StringIO())
    for out in outputs.values():
        width, height, prov = png(out)
        assert width > 400 and height > 300 and set(map(str, evals)) <= set(prov["inputs"])

    rng = np.random.default_rng(0)
    sets, inputs = ["esl_r1", "mpsl_r1", "nolabels_r1", "esl_r2"], {"thresholds": [], "quality": []}
    for s in sets:
        quality = Quality(num_classes)
        gt = rng.integers(0, num_classes, (8, 16)).astype(np.uint8)
        pseudo = np.where(rng.random((8, 16)) < 0.5, gt, 255).astype(np.uint8)
        quality.add(np.full_like(pseudo, 255) if s.startswith("nolabels") else pseudo, gt)
        t = np.full(num_classes, np.nan, np.float32) if s.startswith("nolabels") else rng.random(num_classes)
        inputs["thresholds"].append(tmp_path / f"{s}_thresholds.csv")
        write_csv(
            threshold_table(t, np.ones(num_classes, int), np.ones(num_classes, int)), inputs["thresholds"][-1], {}
        )
        inputs["quality"].append(tmp_path / f"{s}_quality.csv")
        write_csv(quality.table(), inputs["quality"][-1], {})
    outputs = {"thresholds": tmp_path / "thresholds.png", "quality": tmp_path / "quality.png"}
    params = plots.PseudoLabelPlotParams.from_rule({"sets": sets})
    plots.run_plot_pseudo_labels(params, inputs, outputs, log=io.StringIO())
    assert png(outputs["thresholds"])[1] > 3 * 200  # one panel per method: esl (two rounds), mpsl, nolabels
    assert png(outputs["quality"])[1] > 400


def test_plot_examples_puts_prediction_pseudo_labels_and_ground_truth_side_by_side(tmp_path):
    h, w, n = 16, 32, 3
    rng = np.random.default_rng(0)
    samples = []
    gts = []
    for i in range(n):
        image, label = tmp_path / f"img{i}.png", tmp_path / f"lab{i}.png"
        cv2.imwrite(str(image), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        gts.append(rng.integers(0, 5, (h, w)).astype(np.uint8))
        cv2.imwrite(str(label), gts[-1])
        samples.append(Sample(f"img{i}", str(image), str(label) if i != 1 else None))  # img1: no ground truth
    write_index(samples, tmp_path / "index.csv", {})
    values, labels = entropy_values(seed=2, shape=(n, h, w))
    write_entropy_file(tmp_path / "entropy.h5", values, labels)
    pseudo = np.where(values < 0.2, labels, 255).astype(np.uint8)
    with h5py.File(tmp_path / "esl_r1.h5", "w") as f:  # another image order: looked up by name
        f.create_dataset("label", data=pseudo[::-1])
        write_names(f, [f"img{i}" for i in reversed(range(n))])

    rows, columns = plot_maps.example_panels(
        tmp_path / "entropy.h5", {"esl_r1": tmp_path / "esl_r1.h5"}, tmp_path / "index.csv", "trainids", 5, 2
    )
    assert columns == ["image", "prediction", "esl_r1 pseudo-labels", "ground truth"]
    assert [r["name"] for r in rows] == ["img0", "img1"]
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(row["pictures"]["prediction"], labels[i])
        np.testing.assert_array_equal(row["pictures"]["esl_r1 pseudo-labels"], pseudo[i])
        assert row["pictures"]["image"].shape == (h, w, 3)
    np.testing.assert_array_equal(rows[0]["pictures"]["ground truth"], gts[0])
    assert "ground truth" not in rows[1]["pictures"]

    params = plot_maps.ExamplesPlotParams.from_rule(
        {"sets": ["esl_r1"], "images": 2, "layout": "trainids", "num_classes": 5}
    )
    inputs = {"entropy": tmp_path / "entropy.h5", "pseudo": [tmp_path / "esl_r1.h5"], "index": tmp_path / "index.csv"}
    out = tmp_path / "examples.png"
    plot_maps.run_plot_examples(params, inputs, {"examples": out}, log=io.StringIO())
    width, height, _ = png(out)
    assert width == 4 * 260 and height > 2 * 130
    with pytest.raises(ValueError, match="plot_examples images=0 must be an integer >= 1"):
        plot_maps.ExamplesPlotParams.from_rule({**params.as_dict(), "images": 0})


# The Cityscapes colours of road, building, pole, vegetation, sky, person, car (cityscapesScripts' `labels.py`): the
# 7 Mapillary classes flat, construction, object, nature, sky, human, vehicle are drawn in them.
CITYSCAPES_RGB_OF_7 = [(128, 64, 128), (70, 70, 70), (153, 153, 153), (107, 142, 35), (70, 130, 180), (220, 20, 60)]
CITYSCAPES_RGB_OF_7.append((0, 0, 142))


def test_a_7_class_label_map_is_drawn_in_the_cityscapes_colours_of_its_classes(tmp_path, monkeypatch):
    label = np.array([[0, 1, 2, 3], [4, 5, 6, 255]], dtype=np.uint8)
    want = np.array([CITYSCAPES_RGB_OF_7[:4], CITYSCAPES_RGB_OF_7[4:] + [(0, 0, 0)]], dtype=np.uint8)
    np.testing.assert_array_equal(plot_maps._colour(label, 7), want)

    figures = []
    monkeypatch.setattr(plot_maps, "save_figure", lambda fig, path, prov=None: figures.append(fig))
    rows = [{"name": "img0", "pictures": {"prediction": label}}]
    plot_maps.plot_examples(rows, ["prediction"], tmp_path / "examples.png", 7)
    handles = figures[0].legends[0].legend_handles
    assert [h.get_label() for h in handles] == [*plot_maps.label_space(7).names, "ignored (255)"]
    got = [tuple(round(255 * x) for x in h.get_facecolor()[:3]) for h in handles]
    assert got == [*CITYSCAPES_RGB_OF_7, (0, 0, 0)]


# ---- the workflow's plots and the report in a browser ----------------------------------------------------------


def test_the_tiny_run_makes_every_plot_with_its_log(tiny_run):
    plots_dir = tiny_run / "results/tiny/plots"
    assert sorted(p.name for p in plots_dir.glob("*.png")) == TINY_PLOTS
    for name in TINY_PLOTS:
        width, height, prov = png(plots_dir / name)
        assert width > 300 and height > 200 and prov["config"] and prov["inputs"], name
    for log in ("plot_training", "plot_iou", "plot_pseudo_labels", "plot_entropy_pretrain", "plot_examples"):
        assert (tiny_run / f"results/tiny/logs/{log}.log").read_text().startswith("wrote "), log


def require_chromium() -> str:
    """The Chromium binary; without one the test is skipped, or fails in CI (CI=true: .ci/run installs it)."""
    binary = check_report.find_chromium()
    if binary is None:
        why = "no Chromium (chromium, chromium-browser, google-chrome or $CHROMIUM); apt-get install -y chromium"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{why}: CI=true, so the browser check of the report must run", pytrace=False)
        pytest.skip(why)
    return binary


def test_without_chromium_the_browser_check_fails_in_ci_and_skips_elsewhere(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_chromium()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_chromium()


@pytest.fixture(scope="module")
def tiny_report(tiny_run, tmp_path_factory):
    report = tmp_path_factory.mktemp("report") / "report.html"
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "--report", str(report)],
        cwd=tiny_run,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return report


def run_check(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts/check_report.py"), *map(str, args)], capture_output=True, text=True
    )


def test_the_report_shows_every_plot_in_chromium(tiny_run, tiny_report):
    require_chromium()
    proc = run_check(tiny_report, "--plots", tiny_run / "results/tiny/plots")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert f"OK: {len(TINY_PLOTS)} expected plots shown" in proc.stdout
    for name in TINY_PLOTS:
        assert f"shown results/tiny/plots/{name}: " in proc.stdout, name


def test_the_browser_check_fails_on_a_missing_or_blank_plot(tiny_report, tmp_path):
    require_chromium()
    proc = run_check(tiny_report, "--expect", "plots/nothing.png")
    assert proc.returncode == 1 and "FAIL plots/nothing.png: not shown by the report" in proc.stdout
    # the same report with the mIoU figure's picture replaced by a blank (white) PNG of the same size
    page = tiny_report.read_text()
    embedded = page.split('<script id="results">', 1)[1].split("var results = ", 1)[1]
    results = json.loads(embedded.split(";\n", 1)[0])
    (key,) = [k for k in results if k.endswith("plots/miou.png")]
    buffer = io.BytesIO()
    Image.new("RGB", (640, 360), "white").save(buffer, format="PNG")
    blank = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    assert page.count(results[key]["data_uri"]) == 1
    (tmp_path / "report.html").write_text(page.replace(results[key]["data_uri"], blank))
    proc = run_check(tmp_path / "report.html", "--expect", "plots/miou.png", "--expect", "plots/examples.png")
    assert proc.returncode == 1, proc.stdout
    assert "FAIL plots/miou.png: blank: 0 of its pixels" in proc.stdout and "FAIL plots/examples.png" not in proc.stdout


def test_the_screenshot_shows_the_report_with_a_plot_open(tiny_report, tmp_path):
    require_chromium()
    out = tmp_path / "shot.png"
    proc = run_check(tiny_report, "--screenshot", out, "--show", "plots/examples.png", "--size", "1000x700")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert png(out)[:2] == (1000, 700) and out.stat().st_size < 300_000
