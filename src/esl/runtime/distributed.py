"""Several processes, one per GPU: the rank of this process, and torchrun started and stopped from a workflow job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch.distributed as dist

from esl.runtime.resume import StopSignals


def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless torch.distributed is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def env_rank() -> tuple[int, int, int]:
    """(rank, local rank, world size) as torchrun sets them in the environment; (0, 0, 1) when not under torchrun."""
    return (
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("LOCAL_RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
    )


def torchrun(module: str, argument: str, processes: int, threads: int, log) -> tuple[int, tuple[str, ...]]:
    """`torchrun --standalone --nproc_per_node=processes -m module argument`, its output into `log`.

    SIGTERM/SIGUSR1 received meanwhile are passed on (torchrun hands SIGTERM to the workers, which save and stop).
    torchrun itself ignores SIGUSR1: it has no handler for it, and Slurm's `--signal` reaches every process of the
    job step (the workers get it directly too). Returns (exit code, names of the stop signals received)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cmd += ["-m", module, argument]
    print(f"{processes} processes: {' '.join(cmd)}", file=log, flush=True)
    # An ignored signal stays ignored across exec (a handler would not): the shell sets it, then becomes torchrun.
    ignore_usr1 = ["sh", "-c", 'trap "" USR1; exec "$0" "$@"']
    with StopSignals() as stop:
        per_process = str(max(1, threads // processes))  # (torchrun warns when it has to choose)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", per_process)}
        proc = subprocess.Popen(
            ignore_usr1 + cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        forwarded = False
        while proc.poll() is None:
            if stop() and not forwarded:
                print(f"{stop.received}: asking the {processes} processes to save and stop", file=log, flush=True)
                proc.send_signal(signal.SIGTERM)
                forwarded = True
            time.sleep(0.2)
    return proc.returncode, tuple(stop.seen)
