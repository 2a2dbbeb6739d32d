"""What bounds self-training on a dataset with target-train labels (the toy): the workflow's round-k model next to
controls and upper bounds trained the same way (same config, init, schedule, code path), only with other target labels.

Usage, after a workflow run (`bash scripts/demo.sh` or `snakemake --cores 2`):

    .venv/bin/python experiments/selftrain_bounds.py [--config config/config.yaml] [--method esl] [--round 1]

Each variant replaces the target pseudo-labels of `pseudo_labels/{method}_r{k}.h5` and runs the `selftrain` stage's
training (`esl.stages.train.run`) in a temporary folder, then evaluates on target val like the `evaluate` rule:

* `source only`           no target images at all: the extra iterations on the source alone.
* `no target labels`      every target pixel 255: continued training on the source, target images still seen (their
                          BatchNorm statistics), no target supervision. What the extra iterations alone give.
* `{method} (retrained)`  the workflow's pseudo-labels as they are (`--check`): must equal the workflow's own model.
* `{method}, errors → 255` the kept pseudo-labels that are right, the wrong ones dropped: ideal precision, same pixels.
* `GT on kept pixels`     the true labels of the pixels the method kept: its selection, right labels everywhere there.
* `GT everywhere`         every target-train pixel with its true label: supervised on the target, the ceiling.

Takes one self-training run per variant (about 100 s each for the toy default on 2 cores).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from esl.io.h5 import read_names, write_names
from esl.io.images import read_label
from esl.io.layouts import read_index
from esl.io.tables import read_csv
from esl.io.torchdata import SegmentationSet
from esl.models.checkpoints import load_checkpoint, save_checkpoint
from esl.ops.metrics import iou_from_confusion, mean_iou
from esl.runtime.device import resolve_device
from esl.stages.evaluate import evaluate_model
from esl.stages.train import run
from esl.stages.train_job import TrainJob
from esl.stages.train_loop import train


def train_source_only(job: TrainJob, log) -> int:
    """The self-training schedule without a target domain (what `esl.stages.train.run` does, minus the target)."""
    src = job.source
    if job.inputs.init is None:
        raise SystemExit("the source-only variant needs selftrain.init: pretrained")
    model, payload = load_checkpoint(job.inputs.init, num_classes=src["num_classes"])
    source = SegmentationSet(
        read_index(job.inputs.source), src["layout"], src["size"], src["mean_bgr"], src["num_classes"]
    )
    train(model, source, None, job.config, resolve_device(), log=log)
    save_checkpoint(job.output, model.cpu(), payload["model"])
    return 0


def workflow_job(results: Path, tag: str, pseudo_labels: Path, output: Path, threads: int) -> TrainJob:
    """The workflow's own self-training job of `tag` (its params as its model.pt records them), with other
    pseudo-labels and another output."""
    made = load_checkpoint(results / f"selftrain/{tag}/model.pt")[1]["provenance"]
    params = made["config"]
    init = next((path for path in made["inputs"] if path.endswith(".pt")), None)  # selftrain.init: pretrained
    inputs = {
        "source": str(results / "index/source_train.csv"),
        "target": str(results / "index/target_train.csv"),
        "pseudo_labels": str(pseudo_labels),
        "init": init,
    }
    return TrainJob.from_rule("selftrain", params, inputs, str(output), provenance={}, threads=threads)


VARIANTS = ("source", "none", "check", "right_only", "gt_kept", "gt")


def target_truth(samples, layout: str, shape, num_classes: int) -> np.ndarray:
    """(N, H, W) uint8 true labels of target train at the pseudo-labels' resolution."""
    if any(s.label is None for s in samples):
        raise SystemExit("target train has no labels: the bounds need them (the toy has them)")
    return np.stack([read_label(layout, s.label, shape, num_classes) for s in samples])


def write_labels(path: Path, label: np.ndarray, names) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("label", data=label, chunks=(1, *label.shape[1:]))
        write_names(f, names)


def miou_of(model_path, val, tgt: dict, batch_size: int) -> float:
    model, _ = load_checkpoint(model_path, num_classes=tgt["num_classes"])
    conf = evaluate_model(
        model,
        val,
        layout=tgt["layout"],
        size=tgt["size"],
        mean_bgr=tgt["mean_bgr"],
        num_classes=tgt["num_classes"],
        batch_size=batch_size,
        device=resolve_device(),
        log=io.StringIO(),  # the progress lines are not wanted here
    )
    return mean_iou(iou_from_confusion(conf))


def workflow_miou(path: Path) -> float:
    table = read_csv(path)
    return float(table.loc[table["class_name"] == "mIoU", "iou"].iloc[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "config/config.yaml")
    ap.add_argument("--results", type=Path, default=None, help="default: results/{experiment} of the config")
    ap.add_argument("--method", default="esl")
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument(
        "--variants", nargs="+", default=["source", "none", "right_only", "gt_kept", "gt"], choices=VARIANTS
    )
    ap.add_argument("--check", action="store_true", help="also retrain with the workflow's own pseudo-labels")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    config = yaml.safe_load(args.config.read_text())
    results = args.results or Path("results") / config["experiment"]
    tag = f"{args.method}_r{args.round}"
    pl_path = results / f"pseudo_labels/{tag}.h5"
    for need in (pl_path, results / "pretrain/model.pt", results / "eval/pretrain.csv", results / f"eval/{tag}.csv"):
        if not need.exists():
            raise SystemExit(f"{need}: missing; run the workflow first (snakemake --cores 2)")
    made = load_checkpoint(results / f"selftrain/{tag}/model.pt")[1]["provenance"]["config"]
    tgt, st = made["target"], made["train"]
    train_samples = read_index(results / "index/target_train.csv")
    val = read_index(results / "index/target_val.csv")
    with h5py.File(pl_path, "r") as f:
        pl, names = f["label"][:], read_names(f)
    if names != [s.name for s in train_samples]:
        raise SystemExit(f"{pl_path}: its names are not target train's, in order")
    gt = target_truth(train_samples, tgt["layout"], pl.shape[1:], tgt["num_classes"])
    kept = pl != 255
    labelled = gt != 255
    print(
        f"{tag}: keeps {kept[labelled].mean():.3f} of the labelled target-train pixels, "
        f"right on {(pl[kept & labelled] == gt[kept & labelled]).mean():.3f} of those",
        flush=True,
    )
    labels = {
        "source": ("source only", None),
        "none": ("no target labels", np.full_like(pl, 255)),
        "check": (f"{args.method} (retrained)", pl),
        "right_only": (f"{args.method}, errors -> 255", np.where(kept & (pl == gt), pl, 255).astype(np.uint8)),
        "gt_kept": ("GT on kept pixels", np.where(kept, gt, 255).astype(np.uint8)),
        "gt": ("GT everywhere", gt),
    }
    wanted = list(args.variants) + (["check"] if args.check and "check" not in args.variants else [])

    pretrain = workflow_miou(results / "eval/pretrain.csv")
    rows = [("pretrain (workflow)", pretrain), (f"{tag} (workflow)", workflow_miou(results / f"eval/{tag}.csv"))]
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="esl-bounds-") as tmp:
        for key in wanted:
            name, label = labels[key]
            start = time.perf_counter()
            h5 = Path(tmp) / f"{key}.h5"
            if label is not None:
                write_labels(h5, label, names)
            job = workflow_job(results, tag, h5, Path(tmp) / f"selftrain/{key}/model.pt", args.threads)
            with open(Path(tmp) / f"{key}.log", "w") as log:
                if (train_source_only if label is None else run)(job, log=log) != 0:
                    raise SystemExit(f"training the {name!r} variant failed; see its log")
            rows.append((name, miou_of(job.output, val, tgt, int(config["evaluate"]["batch_size"]))))
            print(f"{name}: {rows[-1][1]:.2f} mIoU ({time.perf_counter() - start:.0f} s)", flush=True)

    what = f"{st.get('iters')} iterations, init {st.get('init')}"
    print(f"\ntarget-val mIoU, {results}, self-training as configured ({what}):")
    for name, miou in rows:
        gain = "" if name.startswith("pretrain") else f"  {miou - pretrain:+.2f}"
        print(f"  {name:28s} {miou:6.2f}{gain}")


if __name__ == "__main__":
    main()
