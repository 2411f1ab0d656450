"""`bench run` and `bench worker`: from a study file to searched, re-trained and tracked models.

For every architecture, each backend gets its own Optuna search (`harness.search`), every trial
runs in its own process (`harness.run.trial`) inside an MLflow run (`harness.tracking`); then the
best configuration of each backend is re-trained on fresh seeds and on the other backend, and
evaluated on the test split. Re-running the same command skips whatever already finished.

Work is done by worker slots, threads that each keep one trial process busy: ``--workers N``
on one machine, and any number of `bench worker` processes on other machines, all sharing the
same Optuna storage and MLflow store. The storage alone decides who runs what
(`search.claim_trial`), so workers need no coordinator and a dead one loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from mlflow.exceptions import MlflowException
from optuna.trial import TrialState

from harness import identity, search
from harness.errors import BenchError
from harness.run.devices import describe_slot, slot_environment, visible_gpus
from harness.run.ownership import owner_is_dead, owner_tag
from harness.run.trial import COMPLETE, FAIL, PRUNED, Outcome, TrialJob
from harness.stores import sqlite_lock
from harness.study.schema import Study
from harness.tracking import Tracker

EventHandler = Callable[[dict], None]
STATUS = {COMPLETE: "FINISHED", PRUNED: "FINISHED", FAIL: "FAILED"}
TELL = {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED, FAIL: TrialState.FAIL}
INTERRUPTED = "interrupted by the user (Ctrl-C); re-run the same command to resume"
ORPHANED = "its `bench run` process died (killed, or the machine stopped); re-run on resume"
STOP_SIGNALS = (-signal.SIGINT, -signal.SIGTERM)  # a trial process ended by Ctrl-C or by us
POLL_SECONDS = 3.0  # how often an idle worker looks for dead trials and freed budget


@dataclass(frozen=True)
class RunPlaces:
    """Where a study run reads and writes."""

    out: Path  # logs and job files; the default stores live here too
    data: Path  # the resolved dataset source
    storage_url: str  # Optuna
    tracking_uri: str  # MLflow


@dataclass
class Search:
    """One (architecture, backend) search as this process's workers share it."""

    architecture: str
    backend: str
    optuna_study: optuna.Study
    parent_run: str  # its MLflow run; trials are nested under it
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.optuna_study.study_name


def config_hash(config: dict[str, object]) -> str:
    """The key of a re-training: the whole run configuration but the seed and the backend, so
    that runs of one configuration on any backend share it and any other change splits them."""
    kept = {k: v for k, v in config.items() if k not in ("seed", "backend")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def check_identity(
    study: Study, tracker: Tracker, storage: optuna.storages.BaseStorage, record: bool = True
) -> None:
    """Stop before any work when the stores were made under another study definition; with
    `record`, write the definition into a new MLflow experiment (new searches record their own).

    The write is read back and checked, whether it succeeded or lost a race: two processes with
    different definitions starting on one empty store at once would otherwise both pass (a
    local store lets the last writer win; a tracking server on PostgreSQL refuses the second).
    """
    where = f"the MLflow experiment {study.name!r}"
    stored = tracker.experiment_tag(identity.DEFINITION_KEY)
    identity.check(study, stored, where)
    for name, definition in search.stored_definitions(study, storage).items():
        identity.check(study, definition, f"the Optuna search {name!r}")
    if stored is None and record:
        try:
            for key, value in identity.attributes(study).items():
                tracker.set_experiment_tag(key, value)
        except MlflowException:
            pass  # a server on PostgreSQL refuses the second of two inserts at the same moment
        identity.check(study, tracker.experiment_tag(identity.DEFINITION_KEY), where)


class ChildProcesses:
    """The trial processes running now, so that an interrupt can end every one of them."""

    def __init__(self) -> None:
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def start(self, command: list[str], **options: object) -> subprocess.Popen:
        with self._lock:
            child = subprocess.Popen(command, **options)
            self._running.add(child)
            return child

    def done(self, child: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(child)

    def terminate_all(self) -> None:
        with self._lock:
            for child in self._running:
                if child.poll() is None:
                    child.terminate()


def run_job(
    job: TrialJob,
    log_path: Path,
    on_event: EventHandler,
    children: ChildProcesses,
    environment: dict[str, str] | None = None,
) -> tuple[Outcome, int]:
    """Run one job in a child process, relay its events; always returns an outcome.

    Also returns the process's exit code, negative when a signal ended it.
    """
    job_path = job.write()
    job.outcome_path.unlink(missing_ok=True)
    with log_path.open("w") as log:
        child = children.start(
            [sys.executable, "-m", "harness.run.trial", str(job_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
            env={**os.environ, **(environment or {})},
        )
        try:
            assert child.stdout is not None
            for line in child.stdout:
                if line.startswith("{"):
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a framework printed something brace-shaped; not ours
                    on_event(event)
            returncode = child.wait()
        finally:
            children.done(child)
    if job.outcome_path.exists():
        return Outcome.read(job.outcome_path), returncode
    return Outcome(FAIL, reason=f"{death_reason(returncode)}; log: {log_path}"), returncode


def death_reason(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"trial process killed by {name}{hint}"
    return f"trial process exited with code {returncode} before reporting"


class StudyRunner:
    def __init__(
        self, study: Study, places: RunPlaces, on_event: EventHandler, workers: int = 1
    ) -> None:
        if workers < 1:
            raise BenchError(f"--workers: expected an integer >= 1; received {workers}")
        self.study = study
        self.places = places
        self.on_event = on_event
        self.workers = workers
        self.storage = search.open_storage(places.storage_url)
        self.tracker = Tracker(
            places.tracking_uri,
            study.name,
            places.out / "artifacts",
            run_tags={identity.DIGEST_KEY: identity.study_digest(study)},
        )
        check_identity(study, self.tracker, self.storage)
        self.jobs = places.out / "jobs"
        self.jobs.mkdir(parents=True, exist_ok=True)
        self.gpus = visible_gpus()
        self.children = ChildProcesses()
        self.stopping = threading.Event()  # set on Ctrl-C: no new work, running work closed
        # SQLite cannot lock the row of a queued trial, so two slots or processes could both
        # take it; PostgreSQL can (between machines, the storage alone keeps claims apart).
        self.claiming = threading.Lock()
        self.claiming_file = sqlite_lock(places.storage_url)

    def run(self) -> None:
        """`bench run`: every search to its budget, then the re-trainings."""
        searches = self.search_all()
        self.retrain_all(searches)

    # -- worker slots -----------------------------------------------------------------------
    def in_parallel(self, work: Callable[[int], None]) -> None:
        """Run ``work(slot)`` on every worker slot at once; Ctrl-C and errors stop them all."""
        errors: list[BaseException] = []
        done = [threading.Event() for _ in range(self.workers)]

        def guarded(slot: int) -> None:
            try:
                work(slot)
            except BaseException as error:  # noqa: BLE001 - handed to the main thread below
                errors.append(error)
                self.stopping.set()
                self.children.terminate_all()
            finally:
                done[slot].set()

        for slot in range(self.workers):
            threading.Thread(
                target=guarded, args=(slot,), name=f"worker-{slot}", daemon=True
            ).start()
        # Polled with sleep, not Thread.join: on Python 3.11 a Ctrl-C inside join() marks the
        # thread as finished while it still runs (bpo-45274), and its trial would go unrecorded.
        try:
            while not all(event.is_set() for event in done):
                time.sleep(0.2)
        except KeyboardInterrupt:
            self.stopping.set()
            self.children.terminate_all()
            deadline = time.monotonic() + 120  # time to record the interrupted trials
            while not all(event.is_set() for event in done) and time.monotonic() < deadline:
                time.sleep(0.2)
            raise
        if self.stopping.is_set() and not errors:
            raise KeyboardInterrupt  # a trial process saw Ctrl-C before this process did
        if errors:
            raise errors[0]

    def slot_environment(self, slot: int) -> dict[str, str]:
        return slot_environment(slot, self.workers, self.gpus)

    def interrupted(self, returncode: int) -> bool:
        """True when a job ended because the user pressed Ctrl-C (or this run was stopped)."""
        if returncode in STOP_SIGNALS:
            self.stopping.set()
        return self.stopping.is_set()

    # -- search ---------------------------------------------------------------------------
    def search_all(self) -> list[Search]:
        """Run every search of the study to its budget, on all worker slots; `bench worker`."""
        searches = [
            self.open_search(architecture, backend)
            for architecture in self.study.architectures
            for backend in self.study.backends
        ]
        minutes = self.study.budget.timeout_minutes
        deadline = time.monotonic() + 60 * minutes if minutes else None
        try:
            self.in_parallel(lambda slot: self.work_on(searches, slot, deadline))
        except KeyboardInterrupt:
            for opened in searches:
                if not opened.closed:
                    self.tracker.finish(opened.parent_run, "KILLED", INTERRUPTED)
            raise
        return searches

    def open_search(self, architecture: str, backend: str) -> Search:
        study = self.study
        optuna_name = search.optuna_study_name(study, architecture, backend)
        optuna_study = search.open_search(study, architecture, backend, self.storage)
        parent = self.tracker.search_run(study.name, architecture, backend, optuna_name)
        opened = Search(architecture, backend, optuna_study, parent)
        self.recover_dead_trials(opened)
        self.on_event(
            {
                "event": "search",
                "name": optuna_name,
                "budget": study.budget.trials,
                "done": search.Tally.of(optuna_study).finished,
            }
        )
        return opened

    def recover_dead_trials(self, opened: Search) -> None:
        """Close the runs of trials whose process died, and queue their params again."""
        with self.claiming, self.claiming_file:  # one retry per dead trial, also on SQLite
            dead_trials = search.fail_dead_trials(opened.optuna_study, self.storage)
            for dead in dead_trials:
                opened.optuna_study.enqueue_trial(dead.params, user_attrs={"retry_of": dead.number})
        for dead in dead_trials:
            self.close_dead_trial_run(dead)
            self.on_event({"event": "dead_trial", "name": opened.name, "trial": dead.number})

    def work_on(self, searches: list[Search], slot: int, deadline: float | None) -> None:
        """One worker slot: run trials of the first search with room in its budget, until all
        are done. A search whose budget is taken by running trials (of any worker, any machine)
        is waited for, as one of them may die and need its place taken again."""
        budget = self.study.budget.trials or sys.maxsize
        while not self.stopping.is_set():
            ran = False
            for opened in searches:
                if opened.closed:
                    continue
                self.recover_dead_trials(opened)
                tally = search.Tally.of(opened.optuna_study)
                out_of_time = deadline is not None and time.monotonic() > deadline
                # A search that keeps failing stops instead of looping forever.
                given_up = tally.failed >= max(budget, 3)
                if tally.finished >= budget or out_of_time or given_up:
                    self.close_search(opened)
                    continue
                with self.claiming, self.claiming_file:
                    trial = search.claim_trial(opened.optuna_study, budget)
                if trial is not None:
                    self.run_trial(opened, trial, slot)
                    ran = True
                    break
            if all(opened.closed for opened in searches):
                return
            if not ran:
                self.stopping.wait(POLL_SECONDS)

    def close_search(self, opened: Search) -> None:
        with opened.lock:
            if not opened.closed:
                opened.closed = True
                self.tracker.finish(opened.parent_run, "FINISHED")

    def run_trial(self, opened: Search, trial: optuna.Trial, slot: int) -> None:
        optuna_study, architecture, backend = (
            opened.optuna_study,
            opened.architecture,
            opened.backend,
        )
        params = search.suggest(trial, self.study.search)
        environment = self.slot_environment(slot)
        tags = {
            "role": "trial",
            "architecture": architecture,
            "backend": backend,
            "optuna_study": optuna_study.study_name,
            "optuna_trial": str(trial.number),
            "seed": "0",
            "owner": owner_tag(),
            "worker_slot": f"{slot} ({describe_slot(environment)})",
        }
        run_id = self.tracker.start(
            f"trial {trial.number}", self.tagged(tags), parent=opened.parent_run
        )
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("owner", owner_tag())
        label = f"{optuna_study.study_name} trial {trial.number}"
        self.on_event({"event": "trial", "job": label, "params": params})
        job = TrialJob(
            config=self.study.run_config(backend, architecture, params, seed=0).as_params(),
            data=str(self.places.data),
            objective=self.study.objective.metric,
            evaluate_test=False,
            folder=str(self.jobs / f"{optuna_study.study_name}/trial-{trial.number}"),
            storage_url=self.places.storage_url,
            optuna_study=optuna_study.study_name,
            trial_id=trial._trial_id,
            pruner=self.study.pruner.model_dump(exclude_unset=True),
        )
        outcome = self.execute(job, run_id, label, environment)
        if outcome.reason:
            trial.set_user_attr(
                "failure_reason" if outcome.state == FAIL else "stop_reason", outcome.reason
            )
        optuna_study.tell(
            trial, outcome.value if outcome.state == COMPLETE else None, state=TELL[outcome.state]
        )
        self.on_event(
            {
                "event": "trial_done",
                "job": label,
                "state": outcome.state,
                "value": outcome.value,
                "best": best_value(optuna_study),
                "reason": outcome.reason,
            }
        )

    def execute(
        self, job: TrialJob, run_id: str, label: str, environment: dict[str, str]
    ) -> Outcome:
        """Run a job's process and turn what it reports into its MLflow run, then close it.

        A job cut short by Ctrl-C is recorded as interrupted (its run KILLED); one that
        finished before the interrupt reached it keeps its result.
        """
        config = job.config

        def on_event(event: dict) -> None:
            if event["event"] == "start":
                self.tracker.log_start(
                    run_id,
                    params={**config, "dataset_digest": event["digest"]},
                    tags=event["tags"],
                    dataset=self.places.data,
                    dataset_digest=event["digest"],
                )
                self.tracker.log_metrics(run_id, event["baselines"])
            elif event["event"] == "tags":
                self.tracker.set_tags(run_id, **event["tags"])
            elif event["event"] == "epoch":
                metrics = {k: v for k, v in event.items() if k not in ("event", "epoch", "epochs")}
                self.tracker.log_metrics(run_id, metrics, step=event["epoch"])
            self.on_event({**event, "job": label})

        Path(job.folder).mkdir(parents=True, exist_ok=True)
        log = Path(job.folder) / "process.log"
        outcome, returncode = run_job(job, log, on_event, self.children, environment)
        if outcome.state == FAIL and self.interrupted(returncode):
            outcome = Outcome(FAIL, reason=INTERRUPTED)
            self.tracker.set_tags(run_id, trial_state=FAIL)
            self.tracker.finish(run_id, "KILLED", INTERRUPTED)
            return outcome
        self.tracker.log_metrics(run_id, outcome.metrics, step=int(config["epochs"]))
        self.tracker.log_artifacts(run_id, outcome.artifacts)
        self.tracker.set_tags(
            run_id,
            trial_state=outcome.state,
            **({"stop_reason": outcome.reason} if outcome.state == PRUNED else {}),
        )
        failed = outcome.state == FAIL
        self.tracker.finish(run_id, STATUS[outcome.state], outcome.reason if failed else None)
        return outcome

    def tagged(self, tags: dict[str, str]) -> dict[str, str]:
        return {"study": self.study.name, **tags}

    def close_dead_trial_run(self, trial: optuna.trial.FrozenTrial) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            self.tracker.set_tags(run_id, trial_state=FAIL)
            self.tracker.finish(run_id, "KILLED", search.DEAD_REASON)

    # -- best-config re-training ----------------------------------------------------------
    def retrain_all(self, searches: list[Search]) -> None:
        """Each backend's best config on fresh seeds, and on the other backend(s)."""
        for run_id in self.tracker.running_runs(roles=("retrain", "cross")):
            owner = self.tracker.tag(run_id, "owner")
            if owner and owner_is_dead(owner):
                self.tracker.finish(run_id, "KILLED", ORPHANED)
        todo: queue.Queue[tuple[str, str, str, dict[str, object], int]] = queue.Queue()
        for opened in searches:
            if search.count(opened.optuna_study, TrialState.COMPLETE) == 0:
                continue  # nothing to re-train: every trial failed or was pruned
            params = dict(opened.optuna_study.best_trial.params)
            source = opened.backend
            targets = [source]
            if self.study.retrain.cross_backend:
                targets += [b for b in self.study.backends if b != source]
            for target in targets:
                for seed in range(self.study.retrain.seeds):
                    todo.put((opened.architecture, source, target, params, seed))

        def work(slot: int) -> None:
            while not self.stopping.is_set():
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                self.retrain_one(*job, slot=slot)

        self.in_parallel(work)

    def retrain_one(
        self,
        architecture: str,
        source: str,
        target: str,
        params: dict[str, object],
        seed: int,
        slot: int = 0,
    ) -> None:
        role = "retrain" if source == target else "cross"
        name = f"{self.study.name}/{architecture}/{target}"
        config = self.study.run_config(target, architecture, params, seed=seed).as_params()
        tags = self.tagged(
            {
                "role": role,
                "architecture": architecture,
                "backend": target,
                "config_from": source,
                "seed": str(seed),
                "config_hash": config_hash(config),
            }
        )
        if self.tracker.finished_runs(**tags):
            self.on_event({"event": "skip", "name": name})
            return  # resumed: this one is done
        optuna_name = search.optuna_study_name(self.study, architecture, source)
        parent = self.tracker.search_run(self.study.name, architecture, source, optuna_name)
        label = f"retrain seed {seed}" if role == "retrain" else f"cross {target} seed {seed}"
        run_id = self.tracker.start(label, {**tags, "owner": owner_tag()}, parent=parent)
        job_label = f"{name} {source} best config, seed {seed}"
        self.on_event({"event": "retrain", "job": job_label})
        job = TrialJob(
            config=config,
            data=str(self.places.data),
            objective=self.study.objective.metric,
            evaluate_test=True,
            folder=str(self.jobs / f"{optuna_name}/{source}-best-on-{target}-seed-{seed}"),
        )
        outcome = self.execute(job, run_id, job_label, self.slot_environment(slot))
        self.on_event(
            {
                "event": "retrain_done",
                "job": job_label,
                "state": outcome.state,
                "metrics": outcome.metrics,
                "reason": outcome.reason,
            }
        )


def best_value(optuna_study: optuna.Study) -> float | None:
    try:
        return optuna_study.best_value
    except ValueError:
        return None


def planned_jobs(study: Study, retrain: bool = True) -> int:
    """Trials plus re-trainings the study will run in all, for the progress bar."""
    searches = len(study.architectures) * len(study.backends)
    targets = len(study.backends) if study.retrain.cross_backend else 1
    trials = study.budget.trials or 0
    return searches * (trials + (targets * study.retrain.seeds if retrain else 0))


def default_places(
    study: Study, out: Path | None, data: Path, storage: str | None, tracking_uri: str | None
) -> RunPlaces:
    """Where `bench run` works; the output folder is created and must be writable."""
    folder = (out or Path("bench-runs") / study.name).resolve()
    writable_folder(folder)
    return _places(folder, data, storage, tracking_uri)


def existing_places(
    study: Study, out: Path | None, storage: str | None, tracking_uri: str | None
) -> RunPlaces:
    """Where an earlier `bench run` of this study wrote, for `bench report`.

    With both stores named (a shared PostgreSQL and tracking server), any folder will do.
    """
    folder = (out or Path("bench-runs") / study.name).resolve()
    if storage and tracking_uri:
        writable_folder(folder)
    elif not folder.is_dir():
        raise BenchError(
            f"--out: expected the folder of an earlier `bench run --study {study.name}`; "
            f"received {str(folder)!r}, which does not exist"
        )
    return _places(folder, Path(), storage, tracking_uri)


def writable_folder(folder: Path) -> None:
    """Create `folder` and prove it takes files, before any training could fail to save."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise BenchError(
            f"--out: expected a writable folder; received {str(folder)!r} ({error.strerror})"
        ) from None


def _places(folder: Path, data: Path, storage: str | None, tracking_uri: str | None) -> RunPlaces:
    return RunPlaces(
        out=folder,
        data=data,
        storage_url=storage or f"sqlite:///{folder / 'optuna.db'}",
        tracking_uri=tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{folder / 'mlflow.db'}",
    )
