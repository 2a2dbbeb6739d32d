"""metrics.csv, the training curve every training job writes: rows checked against the schedule and the log."""

import ast
import io
import re

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import run_here, train_spec

from esl.stages.train import run


def test_every_iteration_has_a_row_with_the_poly_rate_and_the_losses_the_log_averages(tmp_path):
    iters, lr = 6, 0.01
    job = train_spec(tmp_path, "selftrain", iters=iters, lr=lr, log_interval=0)
    log = run_here(job)
    table = pd.read_csv(job.metrics, comment="#")
    assert list(table["iteration"]) == list(range(1, iters + 1))  # ceil(6 / 1000) = 1: a row per iteration
    # The backbone group's rate at iteration i (1-based) is the poly schedule at step i - 1, power 0.9, stated here.
    expected_lr = [lr * (1 - (i - 1) / iters) ** 0.9 for i in range(1, iters + 1)]
    np.testing.assert_allclose(table["lr"], expected_lr, rtol=1e-12)
    assert {"loss_src", "loss_tgt", "images_per_s"} <= set(table.columns)
    assert (table["images_per_s"] > 0).all()
    final = ast.literal_eval(re.search(r"final mean losses: (\{.*\})", log).group(1))
    for term in ("src", "tgt"):  # a row per iteration: their mean is the run's mean loss
        assert table[f"loss_{term}"].mean() == pytest.approx(final[term], rel=1e-12)
    assert table["loss_src"].iloc[0] != table["loss_src"].iloc[-1]  # a curve, not a constant


def test_rows_average_over_their_interval(tmp_path):
    """With 2500 iterations a row stands for ceil(2500 / 1000) = 3 of them; here the interval is set to 4."""
    from esl.runtime.progress import MetricsLog

    m = MetricsLog(iters=10, images_per_iter=2, every=4)
    for i in range(1, 11):
        m.add(i, lr=1.0 / i, terms={"src": float(i)})
    assert [r["iteration"] for r in m.rows] == [4, 8, 10]
    assert [r["loss_src"] for r in m.rows] == [2.5, 6.5, 9.5]  # means of 1..4, 5..8, 9..10
    assert [r["lr"] for r in m.rows] == [1 / 4, 1 / 8, 1 / 10]
    assert MetricsLog(iters=2500, images_per_iter=1).every == 3


def test_a_resumed_run_writes_the_whole_curve(tmp_path):
    """Stopped after iteration 3 of 6 (a stop request), then resumed: the loss columns equal an uninterrupted run's."""
    from esl.runtime.resume import EXIT_PREEMPTED

    ref = train_spec(tmp_path, "selftrain", "ref", iters=6, log_interval=0, save_every=100)
    run_here(ref)
    job = train_spec(tmp_path, "selftrain", "run", iters=6, log_interval=0, save_every=100)
    calls = {"n": 0}

    def stop_after_three():
        calls["n"] += 1
        return calls["n"] >= 3

    import esl.stages.train as stage

    class Stop(stage.StopSignals):
        def __call__(self):
            return stop_after_three()

    original = stage.StopSignals
    stage.StopSignals = Stop
    try:
        threads = torch.get_num_threads()
        assert run(job, log=io.StringIO()) == EXIT_PREEMPTED
        torch.set_num_threads(threads)
    finally:
        stage.StopSignals = original
    run_here(job)
    a, b = pd.read_csv(ref.metrics, comment="#"), pd.read_csv(job.metrics, comment="#")
    losses = [c for c in a.columns if c.startswith("loss_")]
    assert list(b["iteration"]) == list(range(1, 7))
    pd.testing.assert_frame_equal(a[["iteration", "lr", *losses]], b[["iteration", "lr", *losses]])
