"""`bench run`: from a study file to searched, re-trained and tracked models, resumably.

For every architecture, each backend gets its own Optuna search (`harness.search`), every trial
runs in its own process (`harness.trial`) inside an MLflow run (`harness.tracking`); then the
best configuration of each backend is re-trained on fresh seeds and on the other backend, and
evaluated on the test split. Re-running the same command skips whatever already finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from harness import search
from harness.errors import BenchError
from harness.study import Study
from harness.tracking import Tracker
from harness.trial import COMPLETE, FAIL, PRUNED, Outcome, TrialJob

EventHandler = Callable[[dict], None]
STATUS = {COMPLETE: "FINISHED", PRUNED: "FINISHED", FAIL: "FAILED"}
TELL = {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED, FAIL: TrialState.FAIL}
INTERRUPTED = "interrupted by the user (Ctrl-C); re-run the same command to resume"


@dataclass(frozen=True)
class RunPlaces:
    """Where a study run reads and writes."""

    out: Path  # logs and job files; the default stores live here too
    data: Path  # the resolved dataset source
    storage_url: str  # Optuna
    tracking_uri: str  # MLflow


def config_hash(params: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def run_job(job: TrialJob, log_path: Path, on_event: EventHandler) -> Outcome:
    """Run one job in a child process, relay its events, and always return an outcome."""
    job_path = job.write()
    job.outcome_path.unlink(missing_ok=True)
    with log_path.open("w") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "harness.trial", str(job_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
        )
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("{"):
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a framework printed something brace-shaped; not ours
                on_event(event)
        returncode = child.wait()
    if job.outcome_path.exists():
        return Outcome.read(job.outcome_path)
    return Outcome(FAIL, reason=f"{death_reason(returncode)}; log: {log_path}")


def death_reason(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"trial process killed by {name}{hint}"
    return f"trial process exited with code {returncode} before reporting"


class StudyRunner:
    def __init__(self, study: Study, places: RunPlaces, on_event: EventHandler) -> None:
        self.study = study
        self.places = places
        self.on_event = on_event
        self.storage = search.open_storage(places.storage_url)
        self.tracker = Tracker(places.tracking_uri, study.name, places.out / "artifacts")
        self.jobs = places.out / "jobs"
        self.jobs.mkdir(parents=True, exist_ok=True)

    def run(self) -> None:
        for architecture in self.study.architectures:
            best: dict[str, dict[str, object]] = {}
            for backend in self.study.backends:
                best_params = self.search(architecture, backend)
                if best_params is not None:
                    best[backend] = best_params
            self.retrain(architecture, best)

    # -- search ---------------------------------------------------------------------------
    def search(self, architecture: str, backend: str) -> dict[str, object] | None:
        """Run one (architecture, backend) search to its budget; returns the best params."""
        study, budget = self.study, self.study.budget
        optuna_name = search.optuna_study_name(study, architecture, backend)
        optuna_study = search.open_search(study, architecture, backend, self.storage)
        parent = self.tracker.search_run(study.name, architecture, backend, optuna_name)
        for dead in search.fail_dead_trials(optuna_study, self.storage):
            self.close_dead_trial_run(dead)
            optuna_study.enqueue_trial(dead.params, user_attrs={"retry_of": dead.number})
        minutes = budget.timeout_minutes
        deadline = time.monotonic() + 60 * minutes if minutes else None
        trials = budget.trials or sys.maxsize
        self.on_event(
            {
                "event": "search",
                "name": optuna_name,
                "budget": budget.trials,
                "done": search.count(optuna_study, *search.FINISHED),
            }
        )
        while search.count(optuna_study, *search.FINISHED) < trials:
            if deadline is not None and time.monotonic() > deadline:
                break
            if search.count(optuna_study, TrialState.FAIL) >= max(trials, 3):
                break  # a search that keeps failing stops instead of looping forever
            try:
                self.run_trial(optuna_study, architecture, backend, parent)
            except KeyboardInterrupt:
                self.tracker.finish(parent, "KILLED", INTERRUPTED)
                raise
        self.tracker.finish(parent, "FINISHED")
        completed = search.count(optuna_study, TrialState.COMPLETE)
        return dict(optuna_study.best_trial.params) if completed else None

    def run_trial(
        self, optuna_study: optuna.Study, architecture: str, backend: str, parent: str
    ) -> None:
        trial = optuna_study.ask()
        params = search.suggest(trial, self.study.search)
        tags = {
            "role": "trial",
            "architecture": architecture,
            "backend": backend,
            "optuna_study": optuna_study.study_name,
            "optuna_trial": str(trial.number),
            "seed": "0",
        }
        run_id = self.tracker.start(f"trial {trial.number}", self.tagged(tags), parent=parent)
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("owner", search.owner_tag())
        self.on_event(
            {
                "event": "trial",
                "name": optuna_study.study_name,
                "trial": trial.number,
                "params": params,
            }
        )
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
        try:
            outcome = self.execute(job, run_id)
        except KeyboardInterrupt:
            trial.set_user_attr("failure_reason", INTERRUPTED)
            optuna_study.tell(trial, state=TrialState.FAIL)
            raise
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
                "name": optuna_study.study_name,
                "trial": trial.number,
                "state": outcome.state,
                "value": outcome.value,
                "best": best_value(optuna_study),
                "reason": outcome.reason,
            }
        )

    def execute(self, job: TrialJob, run_id: str) -> Outcome:
        """Run a job's process and turn what it reports into its MLflow run, then close it."""
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
            elif event["event"] == "epoch":
                metrics = {k: v for k, v in event.items() if k not in ("event", "epoch", "epochs")}
                self.tracker.log_metrics(run_id, metrics, step=event["epoch"])
            self.on_event(event)

        Path(job.folder).mkdir(parents=True, exist_ok=True)
        try:
            outcome = run_job(job, Path(job.folder) / "process.log", on_event)
        except KeyboardInterrupt:
            self.tracker.set_tags(run_id, trial_state=FAIL)
            self.tracker.finish(run_id, "KILLED", INTERRUPTED)
            raise
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
    def retrain(self, architecture: str, best: dict[str, dict[str, object]]) -> None:
        """Each backend's best config on fresh seeds, and on the other backend(s)."""
        for source, params in best.items():
            targets = [source]
            if self.study.retrain.cross_backend:
                targets += [b for b in self.study.backends if b != source]
            for target in targets:
                for seed in range(self.study.retrain.seeds):
                    self.retrain_one(architecture, source, target, params, seed)

    def retrain_one(
        self, architecture: str, source: str, target: str, params: dict[str, object], seed: int
    ) -> None:
        role = "retrain" if source == target else "cross"
        name = f"{self.study.name}/{architecture}/{target}"
        tags = self.tagged(
            {
                "role": role,
                "architecture": architecture,
                "backend": target,
                "config_from": source,
                "seed": str(seed),
                "config_hash": config_hash(params),
            }
        )
        if self.tracker.finished_runs(**tags):
            self.on_event({"event": "skip", "name": name})
            return  # resumed: this one is done
        optuna_name = search.optuna_study_name(self.study, architecture, source)
        parent = self.tracker.search_run(self.study.name, architecture, source, optuna_name)
        label = f"retrain seed {seed}" if role == "retrain" else f"cross {target} seed {seed}"
        run_id = self.tracker.start(label, tags, parent=parent)
        self.on_event(
            {"event": "retrain", "name": name, "label": f"{source} best config, seed {seed}"}
        )
        job = TrialJob(
            config=self.study.run_config(target, architecture, params, seed=seed).as_params(),
            data=str(self.places.data),
            objective=self.study.objective.metric,
            evaluate_test=True,
            folder=str(self.jobs / f"{optuna_name}/{source}-best-on-{target}-seed-{seed}"),
        )
        outcome = self.execute(job, run_id)
        self.on_event(
            {
                "event": "retrain_done",
                "name": name,
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


def planned_jobs(study: Study) -> int:
    """Trials plus re-trainings the study will run in all, for the progress bar."""
    searches = len(study.architectures) * len(study.backends)
    targets = len(study.backends) if study.retrain.cross_backend else 1
    trials = study.budget.trials or 0
    return searches * (trials + targets * study.retrain.seeds)


def default_places(
    study: Study, out: Path | None, data: Path, storage: str | None, tracking_uri: str | None
) -> RunPlaces:
    """Where `bench run` works; the output folder is created and must be writable."""
    folder = (out or Path("bench-runs") / study.name).resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        raise BenchError(
            f"--out: expected a writable folder; received {str(folder)!r} ({error.strerror})"
        ) from None
    return _places(folder, data, storage, tracking_uri)


def existing_places(
    study: Study, out: Path | None, storage: str | None, tracking_uri: str | None
) -> RunPlaces:
    """Where an earlier `bench run` of this study wrote, for `bench report`."""
    folder = (out or Path("bench-runs") / study.name).resolve()
    if not folder.is_dir():
        raise BenchError(
            f"--out: expected the folder of an earlier `bench run --study {study.name}`; "
            f"received {str(folder)!r}, which does not exist"
        )
    return _places(folder, Path(), storage, tracking_uri)


def _places(folder: Path, data: Path, storage: str | None, tracking_uri: str | None) -> RunPlaces:
    return RunPlaces(
        out=folder,
        data=data,
        storage_url=storage or f"sqlite:///{folder / 'optuna.db'}",
        tracking_uri=tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{folder / 'mlflow.db'}",
    )
