"""Preemption-safe training: a resumable state file, and signals that ask training to stop at the next iteration.

The state file holds everything an uninterrupted run would still have in memory after iteration i (model, optimiser,
adapter state, random number generators, running loss means) and the parameters that produced it; the data order needs
no saving because batch i depends only on (n, batch size, seed, i) (`esl.io.torchdata.BatchSchedule`). It is written
atomically, so a kill while saving leaves the previous state intact.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import numpy as np
import torch

from esl.io.files import atomic_path
from esl.io.provenance import config_hash

FORMAT = "esl-resume-1"


EXIT_PREEMPTED = 75  # EX_TEMPFAIL: the job stopped early on purpose; running it again resumes


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)  # Slurm: SIGTERM at the time limit, `--signal=USR1@secs` before it


class ResumeError(ValueError):
    """A resumable state that cannot be used; the message is one line naming the file."""


class Preempted(Exception):
    """Training stopped early on request (a signal) after saving its resumable state."""


class StopSignals:
    """Context manager: SIGTERM/SIGUSR1 set a flag instead of killing the process; the old handlers come back on exit.

    `received` is the first signal's name, `seen` the names of all that came, in order. The handler only records
    the signal (printing from a handler may re-enter a stream that is being written)."""

    def __init__(self, signals=STOP_SIGNALS):
        self.signals = tuple(signals)
        self.received: str | None = None
        self.seen: list[str] = []
        self._old: dict = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = name
        if name not in self.seen:
            self.seen.append(name)

    def __call__(self) -> bool:
        return self.received is not None

    def __enter__(self):
        for s in self.signals:
            self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()
        return False


def ignored_signals(signals=STOP_SIGNALS) -> frozenset[str]:
    """The names of the stop signals this process ignores (SIG_IGN). Called before any handler is installed, these are
    the dispositions it inherited: ignored by the process that started it, e.g. the workflow's Snakemake inside a
    Slurm job (workflow/rules/common.smk), which a signal that reaches every process of the job then cannot kill."""
    return frozenset(signal.Signals(s).name for s in signals if signal.getsignal(s) == signal.SIG_IGN)


class ResumeFile:
    """The resumable state of one training run at `path`, tied to `params` (what must not change between attempts).

    `load` returns None when there is no state; an unreadable state or one made with other parameters raises
    `ResumeError` and is left in place (deleting it is the user's call: it may hold days of work)."""

    def __init__(self, path, params: dict, every: int):
        self.path = Path(path)
        self.params = params
        self.key = config_hash(params)
        self.every = int(every)
        if self.every < 1:
            raise ValueError(f"save_every must be >= 1, got {every}")

    def load(self, map_location="cpu") -> dict | None:
        if not self.path.exists():
            return None
        hint = "delete it to start over"
        try:
            state = torch.load(self.path, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged file
            # torch's own text would suggest weights_only=False: wrong for a damaged file, unsafe for a hostile one
            msg = f"{type(e).__name__}; corrupt, truncated or not a torch file"
            raise ResumeError(f"{self.path}: unreadable resumable training state ({msg}); {hint}") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ResumeError(f"{self.path}: not an esl resumable training state; {hint}")
        if state.get("key") != self.key:
            diff = describe_difference(state.get("params") or {}, self.params)
            raise ResumeError(f"{self.path}: made with different parameters ({diff}); {hint}")
        return state

    def save(self, state: dict) -> None:
        with atomic_path(self.path) as tmp:
            torch.save({"format": FORMAT, "key": self.key, "params": self.params, **state}, tmp)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass  # not empty (or already gone): leave it


def describe_difference(old: dict, new: dict, limit: int = 3) -> str:
    """`a.b: 1 -> 2, c: unset -> 3` for the first `limit` differing leaves of two nested dicts."""
    a, b = _flatten(old), _flatten(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, _UNSET) != b.get(k, _UNSET))
    if not keys:
        return "same values, different hash"
    shown = [f"{k}: {a.get(k, _UNSET)!r} -> {b.get(k, _UNSET)!r}" for k in keys[:limit]]
    more = f", +{len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(shown) + more


class _Unset:
    def __repr__(self):
        return "unset"


_UNSET = _Unset()


def _flatten(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def rng_state() -> dict:
    """The process's random number generator states (torch CPU and CUDA, numpy, python) as plain, safely loadable
    values (`torch.load(weights_only=True)` accepts them)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss_next],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.cpu().tolist()), gauss_next))
