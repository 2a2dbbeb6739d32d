"""The two paper configs: the whole DAG dry-runs against miniature dataset roots, a tiny real run completes end to end
on each config's data layout (GTA5 -> Cityscapes from a raw ADVENT-named checkpoint; SYNTHIA -> Cityscapes training
AdvEnt), and bad dataset roots fail in the index rule with one clear line."""

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from esl.io.tables import read_csv

sys.path.insert(0, str(Path(__file__).parent))
from test_pretrained import advent_state_dict  # noqa: E402
from test_targets import make_acdc  # noqa: E402
from test_workflow import dry_run, planned_jobs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml"]
H, W = 40, 80
NAMES_16 = "road sidewalk building wall fence pole light sign vegetation sky person rider car bus motorcycle bicycle"


def png(path: Path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def picture(seed):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def ids(values, seed, dtype=np.uint8):
    return np.random.default_rng(seed + 100).choice(np.asarray(values), (H, W)).astype(dtype)


CITYSCAPES_IDS = list(range(34))  # labelIds, of which 19 map to trainIds


def make_gta5(root: Path, n=3):
    for i in range(n):
        png(root / "images" / f"{i:05d}.png", picture(i))
        png(root / "labels" / f"{i:05d}.png", ids(CITYSCAPES_IDS, i))


def make_synthia(root: Path, n=3):
    for i in range(n):
        label = np.zeros((H, W, 3), np.uint16)
        label[:, :, 2] = ids(range(23), i, np.uint16)  # class id in R (index 2 in OpenCV's BGR order)
        label[:, :, 1] = np.random.default_rng(i).integers(0, 60000, (H, W))  # instance ids, ignored
        png(root / "RGB" / f"{i:07d}.png", picture(i))
        png(root / "GT" / "LABELS" / f"{i:07d}.png", label)


def make_cityscapes(root: Path, bad_val_id=None, drop_train_label=False):
    layout = {"train": [("aachen", 3), ("bochum", 2)], "val": [("frankfurt", 2), ("lindau", 1)]}
    for split, cities in layout.items():
        k = 0
        for city, n in cities:
            for j in range(n):
                stem = f"{city}_{j:06d}_000019"
                png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", picture(50 + k))
                label = ids(CITYSCAPES_IDS, 50 + k)
                if split == "val" and bad_val_id is not None and k == 1:
                    label[3, 4] = bad_val_id
                if not (split == "train" and drop_train_label and k == 2):
                    png(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label)
                k += 1


def paper_config(name: str, workdir: Path, tiny: bool) -> dict:
    """The paper config with the dataset roots (and the pretrained-model paths) pointing into `workdir`; `tiny` also
    shrinks the network, the images and the iteration counts so that it runs in seconds."""
    cfg = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
    source = cfg["data"]["source"]
    source["root"] = str(workdir / ("GTA5" if source["layout"] == "gta5" else "SYNTHIA"))
    cfg["data"]["target"]["root"] = str(
        workdir / {"cityscapes": "Cityscapes", "acdc": "ACDC"}[cfg["data"]["target"]["layout"]]
    )
    if cfg["pretrain"]["checkpoint"]:
        cfg["pretrain"]["checkpoint"] = str(workdir / "advent.pth")
    if tiny:
        cfg["model"] = {"layers": [1, 1, 1, 1], "width": 4, "init": None}
        cfg["data"]["source"]["size"] = [32, 64]
        cfg["data"]["target"]["size"] = [32, 64]
        for stage in ("pretrain", "selftrain"):
            cfg[stage].update(iters=2, poly_iters=None, num_workers=0, snapshot_every=1)
        cfg["infer"]["batch_size"] = cfg["evaluate"]["batch_size"] = 4
        cfg["entropy"]["pictures"] = 1
        cfg["pseudo_labels"]["methods"] = ["esl"]  # the dry run covers both methods; one keeps the real run short
    return cfg


def prepare(name: str, workdir: Path, tiny: bool) -> dict:
    cfg = paper_config(name, workdir, tiny)
    if cfg["data"]["source"]["layout"] == "gta5":
        make_gta5(Path(cfg["data"]["source"]["root"]))
    else:
        make_synthia(Path(cfg["data"]["source"]["root"]))
    if cfg["data"]["target"]["layout"] == "acdc":
        make_acdc(Path(cfg["data"]["target"]["root"]))
    else:
        make_cityscapes(Path(cfg["data"]["target"]["root"]))
    if cfg["pretrain"]["checkpoint"]:  # ADVENT's names, saved from DataParallel, as released models may be
        sd = advent_state_dict(cfg["data"]["num_classes"], [1, 1, 1, 1], 4, seed=7)
        torch.save({f"module.{k}": v for k, v in sd.items()}, cfg["pretrain"]["checkpoint"])
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    return cfg


EXPECTED_DAG = [
    "entropy:model=pretrain",
    "evaluate:model=esl_r1",
    "evaluate:model=mpsl_r1",
    "evaluate:model=pretrain",
    "index:split=source_train",
    "index:split=target_train",
    "index:split=target_val",
    "infer:model=pretrain",
    "plot_entropy:model=pretrain",
    "plot_examples",
    "plot_iou",
    "plot_pseudo_labels",
    "plot_training",
    "pretrain",
    "pseudo_labels:method=esl,k=1",
    "pseudo_labels:method=mpsl,k=1",
    "selftrain:method=esl,k=1",
    "selftrain:method=mpsl,k=1",
    "summary",
]


# Snapshots every 2,000 iterations: the self-trained models' (and SYNTHIA's and ACDC's trained AdvEnt's) are evaluated;
# GTA5 -> Cityscapes starts from the released AdvEnt model, which has none.
SNAPSHOT_JOBS = {
    "gta5_to_cityscapes": ["evaluate_snapshots:model=esl_r1", "evaluate_snapshots:model=mpsl_r1", "plot_snapshots"],
    "synthia_to_cityscapes": [
        "evaluate_snapshots:model=esl_r1",
        "evaluate_snapshots:model=mpsl_r1",
        "evaluate_snapshots:model=pretrain",
        "plot_snapshots",
    ],
    "gta5_to_acdc": [
        "evaluate_snapshots:model=esl_r1",
        "evaluate_snapshots:model=mpsl_r1",
        "evaluate_snapshots:model=pretrain",
        "plot_snapshots",
    ],
}


@pytest.mark.parametrize("name", ["gta5_to_cityscapes", "synthia_to_cityscapes", "gta5_to_acdc"])
def test_paper_config_whole_dag_dry_runs(tmp_path, name):
    cfg = prepare(name, tmp_path, tiny=False)
    assert cfg["model"]["layers"] == [3, 4, 23, 3] and cfg["toy"] is None
    # the reference's optimiser listing, its snapshot interval, and a label-free choice beside its "best"
    for stage in ("pretrain", "selftrain"):
        assert cfg[stage]["param_groups"] == "reference" and cfg[stage]["snapshot_every"] == 2000
    assert cfg["evaluate"]["selection"] == "entropy"
    assert planned_jobs(tmp_path) == sorted(EXPECTED_DAG + SNAPSHOT_JOBS[name])
    with dry_run(tmp_path) as wf:
        (job,) = [j for j in wf.dag.jobs if j.rule.name == "selftrain" and j.wildcards.method == "esl"]
        shots = sorted(str(f) for f in job.output if "/snapshots/" in str(f))
        last = {"gta5_to_cityscapes": 118_000, "synthia_to_cityscapes": 88_000, "gta5_to_acdc": 118_000}[name]
        assert shots == [
            f"results/{name}/selftrain/esl_r1/snapshots/iter_{i:06d}.pt" for i in range(2000, last + 1, 2000)
        ]


def run(workdir: Path, *targets, keep_going=False):
    extra = ["--keep-going"] if keep_going else []
    return subprocess.run(
        # One thread per job: tiny tensors gain nothing from a second one, and two jobs can run side by side.
        [*SNAKEMAKE, "--cores", "2", "--max-threads", "1", "-q", *extra, *targets],
        cwd=workdir,
        capture_output=True,
        text=True,
    )


def test_tiny_gta5_run_from_a_raw_advent_checkpoint(tmp_path):
    cfg = prepare("gta5_to_cityscapes", tmp_path, tiny=True)
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = tmp_path / "results/gta5_to_cityscapes"
    summary = read_csv(res / "summary.csv")
    assert list(summary["model"]) == ["pretrain", "esl_r1"]
    assert "mIoU-13" not in summary.columns and "iou_terrain" in summary.columns
    # The pretrained model is the given ADVENT state dict, unchanged.
    given = torch.load(cfg["pretrain"]["checkpoint"], weights_only=True)
    ours = torch.load(res / "pretrain/model.pt", weights_only=True)["state_dict"]
    assert torch.equal(ours["layer6.conv2d_list.2.weight"], given["module.layer6.conv2d_list.2.weight"])
    assert "'d_main'" in (res / "logs/selftrain_esl_r1.log").read_text()  # AdvEnt's terms kept while self-training
    index = read_csv(res / "index/target_train.csv")
    assert len(index) == 5 and index["name"].is_monotonic_increasing


def test_tiny_synthia_run_trains_advent_and_reports_miou13(tmp_path):
    prepare("synthia_to_cityscapes", tmp_path, tiny=True)
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = tmp_path / "results/synthia_to_cityscapes"
    summary = read_csv(res / "summary.csv")
    assert list(summary.columns[:3]) == ["model", "mIoU", "mIoU-13"]
    assert [c.removeprefix("iou_") for c in summary.columns if c.startswith("iou_")] == NAMES_16.split()
    log = (res / "logs/pretrain.log").read_text()
    assert "(advent)" in log and "'d_main'" in log and "'d_aux'" in log
    thresholds = read_csv(res / "pseudo_labels/esl_r1_thresholds.csv")
    assert list(thresholds["class_name"]) == NAMES_16.split()
    shots = read_csv(res / "eval/pretrain_snapshots.csv")  # snapshot_every 1: iteration 1, then the final model
    assert list(shots["iteration"]) == [1, 2] and "mIoU-13" in shots.columns


def test_bad_dataset_roots_fail_in_the_index_rule_with_one_line(tmp_path):
    cfg = paper_config("gta5_to_cityscapes", tmp_path, tiny=True)
    cfg["pretrain"]["checkpoint"] = None
    gta = Path(cfg["data"]["source"]["root"])
    make_gta5(gta)
    (gta / "labels").rename(tmp_path / "labels_elsewhere")  # a root without its labels/ sub-folder
    make_cityscapes(Path(cfg["data"]["target"]["root"]), bad_val_id=40, drop_train_label=True)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = "results/gta5_to_cityscapes/index"
    proc = run(tmp_path, *(f"{res}/{s}.csv" for s in ("source_train", "target_train", "target_val")), keep_going=True)
    assert proc.returncode != 0
    assert (tmp_path / res).parent.joinpath("logs").is_dir(), proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = tmp_path / "results/gta5_to_cityscapes/logs"
    expected = {
        "source_train": f"{gta}/labels: label folder not found (layout gta5)",
        "target_train": "_leftImg8bit.png: no label found (expected ",
        "target_val": "_gtFine_labelIds.png: label id 40 outside the Cityscapes label ids 0..33/255",
    }
    for split, message in expected.items():
        last = (logs / f"index_{split}.log").read_text().strip().splitlines()[-1]  # the error, on one line
        assert last.startswith("esl.io.layouts.DatasetError: ") and message in last, (split, last)
    assert not list((tmp_path / res).glob("*.csv"))
