"""The thread count is part of what a result depends on (on the CPU, torch's reductions split their work by thread):
it is recorded in the provenance, and a training job resumed under another count is refused in one line that says
what to do (docs/ARCHITECTURE.md, "Thread count")."""

import io

import pytest
import torch
from helpers import train_spec

from esl.io.provenance import provenance
from esl.runtime.resume import ResumeError, ResumeFile
from esl.stages.train import launch


def test_a_state_made_with_another_thread_count_is_refused(tmp_path):
    old = train_spec(tmp_path, iters=3, threads=2)
    ResumeFile(old.resume, old.resume_params(), 5).save({"iteration": 1})
    threads = torch.get_num_threads()
    try:
        with pytest.raises(ResumeError) as e:
            launch(train_spec(tmp_path, iters=3, threads=1))
    finally:
        torch.set_num_threads(threads)
    msg = str(e.value)
    assert "\n" not in msg and old.resume in msg
    assert "threads (to resume, run snakemake with the same --cores or --set-threads): 2 -> 1" in msg
    assert "delete it to start over" in msg
    # the same count resumes (the state is accepted: nothing else differs)
    assert ResumeFile(old.resume, train_spec(tmp_path, iters=3, threads=2).resume_params(), 5).load() is not None


def test_the_provenance_records_the_thread_count(tmp_path):
    assert provenance({}, threads=3)["threads"] == 3
    assert provenance({})["threads"] == torch.get_num_threads()  # torch is loaded: its count now
    # a training job's model records the job's count (its process sets it only once training starts)
    job = train_spec(tmp_path, iters=1, threads=2)
    assert job.provenance["threads"] == 2
    threads = torch.get_num_threads()
    try:
        assert launch(job, log=io.StringIO()) == 0
    finally:
        torch.set_num_threads(threads)
    assert torch.load(job.output, weights_only=True)["provenance"]["threads"] == 2
