"""The searches of a study: every worker slot takes trials until every budget is used.

Each (architecture, backend) has its own Optuna search (`harness.search`) and MLflow parent run;
every trial runs in its own process inside a nested MLflow run (`harness.run.tracked`). The
storage alone decides who runs what (`search.claim_trial`), so the workers of several processes
and machines need no coordinator, and a dead one loses nothing: its trials are found, closed and
queued again (`search.fail_dead_trials`).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness import search
from harness.ownership import owner_tag
from harness.run.deadline import Deadline, pace
from harness.run.devices import describe_slot
from harness.run.events import DeadTrial, SearchOpened, TrialDone, TrialStarted
from harness.run.tracked import INTERRUPTED
from harness.run.trial import FAIL, TrialJob
from harness.stores import child_url, sqlite_lock

if TYPE_CHECKING:
    from harness.run.context import RunContext

IDLE_SECONDS = 3.0  # how often an idle worker looks for dead trials and freed budget


@dataclass
class Search:
    """One (architecture, backend) search as this process's workers share it."""

    architecture: str
    backend: str
    optuna_study: search.OptunaStudy
    parent_run: str  # its MLflow run; trials are nested under it
    closed: bool = False
    started: float | None = None  # when this process began its first trial (time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.optuna_study.study_name


class Searches:
    """Runs every search of a study to its budget on the worker slots of `pool`."""

    def __init__(self, context: RunContext) -> None:
        self.context = context
        # SQLite cannot lock the row of a queued trial, so two slots or processes could both
        # take it; PostgreSQL can (between machines, the storage alone keeps claims apart).
        self.claiming = threading.Lock()
        self.claiming_file = sqlite_lock(context.places.storage_url)
        self.deadline = Deadline.of(context.study, context.pool.workers)
        self.started = time.monotonic()  # `[budget] study_minutes` counts from `run_all`

    def run_all(self) -> list[Search]:
        """Every search of the study to its budget, on all worker slots; `bench worker`."""
        self.started = time.monotonic()
        searches = [
            self.open(architecture, backend)
            for architecture in self.context.study.architectures
            for backend in self.context.study.backends
        ]
        try:
            self.context.pool.in_parallel(lambda slot: self.work_on(searches, slot))
        except KeyboardInterrupt:
            for opened in searches:
                if not opened.closed:
                    self.context.tracker.finish(opened.parent_run, "KILLED", INTERRUPTED)
            raise
        return searches

    def open(self, architecture: str, backend: str) -> Search:
        study = self.context.study
        optuna_name = search.optuna_study_name(study, architecture, backend)
        optuna_study = search.open_search(study, architecture, backend, self.context.storage)
        parent = self.context.tracker.search_run(study.name, architecture, backend, optuna_name)
        opened = Search(architecture, backend, optuna_study, parent)
        self.recover_dead_trials(opened)
        done = search.Tally.of(optuna_study).finished
        self.context.on_event(SearchOpened(optuna_name, study.budget.trials, done))
        return opened

    def recover_dead_trials(self, opened: Search) -> None:
        """Close the runs of trials whose process died, and queue their params again."""
        with self.claiming, self.claiming_file:  # one retry per dead trial, also on SQLite
            dead_trials = search.fail_dead_trials(opened.optuna_study, self.context.storage)
            for dead in dead_trials:
                search.requeue(opened.optuna_study, dead)
        for dead in dead_trials:
            run_id = search.linked_run(dead)
            if run_id:
                self.context.tracker.set_tags(run_id, trial_state=FAIL)
                self.context.tracker.finish(run_id, "KILLED", search.DEAD_REASON)
            self.context.on_event(DeadTrial(opened.name, dead.number))

    def out_of_time(self, opened: Search) -> bool:
        """`[budget] timeout_minutes` is per search: its clock starts at the search's first trial
        here, so searches queued behind others on few worker slots still get their turn."""
        minutes = self.context.study.budget.timeout_minutes
        if not minutes or opened.started is None:
            return False
        return time.monotonic() > opened.started + 60 * minutes

    def past_deadline(self, opened: Search, searches: list[Search], tally: search.Tally) -> bool:
        """`[budget] study_minutes`: whether another trial of `opened` would run into the
        later searches' shares or the re-trainings' reserve (`harness.run.deadline`)."""
        if self.deadline is None:
            return False
        paces = [pace(search.seconds_per_epoch(each.optuna_study)) for each in searches]
        tried = tally.finished + tally.running + tally.failed
        elapsed = time.monotonic() - self.started
        return not self.deadline.may_start(searches.index(opened), elapsed, paces, tried)

    def work_on(self, searches: list[Search], slot: int) -> None:
        """One worker slot: run trials of the first search with room in its budget, until all
        are done. A search whose budget is taken by running trials (of any worker, any machine)
        is waited for, as one of them may die and need its place taken again."""
        budget = self.context.study.budget.trials or sys.maxsize
        while not self.context.pool.stopping.is_set():
            ran = False
            for opened in searches:
                if opened.closed:
                    continue
                self.recover_dead_trials(opened)
                tally = search.Tally.of(opened.optuna_study)
                # A search that keeps failing stops instead of looping forever.
                given_up = tally.failed >= max(budget, 3)
                if (
                    tally.finished >= budget
                    or self.out_of_time(opened)
                    or given_up
                    or self.past_deadline(opened, searches, tally)
                ):
                    self.close(opened)
                    continue
                with self.claiming, self.claiming_file:
                    trial = search.claim_trial(opened.optuna_study, budget)
                if trial is not None:
                    with opened.lock:
                        opened.started = opened.started or time.monotonic()
                    self.run_trial(opened, trial, slot)
                    ran = True
                    break
            if all(opened.closed for opened in searches):
                return
            if not ran:
                self.context.pool.stopping.wait(IDLE_SECONDS)

    def close(self, opened: Search) -> None:
        with opened.lock:
            if not opened.closed:
                opened.closed = True
                self.context.tracker.finish(opened.parent_run, "FINISHED")

    def run_trial(self, opened: Search, trial: search.Trial, slot: int) -> None:
        """One trial: its MLflow run, its process, then its outcome told to Optuna."""
        name = opened.name
        params = search.suggest(trial, self.context.study.search)
        environment = self.context.pool.environment(slot)
        tags = {
            "study": self.context.study.name,
            "role": "trial",
            "architecture": opened.architecture,
            "backend": opened.backend,
            "optuna_study": name,
            "optuna_trial": str(trial.number),
            "seed": "0",
            "owner": owner_tag(),
            "worker_slot": f"{slot} ({describe_slot(environment)})",
        }
        run_name = f"{opened.architecture}/{opened.backend} trial {trial.number}"
        run_id = self.context.tracker.start(run_name, tags, parent=opened.parent_run)
        search.link_run(trial, run_id, owner_tag())
        label = f"{name} trial {trial.number}"
        self.context.on_event(TrialStarted(label, params))
        config = self.context.study.run_config(opened.backend, opened.architecture, params, seed=0)
        job = TrialJob(
            config=config.as_params(),
            data=str(self.context.places.data),
            objective=self.context.study.objective.metric,
            evaluate_test=False,
            folder=str(self.context.places.out / "jobs" / f"{name}/trial-{trial.number}"),
            storage_url=child_url(self.context.places.storage_url),  # its password: environment
            optuna_study=name,
            trial_number=trial.number,
            pruner=self.context.study.pruner.model_dump(exclude_unset=True),
        )
        outcome = self.context.jobs.execute(job, run_id, label, slot)
        state, value, reason = outcome.state, outcome.value, outcome.reason
        search.record_pace(trial, [epoch["epoch_seconds"] for epoch in outcome.epochs])
        search.finish_trial(opened.optuna_study, trial, state, value, reason)
        best = search.best_value(opened.optuna_study)
        log = str(job.log_path)
        self.context.on_event(TrialDone(label, name, state, value, best, reason, log))
