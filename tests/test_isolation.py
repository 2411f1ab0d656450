"""How a run is isolated (`harness.run.isolation`): a warm worker gives the same numbers as a fresh
process, keeps each run's peak memory its own, survives a raising run, is replaced when killed,
and is recycled when told to. Real trainings on the IMDB slice, in real processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest

from backends import BACKENDS
from harness.config import RunConfig
from harness.run.events import Epoch, Event, Finished, FromJob, Start
from harness.run.isolation import FreshProcess, InProcess, WarmWorkers
from harness.run.pool import WorkerPool
from harness.run.trial import COMPLETE, FAIL, TrialJob

pytestmark = pytest.mark.slow  # every test starts framework processes and trains

# Figures that measure the machine, not the computation: they differ from run to run anyway.
MACHINE_FIGURES = ("seconds", "per_second", "_mb", "time_to_first_epoch", "cpu_per_wall")


def job(folder: Path, data: Path, **config: object) -> TrialJob:
    """A two-epoch re-training-like job (test split evaluated) of a tiny GRU on the slice."""
    fields = {
        "backend": "torch",
        "architecture": "gru",
        "epochs": 2,
        "subset": 200,
        "num_words": 1000,
        "embedding_dim": 8,
        "hidden_size": 8,
        "sequence_length": 32,
        **config,
    }
    return TrialJob(
        config=RunConfig(**fields).as_params(),
        data=str(data),
        objective="val_accuracy",
        evaluate_test=True,
        folder=str(folder),
    )


def computed(figures: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in figures.items() if not any(m in k for m in MACHINE_FIGURES)}


@pytest.fixture
def pool() -> WorkerPool:
    return WorkerPool(1)


@pytest.fixture
def warm(pool: WorkerPool, tmp_path: Path):
    workers = WarmWorkers(pool, tmp_path / "workers")
    yield workers
    workers.close()


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_warm_worker_computes_exactly_what_a_fresh_process_does(
    backend, pool, warm, tmp_path, imdb_slice
):
    """The warm worker has trained another model first (other size, other seed); its second run
    must still match a fresh process's bit for bit, epoch by epoch and on the test split."""
    events: list[Event] = []
    first = warm.run(
        job(tmp_path / "a", imdb_slice, backend=backend, hidden_size=16, seed=1),
        events.append,
        slot=0,
    )
    in_warm = warm.run(job(tmp_path / "b", imdb_slice, backend=backend), events.append, slot=0)
    fresh = FreshProcess(pool).run(job(tmp_path / "c", imdb_slice, backend=backend), print, 0)
    assert first.outcome.state == in_warm.outcome.state == fresh.outcome.state == COMPLETE
    assert (first.tags["worker_run"], in_warm.tags["worker_run"]) == ("1", "2")
    assert in_warm.tags["isolation"] == "warm" and fresh.tags["isolation"] == "process"
    assert computed(in_warm.outcome.metrics) == computed(fresh.outcome.metrics)
    assert computed(in_warm.outcome.metrics)["test_accuracy"] > 0  # the test split was seen
    assert [computed(e) for e in in_warm.outcome.epochs] == [
        computed(e) for e in fresh.outcome.epochs
    ]
    assert in_warm.outcome.confusion == fresh.outcome.confusion
    # and what it computed differed from the first run's: the comparison can tell runs apart
    assert computed(first.outcome.metrics) != computed(in_warm.outcome.metrics)
    assert sum(isinstance(e, Epoch) for e in events) == 4  # every epoch of both runs reported


def test_each_run_in_a_warm_worker_reports_its_own_peak_memory(warm, tmp_path, imdb_slice):
    """A large model, then a small one, in one worker: the small one's peak is not the large
    one's (a process's lifetime peak would be), and a fresh process agrees with it."""
    large = {"num_words": 20000, "embedding_dim": 1024}  # 20M parameters + Adam's two moments
    big = warm.run(job(tmp_path / "big", imdb_slice, **large), lambda _: None, slot=0)
    small = warm.run(job(tmp_path / "small", imdb_slice), lambda _: None, slot=0)
    assert small.tags["worker_run"] == "2"
    big_peak = big.outcome.metrics["peak_rss_mb"]
    small_peak = small.outcome.metrics["peak_rss_mb"]
    assert big_peak - small_peak > 200, (big_peak, small_peak)  # the weights alone are 80 MiB x 4


def test_a_raising_run_is_recorded_and_the_next_job_runs_in_a_clean_worker(
    warm, tmp_path, imdb_slice
):
    """A run that raises (a GRU of 2**20 units cannot be allocated) fails alone, with its
    traceback in its own log; its worker makes way, and the slot's next job runs."""
    huge = warm.run(job(tmp_path / "huge", imdb_slice, hidden_size=2**20), lambda _: None, 0)
    assert huge.outcome.state == FAIL and "allocate" in huge.outcome.reason
    assert huge.tags["worker_recycled"].startswith("its run failed")
    assert "Traceback" in (tmp_path / "huge" / "process.log").read_text()  # the run's own log
    after = warm.run(job(tmp_path / "after", imdb_slice), lambda _: None, slot=0)
    assert after.outcome.state == COMPLETE and after.tags["worker_run"] == "1"


def test_a_worker_killed_mid_run_fails_that_run_and_is_replaced(warm, tmp_path, imdb_slice):
    """SIGKILL (what the OOM killer sends) once the run has finished an epoch: the run is a FAIL
    saying so, and the slot's next job gets a new worker; so does the job after a worker killed
    while it waited."""
    killed_pid: list[int] = []

    def kill_after_first_epoch(event: Event) -> None:
        if isinstance(event, Epoch) and not killed_pid:
            (worker,) = warm.workers.values()
            killed_pid.append(worker.process.pid)
            os.kill(worker.process.pid, signal.SIGKILL)

    long = job(tmp_path / "long", imdb_slice, epochs=1000)
    killed = warm.run(long, kill_after_first_epoch, slot=0)
    assert killed.returncode == -signal.SIGKILL
    assert killed.outcome.state == FAIL
    assert "killed by SIGKILL (out of memory?)" in killed.outcome.reason
    after = warm.run(job(tmp_path / "after", imdb_slice), lambda _: None, slot=0)
    assert after.outcome.state == COMPLETE and after.tags["worker_run"] == "1"
    (worker,) = warm.workers.values()
    assert worker.process.pid != killed_pid[0]
    # Killed while idle, between two jobs: no run is lost, the next job gets a fresh worker.
    worker.process.kill()
    worker.process.wait()
    idle_killed = warm.run(job(tmp_path / "idle", imdb_slice), lambda _: None, slot=0)
    assert idle_killed.outcome.state == COMPLETE and idle_killed.tags["worker_run"] == "1"


def test_a_recycled_worker_leaves_and_the_next_job_gets_a_fresh_one(pool, tmp_path, imdb_slice):
    workers = WarmWorkers(pool, tmp_path / "workers", recycle_after=1)
    try:
        ran = [workers.run(job(tmp_path / f"r{n}", imdb_slice), lambda _: None, 0) for n in (1, 2)]
        assert [r.tags["worker_run"] for r in ran] == ["1", "1"]
        assert ran[0].tags["worker_recycled"] == "it reached its limit of 1 runs"
        assert not workers.workers  # the second one left too; nothing is left running
    finally:
        workers.close()


@pytest.mark.parametrize(
    ("resident_mb", "failed", "peaks_span_runs", "reason"),
    [
        ([500, 900], False, False, None),  # grew 400 MiB: under the bound
        ([500, 1600], False, False, "its memory grew to 1600 MiB"),
        ([500, 500, 500], False, False, "it reached its limit of 3 runs"),
        ([500, 500], True, False, "its run failed"),
        ([500], False, True, "its next run could not have a peak memory of its own"),
    ],
)
def test_when_a_worker_is_recycled(pool, tmp_path, resident_mb, failed, peaks_span_runs, reason):
    """The policy alone, on what a worker reports after each run (no process needed): only the
    last run of each case is the failed one or the one whose peaks span runs."""
    workers = WarmWorkers(pool, tmp_path, recycle_after=3, recycle_growth_mb=1024)
    worker = SimpleNamespace(runs=0, resident_after_first_mb=None)
    reasons = []
    for count, resident in enumerate(resident_mb, start=1):
        worker.runs = count
        last = count == len(resident_mb)
        finished = Finished(last and failed, resident, last and peaks_span_runs)
        reasons.append(workers.recycle_reason(worker, finished))
    assert reasons[:-1] == [None] * (len(resident_mb) - 1)
    assert (reasons[-1] or "").startswith(reason or "") and bool(reasons[-1]) == bool(reason)


def test_in_process_runs_the_job_here_and_reports_its_events(tmp_path, imdb_slice):
    events: list[Event] = []
    ran = InProcess().run(job(tmp_path / "here", imdb_slice, epochs=1), events.append, 0)
    assert ran.outcome.state == COMPLETE and ran.tags == {"isolation": "in-process"}
    assert [type(e) for e in events if not isinstance(e, FromJob)][:1] == [Start]
    assert (tmp_path / "here" / "outcome.json").exists()
