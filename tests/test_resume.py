"""Preemption-safe training: killed and resumed runs end with the same weights as an uninterrupted run."""

import io
import random
import signal

import pytest
import torch
from helpers import cli, run_here, train_spec, write_spec

from esl.runtime.resume import EXIT_PREEMPTED, ResumeError, ResumeFile, StopSignals, rng_state, set_rng_state
from esl.stages.train import launch, run

ITERS, EVERY = 24, 5


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def run_until(proc, count):
    """Read the job's log until its progress line `train {count}/…`; returns the lines read."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("train ") and int(line.split()[1].split("/")[0]) >= count:
            return lines
    raise AssertionError("training ended before the kill point:\n" + "".join(lines))


def finish(proc):
    out = proc.stdout.read()
    proc.wait(timeout=60)
    return out


def final_losses(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("final mean losses")]


def test_killed_and_resumed_runs_equal_an_uninterrupted_run(tmp_path):
    """Self-training (source + target pseudo-labels) interrupted three times at random iterations (SIGTERM, SIGKILL,
    SIGUSR1), resumed after each, then resumed to the end: the weights (BatchNorm buffers included) and the mean losses
    are bit-identical to one uninterrupted run's. SIGKILL saves nothing, so that resume starts from the last periodic
    save and repeats the iterations after it."""
    extra = {"log_interval": 0, "save_every": EVERY, "iters": ITERS}
    ref = train_spec(tmp_path, "selftrain", "ref", **extra)
    ref_log = run_here(ref)
    assert final_losses(ref_log), ref_log

    spec = train_spec(tmp_path, "selftrain", "run", **extra)
    path = write_spec(spec, tmp_path / "run.json")
    state_path = tmp_path / "run/resume/state.pt"
    rnd = random.Random(0)
    done = 0
    for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1):
        if sig == signal.SIGKILL:  # past the next periodic save: that save is complete once the next line is out
            kill_at = (done // EVERY + 1) * EVERY + rnd.randint(1, 2)
        else:
            kill_at = done + rnd.randint(1, 4)
        proc = cli(path)
        lines = run_until(proc, kill_at - done)
        assert any("resuming from" in line for line in lines) == (done > 0)
        proc.send_signal(sig)
        lines += finish(proc).splitlines()
        saved = torch.load(state_path, weights_only=True)["iteration"]
        if sig == signal.SIGKILL:
            assert proc.returncode == -signal.SIGKILL
            assert saved % EVERY == 0 and done < saved < kill_at
        else:
            assert proc.returncode == EXIT_PREEMPTED, lines
            assert kill_at <= saved < ITERS
            assert any(f"after iteration {saved}/{ITERS}" in line for line in lines), lines
        assert not (tmp_path / "run/model.pt").exists()
        done = saved
    log = run_here(spec)
    assert f"resuming from {state_path} after iteration {done}/{ITERS}" in log
    assert final_losses(log) == final_losses(ref_log)

    a, b = weights(tmp_path / "ref/model.pt"), weights(tmp_path / "run/model.pt")
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert not state_path.exists() and not state_path.parent.exists()  # deleted once model.pt is written


class SignalAfter(io.StringIO):
    """A job log that sends this process SIGUSR1 right after the first line starting with `prefix` is written."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix, self.sent = prefix, False

    def write(self, text):
        n = super().write(text)
        if not self.sent and text.startswith(self.prefix):
            self.sent = True
            signal.raise_signal(signal.SIGUSR1)
        return n


@pytest.mark.parametrize("inherited", ["default", "ignored"])
def test_a_signal_after_the_last_iteration_neither_stops_nor_costs_a_retraining(tmp_path, inherited):
    """SIGUSR1 once the last iteration is done: the job still writes its outputs and returns 0. If this process did
    not inherit SIGUSR1 ignored, its parent may have died of it (Slurm signals the whole job step) and the job may
    count as failed: the finished state (staged model and snapshots) is kept, and the next start, after Snakemake
    deleted the outputs, writes them from it without training, bit-identical. Inherited ignored (the workflow's
    Snakemake ignores it inside Slurm jobs): nothing is kept."""
    extra = {"iters": 6, "snapshot_every": 2, "save_every": 4, "log_interval": 0}
    ref_log = run_here(train_spec(tmp_path, "pretrain", "ref", **extra))
    spec = train_spec(tmp_path, "pretrain", "run", **extra)
    resume = tmp_path / "run/resume"
    log = SignalAfter("train 6/6")
    threads, before = torch.get_num_threads(), signal.getsignal(signal.SIGUSR1)
    try:
        disposition = signal.SIG_IGN if inherited == "ignored" else signal.SIG_DFL
        signal.signal(signal.SIGUSR1, disposition)
        assert run(spec, log=log) == 0, log.getvalue()
        assert signal.getsignal(signal.SIGUSR1) == disposition  # restored
    finally:
        signal.signal(signal.SIGUSR1, before)
        torch.set_num_threads(threads)
    first = log.getvalue()
    assert log.sent and (tmp_path / "run/model.pt").is_file(), first
    assert f"wrote {spec.output} and 2 snapshots" in first
    if inherited == "ignored":
        assert "SIGUSR1 after the last iteration: ignored" in first
        assert not resume.exists()
        return
    assert "SIGUSR1 after the last iteration: the outputs are complete, but the job may count as failed" in first
    assert torch.load(resume / "state.pt", weights_only=True)["finished"]
    for output in [tmp_path / "run/model.pt", *(tmp_path / "run/snapshots").iterdir()]:
        output.unlink()  # what Snakemake does with the outputs of a failed job
    again = run_here(spec)
    assert f"finished state found: {resume / 'state.pt'} (training ended after iteration 6/6)" in again
    assert not [line for line in again.splitlines() if line.startswith("train ")], again
    assert final_losses(again) == final_losses(first) == final_losses(ref_log)
    for rel in ["model.pt", "snapshots/iter_000002.pt", "snapshots/iter_000004.pt"]:
        a, b = weights(tmp_path / "ref" / rel), weights(tmp_path / "run" / rel)
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a), rel
    assert not resume.exists()


@pytest.mark.parametrize("gpus", [1, 2])
def test_a_finished_state_is_completed_without_training(tmp_path, gpus):
    """A finished state (the final model staged beside it) left by an attempt whose job then failed: launch writes
    model.pt from it, for a multi-process job too without starting torchrun, and removes it."""
    from esl.models.checkpoints import initial_model, save_checkpoint

    spec = train_spec(tmp_path, iters=3, gpus=gpus, threads=gpus)
    resume = ResumeFile(spec.resume, spec.resume_params(), 5)
    model = initial_model(spec.source["num_classes"], spec.model, 7)
    save_checkpoint(resume.path.with_name("model.pt"), model, dict(spec.model), spec.provenance)
    resume.save({"iteration": 3, "finished": True, "stats": {"src": 1.5}})
    log = io.StringIO()
    assert launch(spec, log=log) == 0
    assert "finished state found" in log.getvalue() and "processes" not in log.getvalue(), log.getvalue()
    assert "final mean losses: {'src': 1.5}" in log.getvalue()
    written = weights(spec.output)
    assert all(torch.equal(written[k], v) for k, v in model.state_dict().items())
    assert not resume.path.parent.exists()


def test_a_damaged_state_is_refused_and_kept(tmp_path):
    spec = train_spec(tmp_path, iters=3)
    state = tmp_path / "run/resume/state.pt"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"not a checkpoint")
    with pytest.raises(ResumeError) as e:
        launch(spec)
    msg = str(e.value)
    assert str(state) in msg and "delete it to start over" in msg and "\n" not in msg
    assert state.read_bytes() == b"not a checkpoint"
    assert not (tmp_path / "run/model.pt").exists()


def test_a_state_made_with_other_parameters_is_refused(tmp_path):
    old = train_spec(tmp_path, iters=3, lr=0.02)
    ResumeFile(old.resume, old.resume_params(), 5).save({"iteration": 1})
    spec = train_spec(tmp_path, iters=3, lr=0.01)
    with pytest.raises(ResumeError) as e:
        launch(spec)
    msg = str(e.value)
    assert old.resume in msg and "params.train.lr: 0.02 -> 0.01" in msg and "delete it to start over" in msg
    # How often states are saved (and the loader's worker count) may change between attempts; the inputs may not.
    assert train_spec(tmp_path, save_every=3).resume_params() == train_spec(tmp_path, save_every=9).resume_params()
    other_inputs = train_spec(tmp_path)
    other_inputs.provenance["inputs"]["x.csv"] = {"size": 1}
    assert other_inputs.resume_params() != train_spec(tmp_path).resume_params()


def test_rng_states_round_trip_through_a_safe_load(tmp_path):
    import random as py_random

    import numpy as np

    torch.manual_seed(3), np.random.seed(3), py_random.seed(3)
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), [py_random.random() for _ in range(3)])
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), [py_random.random() for _ in range(3)])
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_stop_signals_set_a_flag_and_restore_the_handlers():
    before = signal.getsignal(signal.SIGUSR1)
    with StopSignals() as stop:
        assert not stop()
        signal.raise_signal(signal.SIGUSR1)
        assert stop() and stop.received == "SIGUSR1"
    assert signal.getsignal(signal.SIGUSR1) is before


@pytest.mark.parametrize("content", ["garbage", "pickle"])
def test_an_unreadable_state_is_one_line_without_torchs_advice(tmp_path, content):
    """torch's message for a refused pickle suggests weights_only=False: wrong for a damaged file, unsafe for a
    hostile one. The error names the file and what to do instead."""
    import pickle

    path = tmp_path / "state.pt"
    if content == "garbage":
        path.write_bytes(b"\x00not a torch file")
    else:
        torch.save({"x": pickle.PickleError("x")}, path)  # a class weights_only refuses to rebuild
    with pytest.raises(ResumeError) as e:
        ResumeFile(path, {}, 1).load()
    message = str(e.value)
    assert message.startswith(f"{path}: unreadable resumable training state") and "delete it to start over" in message
    assert "\n" not in message and "weights_only" not in message
