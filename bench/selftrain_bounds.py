"""What bounds self-training on a dataset with target-train labels (the toy): the workflow's round-k model next to
controls and upper bounds trained the same way (same config, init, schedule, code path), only with other target labels.

Usage, after a workflow run (`bash scripts/demo.sh` or `snakemake --cores 2`):

    .venv/bin/python bench/selftrain_bounds.py [--config config/config.yaml] [--method esl] [--round 1]

Each variant replaces the target pseudo-labels of `pseudo_labels/{method}_r{k}.h5` and runs the `selftrain` stage's
training (`esl.train_cli.run`) in a temporary folder, then evaluates on target val like the `evaluate` rule:

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
from esl import datasets  # noqa: E402
from esl.data import SegmentationSet  # noqa: E402
from esl.device import resolve_device  # noqa: E402
from esl.evaluate import evaluate_model  # noqa: E402
from esl.h5io import read_csv, read_names, write_names  # noqa: E402
from esl.metrics import iou_from_confusion, mean_iou  # noqa: E402
from esl.model import load_checkpoint, save_checkpoint  # noqa: E402
from esl.train import TrainConfig, train  # noqa: E402
from esl.train_cli import run  # noqa: E402


def train_source_only(spec: dict, log) -> int:
    """The self-training schedule without a target domain (what `train_cli.run` does, minus the target)."""
    p, inputs = spec["params"], spec["input"]
    src = p["source"]
    if inputs["init"] is None:
        raise SystemExit("the source-only variant needs selftrain.init: pretrained")
    model, payload = load_checkpoint(inputs["init"], num_classes=src["num_classes"])
    source = SegmentationSet(
        datasets.read_index(inputs["source"]), src["layout"], src["size"], src["mean_bgr"], src["num_classes"]
    )
    train(model, source, None, TrainConfig.from_params(p["train"]), resolve_device(), log=log)
    save_checkpoint(spec["output"], model.cpu(), payload["model"])
    return 0


VARIANTS = ("source", "none", "check", "right_only", "gt_kept", "gt")


def input_params(config: dict, domain: str) -> dict:
    """The `source`/`target` params the workflow's rules pass (workflow/rules/common.smk: input_params)."""
    data = config["data"]
    return {
        "layout": data[domain]["layout"],
        "size": list(data[domain]["size"]),
        "mean_bgr": list(data["mean_bgr"]),
        "num_classes": data["num_classes"],
    }


def target_truth(samples, layout: str, shape, num_classes: int) -> np.ndarray:
    """(N, H, W) uint8 true labels of target train at the pseudo-labels' resolution."""
    if any(s.label is None for s in samples):
        raise SystemExit("target train has no labels: the bounds need them (the toy has them)")
    return np.stack([datasets.read_label(layout, s.label, shape, num_classes) for s in samples])


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
    src, tgt = input_params(config, "source"), input_params(config, "target")
    st = dict(config["selftrain"])
    train_samples = datasets.read_index(results / "index/target_train.csv")
    val = datasets.read_index(results / "index/target_val.csv")
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
            spec = {
                "stage": "selftrain",
                "params": {"model": dict(config["model"]), "train": st, "source": src, "target": tgt},
                "input": {
                    "source": str(results / "index/source_train.csv"),
                    "target": str(results / "index/target_train.csv"),
                    "pseudo_labels": str(h5),
                    "init": str(results / "pretrain/model.pt") if st.get("init") == "pretrained" else None,
                },
                "output": str(Path(tmp) / f"{key}.pt"),
                "resume": str(Path(tmp) / f"resume_{key}/state.pt"),
                "threads": args.threads,
                "device": "auto",
            }
            with open(Path(tmp) / f"{key}.log", "w") as log:
                if (train_source_only if label is None else run)(spec, log=log) != 0:
                    raise SystemExit(f"training the {name!r} variant failed; see its log")
            rows.append((name, miou_of(spec["output"], val, tgt, int(config["evaluate"]["batch_size"]))))
            print(f"{name}: {rows[-1][1]:.2f} mIoU ({time.perf_counter() - start:.0f} s)", flush=True)

    what = f"{st.get('iters')} iterations, init {st.get('init')}"
    print(f"\ntarget-val mIoU, {results}, self-training as configured ({what}):")
    for name, miou in rows:
        gain = "" if name.startswith("pretrain") else f"  {miou - pretrain:+.2f}"
        print(f"  {name:28s} {miou:6.2f}{gain}")


if __name__ == "__main__":
    main()
