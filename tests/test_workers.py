"""Parallel and distributed studies: workers share one Optuna storage and one MLflow store.

The distributed test is the production set-up on loopback: a real PostgreSQL server holds both
the Optuna storage and the backend store of a real `mlflow server`, and three `bench worker`
processes (three machines, as far as rnnbench can tell) share a study's budget of 6 trials.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import write_study
from helpers import REPO, bench
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from servers import start_mlflow_server

from harness import search
from harness.run.devices import describe_slot, slot_environment
from harness.search import DEFAULTS, claim_trial, open_storage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TRACKING_CREDENTIALS = {
    "MLFLOW_TRACKING_USERNAME": "bench",
    "MLFLOW_TRACKING_PASSWORD": "ml-secret-9d2e4b7a",  # MLflow asks for 12 characters or more
}


def shared_study(folder: Path, name: str, epochs: int, trials: int) -> Path:
    """The conftest's small study under another name, epochs and trial budget."""
    return write_study(folder, study={"name": name, "epochs": epochs}, budget={"trials": trials})


def start_worker(
    study: Path, out: Path, storage: str, tracking: str, data: Path, role: str = "worker"
):
    """`bench worker` (or the main machine's `bench run`) as if on a machine of its own."""
    command = [sys.executable, "-m", "harness", role, "--study", str(study)]
    command += ["--storage", storage, "--tracking-uri", tracking]
    command += ["--out", str(out), "--data", str(data)]
    log = (out.parent / f"{out.name}.log").open("w")
    # One thread per trial: three workers share two cores here, like machines would not.
    # The tracking server's credentials come as MLflow documents them, in the environment.
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **TRACKING_CREDENTIALS}
    return subprocess.Popen(
        command,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
        start_new_session=True,
    )


def trial_runs(tracking: str, study: str) -> list:
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name(study).experiment_id
    return client.search_runs([experiment], "tags.role = 'trial'", max_results=1000)


def overlapping(runs: list) -> int:
    """The most runs that were in progress at the same moment."""
    edges = sorted([(r.info.start_time, 1) for r in runs] + [(r.info.end_time, -1) for r in runs])
    most = current = 0
    for _, step in edges:
        current += step
        most = max(most, current)
    return most


def wait_all(workers: list[subprocess.Popen], folder: Path) -> None:
    for number, worker in enumerate(workers):
        code = worker.wait(timeout=600)
        log = (folder / f"w{number}.log").read_text() if code else ""
        assert code == 0, f"worker {number} exited {code}: {log[-2000:]}"


def test_workers_starting_together_on_an_empty_database_all_get_the_storage(postgres):
    """Each worker creates Optuna's tables if missing: on PostgreSQL all but one lose that race."""
    url = postgres.create_database("fresh")
    start, errors = threading.Barrier(8), []

    def connect() -> None:
        start.wait()
        try:
            open_storage(url).get_all_studies()
        except Exception as error:  # noqa: BLE001 - the assertion below shows which
            errors.append(error)

    threads = [threading.Thread(target=connect) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []


def test_a_second_copy_of_the_defaults_is_handed_back_unrun():
    """Two workers opening a new search together may each queue the study defaults."""
    shared = optuna.create_study()
    for _ in range(2):
        shared.enqueue_trial({"x": 1.0}, user_attrs=DEFAULTS)
    first = claim_trial(shared, budget=3)
    assert first is not None and first.user_attrs == DEFAULTS
    assert claim_trial(shared, budget=3) is None  # the copy: closed as surplus, never run
    third = claim_trial(shared, budget=3)
    assert third is not None and third.number == 2 and not third.user_attrs
    assert claim_trial(shared, budget=2) is None  # two running fill a budget of two
    copy = shared.trials[1]
    assert copy.state == TrialState.FAIL and "surplus" in copy.user_attrs["failure_reason"]


def test_a_trial_whose_heartbeats_stopped_is_failed_once_with_the_reason(tmp_path, monkeypatch):
    """`search.storage.stale_trial_ids` wraps Optuna's one private API in rnnbench
    (pyproject.toml bounds Optuna's version): a RUNNING trial silent past the grace period is
    found, failed with the reason and handed to exactly one caller to retry; a trial that never
    beat is left alone."""
    monkeypatch.setattr(search.storage, "GRACE_SECONDS", 1)
    storage = open_storage(f"sqlite:///{tmp_path / 'stale.db'}")
    shared = optuna.create_study(study_name="stale", storage=storage)
    silent, never_beat = shared.ask(), shared.ask()
    study_id = storage.get_study_id_from_name("stale")
    silent_id = storage.get_trial_id_from_study_id_trial_number(study_id, silent.number)
    storage.record_heartbeat(silent_id)
    deadline = time.monotonic() + 60
    while silent_id not in search.stale_trial_ids(storage, study_id):  # past the grace period
        assert time.monotonic() < deadline, "the silent trial was never found stale"
        time.sleep(0.2)
    (dead,) = search.fail_dead_trials(shared, storage)
    assert dead.number == silent.number
    assert search.fail_dead_trials(shared, storage) == []  # failed once: retried once
    failed, running = shared.get_trials()
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["failure_reason"] == search.DEAD_REASON
    assert running.number == never_beat.number and running.state == TrialState.RUNNING


CLAIMER = """
import sys, time, optuna
from pathlib import Path
from harness.search import claim_trial, open_storage
from harness.stores import sqlite_lock
url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
search = optuna.load_study(study_name="queue", storage=open_storage(url))
ready.touch()
while not go.exists():  # the test creates it once every claimer is ready
    time.sleep(0.01)
for _ in range(10):
    with sqlite_lock(url):
        print(claim_trial(search, budget=1000).number, flush=True)
"""


def test_processes_on_one_sqlite_file_never_take_the_same_queued_trial(tmp_path):
    """Without the lock file, four processes took several queued trials twice here."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    queue = optuna.create_study(study_name="queue", storage=open_storage(url))
    for x in range(40):
        queue.enqueue_trial({"x": float(x)})
    ready, go = [tmp_path / f"ready-{n}" for n in range(4)], tmp_path / "go"
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, url, str(flag), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for flag in ready
    ]
    # A barrier: all four ask at the same moment, once every one has imported and loaded.
    deadline = time.monotonic() + 300
    while not all(flag.exists() for flag in ready):
        assert all(claimer.poll() is None for claimer in claimers), "a claimer died while loading"
        assert time.monotonic() < deadline, "the claimers never got ready"
        time.sleep(0.05)
    go.touch()
    taken = []
    for claimer in claimers:
        out, err = claimer.communicate(timeout=120)
        assert claimer.returncode == 0, err[-2000:]
        taken += [int(number) for number in out.split()]
    assert sorted(taken) == list(range(40))


@pytest.mark.slow
def test_three_workers_on_postgres_and_an_mlflow_server_share_a_budget_of_6(
    tmp_path, imdb_slice, postgres, server, monkeypatch
):
    storage = postgres.create_database("optuna")
    # The tracking server asks for a login (MLflow's basic-auth app), which every `bench`
    # process here passes as MLflow documents it: MLFLOW_TRACKING_USERNAME / _PASSWORD.
    login = tuple(TRACKING_CREDENTIALS.values())
    tracking = start_mlflow_server(
        server,
        postgres.create_database("mlflow").replace("postgresql", "postgresql+psycopg"),
        tmp_path / "artifacts",
        login,
    )
    for name, value in TRACKING_CREDENTIALS.items():  # this test's MlflowClient and `bench`s
        monkeypatch.setenv(name, value)

    # The README's set-up: the main machine's `bench run` and two `bench worker`s share one
    # budget; exactly 6 trials finish, each tracked once (two per worker if they shared evenly).
    study = shared_study(tmp_path, "shared", epochs=1, trials=6)
    workers = [
        start_worker(study, tmp_path / f"w{n}", storage, tracking, imdb_slice, role)
        for n, role in enumerate(["run", "worker", "worker"])
    ]
    wait_all(workers, tmp_path)
    trials = optuna.load_study(study_name="shared/gru/torch", storage=storage).trials
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 6
    surplus = [t for t in trials if t.state not in FINISHED]
    assert all("surplus" in t.user_attrs["failure_reason"] for t in surplus)  # never ran
    runs = trial_runs(tracking, "shared")
    assert len(runs) == 6 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(int(r.data.tags["optuna_trial"]) for r in runs) == sorted(
        t.number for t in finished
    )  # one run per finished trial: no duplicates, none missing
    assert len({r.data.tags["owner"] for r in runs}) >= 2  # the work was shared...
    assert overlapping(runs) >= 2  # ...and done at the same time
    # The storage's password (PostgreSQL asks for it) reached the trial processes through
    # their environment only: no file the workers wrote holds it, nor the tracking password,
    # and job files are private. The files include each worker's terminal output (w<n>.log).
    secrets = [postgres.password, TRACKING_CREDENTIALS["MLFLOW_TRACKING_PASSWORD"]]
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert {f"w{n}.log" for n in range(3)} <= {path.name for path in written}
    for secret in secrets:
        assert not [path for path in written if secret.encode() in path.read_bytes()]
    jobs = [path for path in written if path.name == "job.json"]
    assert jobs and {path.stat().st_mode & 0o777 for path in jobs} == {0o600}
    for terminal in (tmp_path / f"w{n}.log" for n in range(3)):  # and a quiet terminal:
        assert "View run" not in terminal.read_text()  # no MLflow link after every run
    for run in MlflowClient(tracking).search_runs(  # nor any run's tag or param
        [MlflowClient(tracking).get_experiment_by_name("shared").experiment_id], max_results=1000
    ):
        shown = repr({**run.data.tags, **run.data.params})
        assert not [secret for secret in secrets if secret in shown]
    # `bench run` re-trained the best trial and reported the shared search...
    table = pd.read_csv(
        tmp_path / "w0" / "report" / "report.csv", index_col=["architecture", "backend"]
    )
    assert table.loc[("gru", "torch"), ["trials_complete", "trials_pruned"]].sum() == 6
    assert table.loc[("gru", "torch"), "retrain_runs"] == 1
    # ...and `bench report` on another machine reads it back from PostgreSQL and the server.
    report = bench(
        "report",
        "--study",
        str(study),
        "--storage",
        storage,
        "--tracking-uri",
        tracking,
        "--out",
        str(tmp_path / "report"),
    )
    assert report.returncode == 0, report.stderr[-2000:]
    table = pd.read_csv(
        tmp_path / "report" / "report" / "report.csv", index_col=["architecture", "backend"]
    )
    counted = table.loc[("gru", "torch"), ["trials_complete", "trials_pruned"]].sum()
    assert counted == 6

    # Kill one worker (and its trial process) in the middle of a trial: the others retry it.
    study = shared_study(tmp_path, "killed", epochs=20, trials=6)
    workers = [
        start_worker(study, tmp_path / f"k{n}", storage, tracking, imdb_slice) for n in range(3)
    ]
    victim = f"{os.uname().nodename}:{workers[0].pid}"
    deadline = time.monotonic() + 300
    while True:  # until the victim's trial has reported at least one epoch
        assert time.monotonic() < deadline, "the first worker never got a trial going"
        try:
            search = optuna.load_study(study_name="killed/gru/torch", storage=storage)
        except KeyError:  # not created yet
            time.sleep(0.3)
            continue
        if any(
            t.state == TrialState.RUNNING
            and t.user_attrs.get("owner") == victim
            and t.intermediate_values
            for t in search.get_trials(deepcopy=False)
        ):
            break
        time.sleep(0.3)
    os.killpg(workers[0].pid, signal.SIGKILL)
    workers[0].wait(timeout=30)
    for number, worker in enumerate(workers[1:], start=1):
        assert worker.wait(timeout=600) == 0, (tmp_path / f"k{number}.log").read_text()[-2000:]

    trials = optuna.load_study(study_name="killed/gru/torch", storage=storage).trials
    assert sum(t.state in FINISHED for t in trials) == 6
    (dead,) = [
        t for t in trials if t.user_attrs.get("owner") == victim and t.state == TrialState.FAIL
    ]
    assert "process died" in dead.user_attrs["failure_reason"]
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == dead.number]
    assert retry.state in FINISHED and retry.params == dead.params
    runs = trial_runs(tracking, "killed")
    by_trial = Counter(r.data.tags["optuna_trial"] for r in runs)
    assert set(by_trial.values()) == {1}  # no trial tracked twice
    statuses = Counter(r.info.status for r in runs)
    assert statuses == {"FINISHED": 6, "KILLED": 1}
    (closed,) = [r for r in runs if r.info.status == "KILLED"]
    assert closed.data.tags["optuna_trial"] == str(dead.number)
    assert "process died" in closed.data.tags["failure_reason"]


@pytest.mark.slow
def test_bench_run_with_two_workers_runs_trials_side_by_side(tmp_path, imdb_slice):
    study = shared_study(tmp_path, "pair", epochs=2, trials=4)
    out = tmp_path / "out"
    done = bench(
        "run",
        "--study",
        str(study),
        "--out",
        str(out),
        "--data",
        str(imdb_slice),
        "--workers",
        "2",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    storage = f"sqlite:///{out / 'optuna.db'}"
    trials = optuna.load_study(study_name="pair/gru/torch", storage=storage).trials
    assert sum(t.state in FINISHED for t in trials) == 4
    runs = trial_runs(f"sqlite:///{out / 'mlflow.db'}", "pair")
    assert len(runs) == 4 and overlapping(runs) == 2
    # Each slot gets its share of the two cores, recorded with the run.
    share = max(1, (os.cpu_count() or 1) // 2)
    slots = {r.data.tags["worker_slot"] for r in runs}
    assert slots == {f"0 ({share} cpu threads)", f"1 ({share} cpu threads)"}


@pytest.mark.slow
def test_worker_processes_sharing_one_sqlite_file_never_run_a_trial_twice(tmp_path, imdb_slice):
    """Two `bench worker`s on one machine, sharing SQLite files instead of a database server.

    Both create the new stores at once (MLflow's migrations failed on the loser's side until
    they took turns) and both want the queued study defaults first.
    """
    study = shared_study(tmp_path, "local", epochs=1, trials=4)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    workers = [
        start_worker(study, tmp_path / f"w{n}", storage, tracking, imdb_slice) for n in range(2)
    ]
    wait_all(workers, tmp_path)
    trials = optuna.load_study(study_name="local/gru/torch", storage=storage).trials
    assert sum(t.state in FINISHED for t in trials) == 4
    defaults = [t for t in trials if t.user_attrs.get("enqueued") == "study defaults"]
    assert [t.state in FINISHED for t in defaults].count(True) == 1  # run once, however queued
    runs = trial_runs(tracking, "local")
    by_trial = Counter(r.data.tags["optuna_trial"] for r in runs)
    assert len(runs) == 4 and set(by_trial.values()) == {1}  # each trial ran, and ran once
    assert len({r.data.tags["owner"] for r in runs}) == 2


def test_each_worker_slot_gets_its_own_gpu_and_a_share_of_the_cores(monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert slot_environment(0, 1, ["0", "1"]) == {}  # one worker keeps the machine as it is
    slots = [slot_environment(slot, 3, ["4", "7"]) for slot in range(3)]
    assert [s["CUDA_VISIBLE_DEVICES"] for s in slots] == ["4", "7", "4"]  # round robin
    assert {s["OMP_NUM_THREADS"] for s in slots} == {"5"}  # 16 cores / 3 workers
    assert describe_slot(slots[1]) == "gpu 7"
    cpu_only = slot_environment(1, 4, [])
    assert "CUDA_VISIBLE_DEVICES" not in cpu_only and describe_slot(cpu_only) == "4 cpu threads"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own choice is left alone
    assert "OMP_NUM_THREADS" not in slot_environment(0, 2, [])


def test_each_cpu_slot_keeps_to_its_own_cores(monkeypatch):
    """XLA reads no thread variable, only the cores a process may use: so each CPU slot gets its
    own cores, and its trial process pins itself to them before a framework starts."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert [slot_environment(s, 2, [])["BENCH_CPU_CORES"] for s in range(2)] == ["0,1", "2,3"]
    assert "BENCH_CPU_CORES" not in slot_environment(0, 2, ["0"])  # a GPU slot keeps the CPU
    monkeypatch.undo()
    code = "import os; from harness.run.devices import pin_to_slot_cores; pin_to_slot_cores(); "
    code += "print(sorted(os.sched_getaffinity(0)))"
    core = min(os.sched_getaffinity(0))
    pinned = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "BENCH_CPU_CORES": str(core)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert pinned.stdout.strip() == f"[{core}]"
