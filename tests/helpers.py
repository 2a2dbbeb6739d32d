"""Small synthetic datasets and training specs for the training/inference tests (seconds, not minutes)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch

from esl.io.h5 import write_names
from esl.io.images import read_label
from esl.io.layouts import list_samples, read_index, write_index
from esl.io.provenance import provenance
from esl.stages.train import run
from esl.stages.train_job import TrainInputs, TrainJob

NUM_CLASSES = 3
SIZE = (32, 64)
TINY_MODEL = {"layers": [1, 1, 1, 1], "width": 4, "init": None}
MEAN = [104.0, 117.0, 123.0]


def write_split(root: Path, n: int, seed: int, size=SIZE) -> Path:
    """`n` trainids images with labels (3 classes: sky band, two ground regions, some ignored pixels — a different
    number in each image) under root/train/; returns the index CSV."""
    rng = np.random.default_rng(seed)
    h, w = size
    for sub in ("images", "labels"):
        (root / "train" / sub).mkdir(parents=True, exist_ok=True)
    colours = np.array([[200, 120, 40], [60, 60, 60], [40, 160, 60]], dtype=np.float64)
    for i in range(n):
        label = np.ones((h, w), dtype=np.uint8)
        label[: int(rng.integers(h // 4, h // 2))] = 0
        label[h // 2 :, int(rng.integers(w // 4, 3 * w // 4)) :] = 2
        image = colours[label] + rng.normal(0, 20, (h, w, 3))
        y, x = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        label[y : y + int(rng.integers(1, 8)), x : x + int(rng.integers(1, 16))] = 255
        cv2.imwrite(str(root / "train/images" / f"{i:03d}.png"), np.clip(image, 0, 255).astype(np.uint8))
        cv2.imwrite(str(root / "train/labels" / f"{i:03d}.png"), label)
    samples = list_samples("trainids", root, "train")
    index = root / "index.csv"
    write_index(samples, index, provenance({}))
    return index


def write_pseudo_labels(index: Path, path: Path, seed: int) -> Path:
    """Pseudo-labels for the images of `index`: their labels with a random quarter of the pixels set to 255.

    Written in the REVERSE of the index's order, so that only a lookup by image name (`names`), not by position,
    pairs each image with its own pseudo-label."""
    rng = np.random.default_rng(seed)
    samples = read_index(index)[::-1]
    labels = np.stack([read_label("trainids", s.label, SIZE, num_classes=NUM_CLASSES) for s in samples])
    labels[rng.random(labels.shape) < 0.25] = 255
    with h5py.File(path, "w") as f:
        f.create_dataset("label", data=labels, chunks=(1, *SIZE))
        write_names(f, [s.name for s in samples])
    return path


def domain_params():
    return {"layout": "trainids", "size": list(SIZE), "mean_bgr": MEAN, "num_classes": NUM_CLASSES}


def train_spec(
    tmp: Path, stage: str = "pretrain", name: str = "run", device: str = "cpu", threads: int = 1, **train
) -> TrainJob:
    """A training job (esl.stages.train.TrainJob) on synthetic data under `tmp` (created once and shared)."""
    data = tmp / "data"
    if not (data / "source/index.csv").exists():
        write_split(data / "source", 8, seed=1)
        write_split(data / "target", 6, seed=2)
        write_pseudo_labels(data / "target/index.csv", data / "pseudo_labels.h5", seed=3)
    params = {
        "model": dict(TINY_MODEL),
        "train": {"method": "source_only", "iters": 40, "batch_size": 2, "lr": 0.01, "seed": 5, **train},
        "source": domain_params(),
        "target": domain_params() if stage == "selftrain" else None,
    }
    inputs = {"source": str(data / "source/index.csv")}
    if stage == "selftrain":
        params["train"].setdefault("init", "same_as_pretrain")
        params["train"].pop("method")
        inputs |= {"target": str(data / "target/index.csv"), "pseudo_labels": str(data / "pseudo_labels.h5")}
    return TrainJob(
        stage=stage,
        **params,
        inputs=TrainInputs(**inputs),
        output=str(tmp / name / "model.pt"),
        resume=str(tmp / name / "resume/state.pt"),
        provenance=provenance(params, inputs.values()),
        threads=threads,
        device=device,
        metrics=str(tmp / name / "metrics.csv"),
    )


def write_spec(job: TrainJob, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(job.to_json())
    return path


def cli(spec_path: Path, **kwargs) -> subprocess.Popen:
    """`python -m esl.stages.train spec_path` with stdout (the job's log) piped as text."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "esl.stages.train", str(spec_path)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kwargs)


def run_here(job: TrainJob) -> str:
    """Run a job in this process (same single thread as the subprocesses); returns its log."""
    threads = torch.get_num_threads()
    log = io.StringIO()
    try:
        assert run(job, log=log) == 0, log.getvalue()
    finally:
        torch.set_num_threads(threads)
    return log.getvalue()
