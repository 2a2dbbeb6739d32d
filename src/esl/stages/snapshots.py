"""Training snapshots and how a model is chosen among them.

ADVENT and ESL save a snapshot every 2,000 iterations, evaluate each on Cityscapes val and report the best
(`TEST.MODE: best`): a choice made with target labels. We keep the snapshots, evaluate each once (target-val mIoU and
the label-free criterion, the mean normalised entropy on target-train) and report three models side by side:

    final     the last iteration (what the workflow trains)
    best      the highest target-val mIoU (the reference's protocol; optimistic: it looks at target labels)
    selected  chosen without target labels by `evaluate.selection` (`entropy`: the lowest mean entropy)

`snapshots/iter_{i:06d}.pt` holds the model after i iterations (ADVENT's `model_{i}.pth` holds it after i + 1).
While training runs, snapshots are written beside the resumable state (not outputs: a preempted job keeps them)
and put next to `model.pt` once it is written (kept in staging until the resumable state is gone).

Rule `evaluate_snapshots` (esl.stages.evaluate) fills the candidates' table through `evaluate_candidates`; rule
`select_model` (`run_select_model`) copies the checkpoint a choice picks to chosen/{model}_{choice}.pt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from esl.io.files import atomic_path
from esl.io.provenance import file_digest, provenance, read_provenance
from esl.io.tables import read_csv, write_csv
from esl.stages.params import StageParams, the_file

CHOICES = ("final", "best", "selected")
SELECTIONS = ("entropy",)
PATTERN = "iter_{:06d}.pt"


def snapshot_iterations(iters: int, every: int) -> list[int]:
    """Iterations with a snapshot: the multiples of `every` below `iters` (the final model is `model.pt`)."""
    every = int(every or 0)
    return list(range(every, int(iters), every)) if every > 0 else []


def snapshot_name(iteration: int) -> str:
    return PATTERN.format(int(iteration))


def clear_staged(folder) -> None:
    """Remove snapshots left by an earlier attempt that is not being resumed."""
    for old in Path(folder).glob("iter_*.pt"):
        old.unlink()


def publish(staged, dest, iterations, state=None) -> None:
    """Put the staged snapshots of `iterations` into `dest` (replacing stale ones there), keeping the staged files
    until `discard_staged`: a job that dies between here and the removal of its resumable state finds them again.

    Each becomes its own file in `dest` (a hard link while the staged one lives, which `discard_staged` then removes;
    a copy across file systems), so no output shares an inode with another output."""
    staged, dest = Path(staged), Path(dest)
    missing = [snapshot_name(i) for i in iterations if not (staged / snapshot_name(i)).is_file()]
    if missing:
        hint = f"delete {state} and {staged} to train again" if state else f"delete {staged} to train again"
        raise FileNotFoundError(f"{staged}: snapshots missing after training: {', '.join(missing[:3])}; {hint}")
    dest.mkdir(parents=True, exist_ok=True)
    clear_staged(dest)
    for i in iterations:
        with atomic_path(dest / snapshot_name(i)) as tmp:
            _link_or_copy(staged / snapshot_name(i), tmp)


def discard_staged(staged) -> None:
    """Remove the staging folder once the snapshots are published and the resumable state is gone."""
    staged = Path(staged)
    clear_staged(staged)
    try:
        staged.rmdir()
    except OSError:
        pass


def _link_or_copy(source, dest) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def samples_digest(samples, fingerprint: str | None = None) -> str:
    """sha256 of the names, paths and sizes of a split's files and of the split's index fingerprint (the index CSV's
    provenance: sizes and mtimes of the dataset's files, `esl.io.layouts.fingerprint`): the snapshot rows' cache must
    not outlive a change of the data they were computed on (another split, root or file, or a file edited in place)."""
    h = hashlib.sha256(f"fingerprint\0{fingerprint}\n".encode())
    for s in samples:
        for path in (s.image, s.label):
            size = os.stat(path).st_size if path and os.path.exists(path) else -1
            h.update(f"{s.name}\0{path}\0{size}\n".encode())
    return h.hexdigest()


def evaluate_candidates(candidates, evaluate, cache_dir, params: dict, log=None) -> pd.DataFrame:
    """Rows for every (iteration, checkpoint) of `candidates`, in iteration order.

    evaluate(checkpoint) -> row dict (without `iteration`). Each row is cached in `cache_dir/iter_{i:06d}.csv`, reused
    while the checkpoint's sha256 (its provenance's inputs) and `params` (its provenance's config) are unchanged, so a
    retried or re-run job evaluates only what is new.
    """
    cache_dir = Path(cache_dir)
    rows = []
    for iteration, checkpoint in candidates:
        key = {"iteration": int(iteration), "params": params}
        cached = cache_dir / f"iter_{int(iteration):06d}.csv"
        row = _cached_row(cached, key, checkpoint)
        if row is None:
            if log is not None:
                print(f"iteration {iteration}: evaluating {checkpoint}", file=log, flush=True)
            row = {"iteration": int(iteration), **evaluate(checkpoint)}
            write_csv(pd.DataFrame([row]), cached, provenance(key, [checkpoint]))
        elif log is not None:
            print(f"iteration {iteration}: cached in {cached}", file=log, flush=True)
        rows.append(row)
    return pd.DataFrame(rows).sort_values("iteration", ignore_index=True)


def _cached_row(path: Path, key: dict, checkpoint) -> dict | None:
    """The cached row if it was made with `key` from a checkpoint with the same sha256 (recorded in its provenance's
    inputs), else None."""
    if not path.is_file():
        return None
    try:
        prov = read_provenance(path)
        made_from = prov["inputs"].get(str(checkpoint), {}).get("sha256")
        if prov.get("config") != _json_roundtrip(key) or made_from != file_digest(checkpoint).get("sha256"):
            return None
        table = read_csv(path)
    except (OSError, ValueError, KeyError):
        return None  # unreadable: evaluate again
    if len(table) != 1:
        return None
    return dict(table.iloc[0].to_dict(), iteration=int(table["iteration"].iloc[0]))


def _json_roundtrip(value):  # what the provenance line reads back as
    return json.loads(json.dumps(value, default=str))


def choose(table: pd.DataFrame, choice: str, selection: str = "entropy") -> int:
    """The iteration `choice` picks from a snapshots table (rows of `candidate_row`, the final model last).

    best: the highest mIoU, the earliest on ties (as ADVENT's `eval_best` keeps the first maximum);
    selected: by `selection` — `entropy`, the lowest mean target-train entropy, the earliest on ties."""
    if choice not in CHOICES:
        raise ValueError(f"unknown model choice {choice!r} (known: {', '.join(CHOICES)})")
    check_selection(selection)
    table = table.sort_values("iteration", ignore_index=True)
    if choice == "final":
        return int(table["iteration"].iloc[-1])
    if choice == "best":
        values = table["mIoU"].to_numpy(dtype=float)
        return int(table["iteration"].iloc[int(np.nanargmax(values))])
    values = table["target_entropy"].to_numpy(dtype=float)
    return int(table["iteration"].iloc[int(np.nanargmin(values))])


def choices_row(table: pd.DataFrame | None, final: dict, final_iter, selection: str = "entropy") -> dict:
    """`mIoU_best`, `best_iter`, `mIoU_selected`, `selected_iter` of the summary (and `mIoU-13_best`,
    `mIoU-13_selected` for SYNTHIA's 16 classes). final: the final model's means ({"mIoU": ..., "mIoU-13": ...});
    without snapshots (None) all three choices are the final model."""
    means = [m for m in ("mIoU", "mIoU-13") if m in final]
    out = {}
    for choice in ("best", "selected"):
        if table is None or table.empty:
            row = final
            it = float(final_iter) if final_iter is not None else math.nan
        else:
            it = choose(table, choice, selection)
            row = table.loc[table["iteration"] == it].iloc[0]
            it = float(it)
        out.update({f"{m}_{choice}": float(row[m]) for m in means})
        out[f"{choice}_iter"] = it
    return out


def copy_checkpoint(source, dest) -> None:
    """`dest` becomes a copy of `source`, atomically. A copy, not a hard link: Snakemake touches a job's outputs
    when it finishes, and a shared inode would make the source look newer than everything made from it."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)


def check_selection(selection) -> None:
    if selection not in SELECTIONS:
        raise ValueError(f"config evaluate.selection={selection!r} is not one of {', '.join(SELECTIONS)}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SelectModelParams(StageParams):
    """Rule `select_model`: the choice (best | selected), config evaluate.selection, the candidates' iterations."""

    rule = "select_model"
    choice: str
    selection: str
    iterations: list

    def check(self) -> None:
        if self.choice not in ("best", "selected"):
            raise ValueError(f"rule select_model: params choice={self.choice!r} must be best or selected")
        check_selection(self.selection)


def run_select_model(params: SelectModelParams, inputs, outputs, log=None) -> None:
    """Copy the candidate of `inputs["candidates"]` that the choice picks from `inputs["table"]` to the output."""
    log = sys.stdout if log is None else log
    table = read_csv(inputs["table"])
    iteration = choose(table, params.choice, params.selection)
    candidates = list(inputs["candidates"])
    if len(candidates) != len(params.iterations):
        raise ValueError(f"rule select_model: {len(candidates)} checkpoints, {len(params.iterations)} iterations")
    source = dict(zip(params.iterations, candidates))[iteration]
    if params.choice == "best":
        print(
            "WARNING: the model chosen on target-val labels (best) feeds training: target labels then shape the result"
            " (the reference's protocol, optimistic); 'selected' chooses without them",
            file=log,
        )
    row = table[table["iteration"] == iteration].iloc[0]
    mean = f"mIoU {row['mIoU']}, target entropy {row['target_entropy']:.6f}"
    print(f"{params.choice}: iteration {iteration} ({source}; {mean})", file=log)
    copy_checkpoint(source, the_file(outputs))
