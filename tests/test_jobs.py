"""The child-process protocol that trials and `bench perf` share: typed events over JSON lines."""

from __future__ import annotations

import math

import pytest

from harness.run.events import Epoch, Machine, Measured, Measuring, Start, Tags
from harness.run.jobs import emit, parse_event, run_child, write_job
from harness.run.trial import TrialJob

SENT = [
    Start("abc123", {"majority_val_accuracy": 0.5}, {"framework": "torch", "device": "cpu"}),
    Tags({"kernel": "generic"}),
    Epoch(1, 3, {"val_accuracy": 0.75, "train_loss": math.inf}),
    Machine("torch", "torch", "2.5", "some cpu", False, 2),
    Measuring("keras", {"kind": "main", "batch_size": 8}),
    Measured("keras", {"kind": "main", "batch_size": 8}, {"steps": 2, "pass_seconds": [0.1]}),
]


@pytest.mark.parametrize("event", SENT, ids=lambda event: type(event).__name__)
def test_every_event_arrives_as_it_was_sent(event, capsys):
    emit(event)
    (line,) = capsys.readouterr().out.splitlines()
    assert parse_event(line + "\n") == event


@pytest.mark.parametrize(
    "line",
    ["plain text from a framework", "{not json", '{"event": "unknown"}', '{"event": "tags"}'],
)
def test_what_is_not_an_event_is_passed_over(line):
    assert parse_event(line) is None


def test_perf_records_keep_their_flat_shape():
    machine, measured = SENT[3], SENT[5]
    assert machine.record() == {
        "event": "machine",
        "backend": "torch",
        "framework": "torch",
        "framework_version": "2.5",
        "device": "some cpu",
        "gpu": False,
        "threads": 2,
    }
    assert measured.record() == {
        "event": "result",
        "backend": "keras",
        "kind": "main",
        "batch_size": 8,
        "steps": 2,
        "pass_seconds": [0.1],
    }


def test_a_child_that_fails_leaves_its_exit_code_and_its_log(tmp_path):
    """A job the trial module cannot read: no events, exit code 1, the traceback in the log."""
    job = TrialJob(config={}, data="", objective="", evaluate_test=False, folder=str(tmp_path))
    job_path = write_job(job, tmp_path / "job.json")
    job_path.write_text("{}")  # not a TrialJob
    events, log = [], tmp_path / "process.log"
    code = run_child("harness.run.trial", job_path, log, events.append)
    assert code == 1 and events == []
    assert "TypeError" in log.read_text()
