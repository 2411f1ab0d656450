"""Faults during `bench run`: nothing already computed is lost, and every failure says why."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from conftest import PRUNE_AFTER_ONE_EPOCH, write_study
from helpers import REPO, bench
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.slow  # every test here runs `bench run`


def write_faults(folder: Path, epochs: int = 1000, **tables: dict[str, object]) -> Path:
    """The conftest's small study (no pruning), named "faults", run for `epochs` epochs.

    A resumed run must not change the study's definition (epochs, data, ...), so the 1000-epoch
    trials are kept short the one way that leaves every run's computation alone: the pruner
    stops each one after its first epoch (`PRUNE_AFTER_ONE_EPOCH`). The pruner is not part of
    the study's identity.
    """
    return write_study(folder, study={"name": "faults", "epochs": epochs}, **tables)


def trials(out, storage: str | None = None) -> list:
    storage = storage or f"sqlite:///{out / 'optuna.db'}"
    return optuna.load_study(study_name="faults/gru/torch", storage=storage).trials


def runs(out) -> list:
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("faults").experiment_id
    return client.search_runs([experiment], "tags.role = 'trial'")


def first_epoch_reported(out: Path, storage: str | None = None) -> bool:
    """True once the running trial has reported an epoch to Optuna: it is in its training loop."""
    try:
        return any(trial.intermediate_values for trial in trials(out, storage))
    except (KeyError, sqlalchemy.exc.OperationalError):
        return False  # the search is not created yet, or a writer holds the database


def wait_for(condition, what: str, seconds: float = 120) -> None:
    """Poll `condition` until it holds; fail naming `what` after a generous deadline."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def start_and_wait_for_training(
    folder: Path, out: Path, imdb_slice, storage: str | None = None
) -> subprocess.Popen:
    """`bench run` on a first trial long enough to be interrupted, once it is training;
    `storage`: an Optuna storage other than the output folder's SQLite file."""
    study = write_faults(folder)  # 1000 epochs: minutes of work
    command = [
        sys.executable,
        "-m",
        "harness",
        "run",
        "--study",
        str(study),
        "--out",
        str(out),
        "--data",
        str(imdb_slice),
        *(["--storage", storage] if storage else []),
    ]
    # Its own process group, as a terminal's Ctrl-C reaches the command and its trial process.
    # SIGINT back to its default: a shell ignores it in background jobs, a CI runner's included.
    running = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    first = out / "jobs" / "faults" / "gru" / "torch" / "trial-0" / "process.log"
    # The stores exist once the first trial's process does; only then does the test read them.
    wait_for(first.exists, "the first trial never started")
    wait_for(lambda: first_epoch_reported(out, storage), "the first trial never finished an epoch")
    return running


def test_ctrl_c_closes_the_running_trial_exits_130_and_the_rerun_resumes(tmp_path, imdb_slice):
    out = tmp_path / "out"
    running = start_and_wait_for_training(tmp_path, out, imdb_slice)
    os.killpg(running.pid, signal.SIGINT)
    _, stderr = running.communicate(timeout=120)
    assert running.returncode == 130
    assert "interrupted" in stderr and "Traceback" not in stderr
    (trial,) = trials(out)
    assert trial.state == TrialState.FAIL and "interrupted" in trial.user_attrs["failure_reason"]
    (run,) = runs(out)
    assert run.info.status == "KILLED" and "interrupted" in run.data.tags["failure_reason"]

    study = write_faults(tmp_path, pruner=PRUNE_AFTER_ONE_EPOCH)
    done = bench("run", "--study", str(study), "--out", str(out), "--data", str(imdb_slice))
    assert done.returncode == 0, done.stderr[-2000:]
    states = [t.state for t in trials(out)]  # the budget of 2 finished trials, exactly
    assert states == [TrialState.FAIL, TrialState.PRUNED, TrialState.PRUNED]


def test_a_diverging_trial_is_recorded_as_pruned_and_the_study_goes_on(tmp_path, imdb_slice):
    out = tmp_path / "out"
    # A learning rate of 1e38 overflows float32 in the first step: the weights become inf, then NaN.
    study = write_faults(
        tmp_path, epochs=2, search={"learning_rate": {"choices": [1e38], "default": 1e38}}
    )
    done = bench("run", "--study", str(study), "--out", str(out), "--data", str(imdb_slice))
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(trials(out)) == 2  # the study went on after the first divergence
    for trial in trials(out):
        assert trial.state == TrialState.PRUNED
        assert trial.user_attrs["stop_reason"].startswith("diverged: loss is nan at epoch 1")
    assert [r.data.tags["trial_state"] for r in runs(out)] == ["PRUNED", "PRUNED"]
    assert all(r.data.tags["stop_reason"].startswith("diverged") for r in runs(out))


def test_kill_9_of_the_whole_run_is_detected_and_the_trial_retried(tmp_path, imdb_slice):
    out = tmp_path / "out"
    running = start_and_wait_for_training(tmp_path, out, imdb_slice)
    os.killpg(running.pid, signal.SIGKILL)  # `bench run` and its trial process, no cleanup
    running.wait(timeout=30)
    (orphan,) = trials(out)
    assert orphan.state == TrialState.RUNNING  # nobody was left to record anything

    study = write_faults(tmp_path, pruner=PRUNE_AFTER_ONE_EPOCH)
    done = bench("run", "--study", str(study), "--out", str(out), "--data", str(imdb_slice))
    assert done.returncode == 0, done.stderr[-2000:]
    dead, retry, other = trials(out)
    assert dead.state == TrialState.FAIL and "process died" in dead.user_attrs["failure_reason"]
    assert retry.params == dead.params and retry.user_attrs["retry_of"] == dead.number
    assert (retry.state, other.state) == (TrialState.PRUNED, TrialState.PRUNED)
    by_trial = {r.data.tags["optuna_trial"]: r for r in runs(out)}
    assert by_trial["0"].info.status == "KILLED"
    assert "process died" in by_trial["0"].data.tags["failure_reason"]
    assert {by_trial[n].info.status for n in ("1", "2")} == {"FINISHED"}


def trial_process_of(parent: int) -> int:
    """The pid of the `harness.run.trial` process that `bench run` (pid `parent`) is running."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # it ended while we looked
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"harness.run.trial" in command:
            return int(entry.name)
    raise AssertionError("no trial process found")


def test_a_killed_trial_process_is_recorded_and_the_study_goes_on(tmp_path, imdb_slice):
    out = tmp_path / "out"
    running = start_and_wait_for_training(tmp_path, out, imdb_slice)
    os.kill(trial_process_of(running.pid), signal.SIGKILL)  # what the kernel's OOM killer does
    second = out / "jobs" / "faults" / "gru" / "torch" / "trial-1" / "process.log"
    wait_for(second.exists, "the study did not go on to the next trial")
    os.killpg(running.pid, signal.SIGINT)  # the next trial is long too: stop here
    running.communicate(timeout=120)
    killed, stopped = trials(out)
    assert killed.state == TrialState.FAIL
    assert "killed by SIGKILL (out of memory?)" in killed.user_attrs["failure_reason"]
    assert "interrupted" in stopped.user_attrs["failure_reason"]
    by_trial = {r.data.tags["optuna_trial"]: r for r in runs(out)}
    assert by_trial["0"].info.status == "FAILED"
    assert "killed by SIGKILL" in by_trial["0"].data.tags["failure_reason"]
    # Resumed, the search runs to its budget of 2 finished trials exactly (warm workers or not).
    study = write_faults(tmp_path, pruner=PRUNE_AFTER_ONE_EPOCH)
    done = bench("run", "--study", str(study), "--out", str(out), "--data", str(imdb_slice))
    assert done.returncode == 0, done.stderr[-2000:]
    assert [t.state for t in trials(out)] == [TrialState.FAIL] * 2 + [TrialState.PRUNED] * 2


def test_a_trial_that_runs_out_of_memory_is_recorded_and_the_study_goes_on(tmp_path, imdb_slice):
    out = tmp_path / "out"
    # A GRU of 2**20 units: its recurrent kernel alone would take 12 TiB, so allocating it raises.
    huge = {"choices": [1048576, 8], "default": 1048576}
    study = write_faults(tmp_path, epochs=1, search={"hidden_size": huge})
    done = bench("run", "--study", str(study), "--out", str(out), "--data", str(imdb_slice))
    assert done.returncode == 0, done.stderr[-2000:]
    first, *others = trials(out)
    assert first.state == TrialState.FAIL and first.params["hidden_size"] == 2**20
    assert "can't allocate memory" in first.user_attrs["failure_reason"]
    assert others  # the search went on after the failure
    run = next(r for r in runs(out) if r.data.tags["optuna_trial"] == "0")
    assert run.info.status == "FAILED" and "allocate" in run.data.tags["failure_reason"]


@contextlib.contextmanager
def small_disk(folder: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` mounted at `folder`: a disk that can really fill up. Skips where
    this process may not mount one (it needs root, as on CI's machine)."""
    folder.mkdir(parents=True)
    size = f"size={megabytes}m"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() or 'not root'}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write zeros into `folder/ballast` until its disk is full; the file, to free it later."""
    ballast = folder / "ballast"
    descriptor = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:  # unbuffered: nothing is left to fail on close
            os.write(descriptor, b"\0" * 2**16)
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(descriptor)
    return ballast


def test_a_full_disk_is_one_line_and_the_same_command_resumes(tmp_path, imdb_slice):
    """The output folder's disk fills up mid-trial: `bench run` stops with one line naming the
    place and what to do, exit code 2; freed, the same command finishes the exact budget."""
    with small_disk(tmp_path / "disk", megabytes=64) as disk:
        out = disk / "out"
        running = start_and_wait_for_training(tmp_path, out, imdb_slice)
        try:
            ballast = fill(disk)
            _, stderr = running.communicate(timeout=300)
        finally:  # never leave it running on a disk about to be unmounted
            if running.poll() is None:
                os.killpg(running.pid, signal.SIGKILL)
                running.wait()
        assert running.returncode == 2, stderr[-3000:]
        assert "Traceback" not in stderr
        (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert line.startswith("error: no space left on the device holding ")
        assert str(disk) in line and "re-run the same command" in line
        ballast.unlink()  # space freed
        study = write_faults(tmp_path, pruner=PRUNE_AFTER_ONE_EPOCH)
        done = bench("run", "--study", str(study), "--out", str(out), "--data", str(imdb_slice))
        assert done.returncode == 0, done.stderr[-3000:]
        states = [t.state for t in trials(out)]
        assert states[0] == TrialState.FAIL and states.count(TrialState.PRUNED) == 2
        assert states[1:] == [TrialState.PRUNED] * 2  # the budget exactly: nothing run twice
        assert {r.info.status for r in runs(out)} <= {"FINISHED", "KILLED", "FAILED"}


def test_a_lost_database_is_one_line_and_the_same_command_resumes(tmp_path, imdb_slice, postgres):
    """The Optuna storage's PostgreSQL server goes away mid-trial: one line naming the store
    (without its password) and what to do, exit code 2; back, the same command finishes the
    exact budget."""
    storage = postgres.create_database("faults_lost")
    out = tmp_path / "out"
    running = start_and_wait_for_training(tmp_path, out, imdb_slice, storage)
    try:
        postgres.stop()
        _, stderr = running.communicate(timeout=300)
    finally:
        if running.poll() is None:
            os.killpg(running.pid, signal.SIGKILL)
            running.wait()
        postgres.start()  # for the resume, and for the session's other tests
    assert running.returncode == 2, stderr[-3000:]
    assert "Traceback" not in stderr and postgres.password not in stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: lost the connection to the Optuna storage (postgresql://bench@")
    assert "re-run the same command" in line and f"details: {out / 'bench.log'}" in line
    assert postgres.password not in (out / "bench.log").read_text()
    study = write_faults(tmp_path, pruner=PRUNE_AFTER_ONE_EPOCH)
    done = bench(
        *("run", "--study", str(study), "--out", str(out), "--data", str(imdb_slice)),
        *("--storage", storage),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    states = [t.state for t in trials(out, storage)]
    assert states[0] == TrialState.FAIL and states[1:] == [TrialState.PRUNED] * 2
