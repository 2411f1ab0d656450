"""The study display of `bench run` off a terminal (a log file, CI) and with -v: fed the runner's
real event types, read back as text. On a terminal it is checked through a pseudo-terminal in
tests/test_study_run.py."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from harness.console import StudyProgress, time_left
from harness.run.events import RetrainDone, RetrainStarted, SearchOpened, TrialDone, TrialStarted


def drive(progress: StudyProgress, log: Path) -> None:
    """One search of 2 trials (one already done), then a re-training: 3 jobs of 4 planned."""
    progress(SearchOpened("s/lstm/torch", budget=2, done=1))
    progress(TrialStarted("s/lstm/torch trial 1", {}))
    progress(TrialDone("s/lstm/torch trial 1", "s/lstm/torch", "COMPLETE", 0.7, 0.8, None, None))
    progress(RetrainStarted("s/lstm/torch torch best config, seed 0"))
    job = "s/lstm/torch torch best config, seed 0"
    progress(RetrainDone(job, "COMPLETE", {"test_accuracy": 0.75}, None, str(log)))


def test_off_a_terminal_each_finished_job_says_how_far_the_study_is(tmp_path):
    console = Console(record=True, width=200, force_terminal=False)
    log = tmp_path / "process.log"
    log.write_text("I0000 oneDNN custom operations are on\n")
    with StudyProgress(console, total_jobs=4) as progress:
        drive(progress, log)
    text = console.export_text()
    assert re.search(r"trial 1 COMPLETE value 0\.7000 \(best 0\.8000\) \[2/4, eta \d+s\]", text)
    assert re.search(r"seed 0 COMPLETE test_acc 0\.7500 \[3/4, eta \d+s\]", text)
    # Drawn once, at the end: a row per architecture, a column per backend.
    assert re.search(r"torch\s*\n\s*lstm +2/2 trials best 0\.8000", text)
    assert "oneDNN" not in text  # the run's own output stays in its log


def test_verbose_shows_each_finished_runs_log(tmp_path):
    console = Console(record=True, width=200, force_terminal=False)
    log = tmp_path / "process.log"
    log.write_text("I0000 oneDNN custom operations are on\n")
    with StudyProgress(console, total_jobs=4, verbose=True) as progress:
        drive(progress, log)
    assert "    | I0000 oneDNN custom operations are on" in console.export_text()


def test_the_estimate_is_the_pace_of_this_process_times_the_jobs_left():
    assert time_left(elapsed=30.0, finished=2, left=8) == "2m00s"  # 15 s a job
    assert time_left(elapsed=30.0, finished=3, left=1) == "10s"
    assert time_left(elapsed=3600.0, finished=1, left=2) == "2h00m"
    assert time_left(elapsed=30.0, finished=2, left=0) == "0s"
