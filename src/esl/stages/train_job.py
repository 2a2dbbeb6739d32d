"""The training job of the rules `pretrain` and `selftrain`: one typed, serialisable spec, validated once.

A `TrainJob` holds what one training run needs: the rule's params (`model`, `train` = the config section, `source`,
`target`), its input files, the checkpoint to write, the resumable state's place, the provenance, the thread count.
`TrainJob.from_rule` builds it from a workflow job, and any study builds it the same way; `to_json`/`from_json`
carry it to torchrun's processes. Constructing one checks every setting that can be checked before any work, each
refusal one line naming the config key. `esl.stages.train` runs it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from esl.stages.train_loop import TrainConfig

STAGES = ("pretrain", "selftrain")
DEFAULT_SAVE_EVERY = 200
# Keys that change how a run is carried out, not what it computes: a resumable state made with other values is fine.
OPERATIONAL_KEYS = ("save_every", "num_workers", "log_interval", "compile")
# The thread count in the resumable state's params: CPU results depend on it (docs/ARCHITECTURE.md, "Thread count"),
# so a resume under another count is refused; the key's name is the remedy that the one-line refusal shows.
THREADS_KEY = "threads (to resume, run snakemake with the same --cores or --set-threads)"


@dataclass(frozen=True)
class TrainInputs:
    source: str  # index CSV of the source split
    target: str | None = None  # index CSV of target-train (self-training; MinEnt/AdvEnt pretraining)
    pseudo_labels: str | None = None  # HDF5 of the pseudo-labels (self-training)
    init: str | None = None  # model.pt to start from (`selftrain.init: pretrained`)


@dataclass(frozen=True)
class TrainJob:
    """One training run. Validated on construction: a bad setting is one line naming its config key."""

    stage: str  # "pretrain" | "selftrain": also the config section named in error messages
    model: dict  # DeepLabV2's settings (`model` section)
    train: dict  # the stage's config section
    source: dict  # the source domain's params (layout, size, mean_bgr, num_classes)
    target: dict | None  # the target domain's, when the job sees target images
    inputs: TrainInputs
    output: str  # model.pt to write
    resume: str  # the resumable state (kept while unfinished); snapshots are staged in `snapshots/` beside it
    resume_root: str | None = None  # the folder above the state's folder, removed after success when empty
    provenance: dict = field(default_factory=dict)  # stamped into `output`; its `inputs` tie the state to its inputs
    threads: int = 1  # CPU threads in all (shared by the processes)
    device: str = "auto"  # "auto" | "cuda" | "cpu" ("cpu" allows gpus > 1 as CPU processes with gloo)
    metrics: str | None = None  # metrics.csv to write: the training curve (esl.runtime.progress.MetricsLog)

    def __post_init__(self):
        if isinstance(self.inputs, dict):
            object.__setattr__(self, "inputs", TrainInputs(**self.inputs))
        # the checkpoint's provenance records the job's thread count (the process's may not be set yet)
        object.__setattr__(self, "provenance", {**self.provenance, "threads": int(self.threads)})
        self._check()

    @classmethod
    def from_rule(
        cls,
        stage: str,
        params,
        inputs,
        output: str,
        provenance: dict,
        threads: int,
        device: str = "auto",
        metrics: str | None = None,
    ) -> TrainJob:
        """The job of a workflow rule: `params` with model/train/source/target, `inputs` with source (+ target,
        pseudo_labels, init). The resumable state goes to results/{experiment}/resume/{job}/state.pt, derived from
        `output`: not an output, so a failed or preempted job keeps it; not a param, so the pretraining cache key
        stays free of the experiment name."""
        results, name = _results_and_name(Path(output), stage)
        resume_root = results / "resume"
        return cls(
            stage=stage,
            model=params["model"],
            train=params["train"],
            source=params["source"],
            target=params.get("target"),
            inputs=TrainInputs(**{k: inputs.get(k) or None for k in ("source", "target", "pseudo_labels", "init")}),
            output=str(output),
            resume=str(resume_root / name / "state.pt"),
            resume_root=str(resume_root),
            provenance=provenance,
            threads=int(threads),
            device=device,
            metrics=None if metrics is None else str(metrics),
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, default=str)

    @classmethod
    def from_json(cls, text: str) -> TrainJob:
        return cls(**json.loads(text))

    @property
    def gpus(self) -> int:
        return int(self.train.get("gpus", 1))

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_params(self.train, self.stage)

    @property
    def adapter_method(self) -> str | None:
        """MinEnt/AdvEnt of pretraining; AdvEnt's terms kept in self-training with `selftrain.adversarial`."""
        if self.stage == "pretrain":
            method = self.train.get("method", "source_only")
            return None if method in (None, "source_only") else method
        return "advent" if self.train.get("adversarial") else None

    def resume_params(self) -> dict:
        """What a resumable state must have been made with: the params (less `OPERATIONAL_KEYS`), the digests of
        the input files and the thread count (`THREADS_KEY`: on the CPU another count gives other results)."""
        train_p = {k: v for k, v in self.train.items() if k not in OPERATIONAL_KEYS}
        p = {"model": self.model, "train": train_p, "source": self.source, "target": self.target}
        inputs = self.provenance.get("inputs", {})
        state = {"stage": self.stage, "params": p, "inputs": inputs, THREADS_KEY: int(self.threads)}
        return json.loads(json.dumps(state, default=str))

    def _check(self) -> None:
        stage, t = self.stage, self.train
        if stage not in STAGES:
            raise ValueError(f"unknown training stage {stage!r} (known: {', '.join(STAGES)})")
        bn = TrainConfig.from_params(t, stage).batchnorm  # checks amp, batchnorm, param_groups
        if self.gpus < 1:
            raise ValueError(f"config {stage}.gpus={self.gpus} must be >= 1")
        if self.gpus > 1:
            self._check_distributed(bn)

    def _check_distributed(self, bn: str) -> None:
        stage, gpus = self.stage, self.gpus
        if int(self.train["batch_size"]) % gpus:
            raise ValueError(
                f"config {stage}.batch_size={self.train['batch_size']} is not divisible by {stage}.gpus={gpus}"
            )
        if self.device != "cpu":
            visible = torch.cuda.device_count()
            if visible < gpus:
                raise ValueError(f"config {stage}.gpus={gpus} but only {visible} CUDA devices are visible")
        elif bn == "sync":
            raise ValueError(
                f"config {stage}.batchnorm=sync needs CUDA devices (torch's SyncBatchNorm); not on the CPU"
            )
        if self.adapter_method == "advent":
            raise ValueError(f"config {stage}.gpus={gpus}: AdvEnt's discriminators are not distributed; use gpus: 1")


def _results_and_name(output: Path, stage: str) -> tuple[Path, str]:
    """results/{experiment} and the job's name from its model path: pretrain/model.pt, selftrain/{m}_r{k}/model.pt."""
    if stage == "selftrain":
        return output.parents[2], f"selftrain_{output.parent.name}"
    return output.parents[1], "pretrain"
