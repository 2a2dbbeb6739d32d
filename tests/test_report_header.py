"""The pytest report says what did not run here: the CUDA variants (conftest.DEVICES) on a machine without a GPU."""

import re
import subprocess
import sys

import pytest
import torch
from conftest import REPO

FILES = ["tests/test_metrics.py", "tests/test_thresholds.py"]


def pytest_run(*args) -> str:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, *FILES]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the CUDA variants run")
def test_the_header_counts_the_cuda_tests_that_do_not_run():
    out = pytest_run("--collect-only", "-q")
    # counted independently of the marker: the collected test ids with a `cuda` parameter
    cuda_ids = [line for line in out.splitlines() if re.search(r"\[(.*-)?cuda(-.*)?\]$", line)]
    assert len(cuda_ids) >= 4  # test_metrics: 1, test_thresholds: 1 + 3
    assert f"CUDA: not available, {len(cuda_ids)} CUDA tests not run (skipped)" in out.splitlines()
    # and they are reported as skipped, with the reason, when run
    out = pytest_run("-q", "-rs", "-m", "cuda")
    assert f"{len(cuda_ids)} skipped" in out and "CUDA not available" in out
