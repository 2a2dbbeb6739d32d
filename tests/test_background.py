"""The background thread behind the inference and entropy writers: calls run in order; an error is raised in the
caller (at the next submit or at close) and the calls after it are skipped."""

import threading

import pytest

from esl.runtime.background import Background


def test_calls_run_in_order_in_another_thread():
    seen = []
    bg = Background("test", depth=2)
    for i in range(50):
        bg.submit(lambda i: seen.append((i, threading.current_thread().name)), i)
    bg.close()
    assert seen == [(i, "test") for i in range(50)]


def test_error_reaches_the_caller_and_later_calls_are_skipped():
    seen, failed = [], threading.Event()

    def call(i):
        if i == 3:
            failed.set()
            raise OSError("disk full")
        seen.append(i)

    bg = Background("test", depth=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(1000):
            bg.submit(call, i)
            if failed.is_set():
                bg.thread.join(timeout=0.01)  # let the thread record the error before the next submit
    with pytest.raises(OSError, match="disk full"):
        bg.close()
    assert seen == [0, 1, 2]
