"""Every Optuna call of rnnbench: storages, samplers, pruners, search spaces and trial reports.

One Optuna study per (architecture, backend), named ``<study>/<arch>/<backend>``, all in one
storage. Both backends of an architecture get the same sampler seed, search space and budget.
"""

from __future__ import annotations

import os
import random
import threading
import time
import warnings
from dataclasses import dataclass

import optuna
import sqlalchemy.exc
from optuna.trial import TrialState

from harness import identity
from harness.errors import BenchError
from harness.run.ownership import owner_is_dead
from harness.stores import engine_options, sqlalchemy_url, sqlite_lock
from harness.study.schema import Knob, Pruner, Study

optuna.logging.set_verbosity(optuna.logging.WARNING)  # rnnbench shows its own progress
# Heartbeats with ask-and-tell are "experimental" in Optuna; they are what finds dead trials.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
DEAD_REASON = "its process died (killed, or the machine stopped); retried with the same params"
SURPLUS_REASON = "surplus: other workers filled the trial budget at the same moment; not run"
SECOND_DEFAULTS_REASON = "surplus: another worker queued the study defaults at the same moment"
DEFAULTS = {"enqueued": "study defaults"}  # the user attribute of the defaults' queued trial
HEARTBEAT_SECONDS = 10  # a trial process proves it is alive this often (see `fail_stale_trials`)
GRACE_SECONDS = 60  # silence after which a RUNNING trial is taken for dead


def optuna_study_name(study: Study, architecture: str, backend: str) -> str:
    return f"{study.name}/{architecture}/{backend}"


def open_storage(url: str, attempts: int = 8) -> optuna.storages.RDBStorage:
    """An RDB storage (SQLite or PostgreSQL) whose trials send heartbeats.

    Workers that start together on an empty database all try to create Optuna's tables. On
    PostgreSQL the losers of that race get an IntegrityError or ProgrammingError and simply try
    again; on SQLite they take turns.
    """
    for attempt in range(1, attempts + 1):
        try:
            with sqlite_lock(url):
                return optuna.storages.RDBStorage(
                    sqlalchemy_url(url),
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS,
                    engine_kwargs=engine_options(url),
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as error:
            if attempt == attempts:
                raise _unreachable(url, error) from None
            time.sleep(random.uniform(0.2, 1.0) * attempt)
        except Exception as error:  # noqa: BLE001 - SQLAlchemy raises many types for a bad URL
            raise _unreachable(url, error) from None
    raise AssertionError("unreachable")


def _unreachable(url: str, error: Exception) -> BenchError:
    return BenchError(
        f"--storage: expected a reachable Optuna RDB URL (sqlite:///file.db, "
        f"postgresql://user@host/db); received {url!r} ({type(error).__name__})"
    )


def make_sampler(study: Study) -> optuna.samplers.BaseSampler:
    if study.sampler.type == "random":
        return optuna.samplers.RandomSampler(seed=study.sampler.seed)
    return optuna.samplers.TPESampler(seed=study.sampler.seed)


def make_pruner(pruner: Pruner) -> optuna.pruners.BasePruner:
    match pruner.type:
        case "median":
            return optuna.pruners.MedianPruner(pruner.n_startup_trials, pruner.n_warmup_steps)
        case "percentile":
            return optuna.pruners.PercentilePruner(
                pruner.percentile, pruner.n_startup_trials, pruner.n_warmup_steps
            )
        case "threshold":
            return optuna.pruners.ThresholdPruner(
                lower=pruner.lower, upper=pruner.upper, n_warmup_steps=pruner.n_warmup_steps
            )
    return optuna.pruners.NopPruner()


def open_search(
    study: Study, architecture: str, backend: str, storage: optuna.storages.BaseStorage
) -> optuna.Study:
    """Create the search, or load it to resume. A new search first tries the file's defaults."""
    name = optuna_study_name(study, architecture, backend)
    search = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(study),
        pruner=make_pruner(study.pruner),
        direction=study.objective.direction,
        load_if_exists=True,
    )
    if identity.DEFINITION_KEY not in search.user_attrs:
        for key, value in identity.attributes(study).items():
            search.set_user_attr(key, value)
    # Read back: a process with another definition may have created this search meanwhile.
    identity.check(
        study, search.user_attrs.get(identity.DEFINITION_KEY), f"the Optuna search {name!r}"
    )
    if not search.trials:
        defaults = {k: v.default for k, v in study.search.items()}
        # Workers starting together may all get here: only the first one's copy is queued.
        search.enqueue_trial(defaults, user_attrs=DEFAULTS, skip_if_exists=True)
    return search


def stored_definitions(study: Study, storage: optuna.storages.BaseStorage) -> dict[str, str | None]:
    """The definition each existing search of `study` was made under (None: not recorded)."""
    found = set(optuna.get_all_study_names(storage))
    stored: dict[str, str | None] = {}
    for architecture in study.architectures:
        for backend in study.backends:
            name = optuna_study_name(study, architecture, backend)
            if name in found:
                attrs = storage.get_study_user_attrs(storage.get_study_id_from_name(name))
                stored[name] = attrs.get(identity.DEFINITION_KEY)
    return stored


def suggest(trial: optuna.Trial, space: dict[str, Knob]) -> dict[str, object]:
    params: dict[str, object] = {}
    for name, knob in space.items():
        if knob.choices is not None:
            params[name] = trial.suggest_categorical(name, knob.choices)
        elif isinstance(knob.default, int) and not isinstance(knob.default, bool):
            params[name] = trial.suggest_int(
                name, knob.low, knob.high, step=knob.step or 1, log=knob.log
            )
        else:
            params[name] = trial.suggest_float(
                name, knob.low, knob.high, step=knob.step, log=knob.log
            )
    return params


def count(search: optuna.Study, *states: TrialState) -> int:
    return len(search.get_trials(deepcopy=False, states=states))


@dataclass(frozen=True)
class Tally:
    """Where a search stands, as every worker of every machine sees it in the storage."""

    finished: int  # COMPLETE or PRUNED: what the budget counts
    running: int
    failed: int  # FAIL, surplus trials excepted (they never ran)

    @classmethod
    def of(cls, search: optuna.Study) -> Tally:
        trials = search.get_trials(deepcopy=False)
        return cls(
            finished=sum(t.state in FINISHED for t in trials),
            running=sum(t.state == TrialState.RUNNING for t in trials),
            failed=sum(t.state == TrialState.FAIL and not _is_surplus(t) for t in trials),
        )


def _is_surplus(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.user_attrs.get("failure_reason") in (SURPLUS_REASON, SECOND_DEFAULTS_REASON)


def _is_defaults(trial: optuna.trial.FrozenTrial | optuna.Trial) -> bool:
    return trial.user_attrs.get("enqueued") == DEFAULTS["enqueued"]


def claim_trial(search: optuna.Study, budget: int) -> optuna.Trial | None:
    """A new trial, or None when finished and running trials already fill the budget.

    Workers on several machines may ask at the same moment. Trials are numbered in the order
    the storage created them, so after asking, a trial that finds the whole budget among
    lower-numbered live trials steps back: it is closed as FAIL with the surplus reason and never
    runs. No lock is needed, and a budget of 9 gives exactly 9 finished trials.
    """
    tally = Tally.of(search)
    if tally.finished + tally.running >= budget:
        return None
    trial = search.ask()
    trials = search.get_trials(deepcopy=False)
    live = (*FINISHED, TrialState.RUNNING)
    ahead = sum(t.number < trial.number and t.state in live for t in trials)
    reason = None
    if ahead >= budget:
        reason = SURPLUS_REASON
    elif _is_defaults(trial) and any(t.number < trial.number and _is_defaults(t) for t in trials):
        reason = SECOND_DEFAULTS_REASON  # workers that start together each queue the defaults
    if reason is not None:
        trial.set_user_attr("failure_reason", reason)
        search.tell(trial, state=TrialState.FAIL)
        return None
    return trial


def fail_dead_trials(
    search: optuna.Study, storage: optuna.storages.RDBStorage
) -> list[optuna.trial.FrozenTrial]:
    """Mark RUNNING trials whose process is gone as FAIL, with the reason; returns them.

    Gone means: owned by a process of this machine that no longer exists (found at once), or
    silent for longer than the heartbeat grace period (a trial of any machine). This is
    Optuna's `fail_stale_trials` plus the first test, and it records why. When several workers
    find the same dead trial, exactly one of them gets it back (and retries it).
    """
    study_id = search._study_id
    stale = set(storage._get_stale_trial_ids(study_id))
    dead = []
    for trial in search.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get("owner", ""))
        if trial._trial_id not in stale and not owner_is_dead(owner):
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "failure_reason", DEAD_REASON)
            storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker recorded it first
        dead.append(trial)
    return dead


class TrialReporter:
    """Used inside a trial process: report each epoch's objective and ask whether to prune.

    A daemon thread records a heartbeat every few seconds while the process lives, so that a
    trial whose process was killed is found (`fail_stale_trials`) and retried.
    """

    def __init__(self, storage_url: str, study_name: str, trial_id: int, pruner: Pruner) -> None:
        self.storage = open_storage(storage_url)
        # Storages keep no pruner: it must be the study file's, passed along by the parent.
        search = optuna.load_study(
            study_name=study_name, storage=self.storage, pruner=make_pruner(pruner)
        )
        self.trial = optuna.Trial(search, trial_id)
        self.trial_id = trial_id
        self.storage.record_heartbeat(trial_id)
        threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        parent = os.getppid()
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            if os.getppid() != parent:  # `bench run` died: this orphan's work would be lost
                os._exit(1)
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the grace period covers it
                continue

    def report(self, value: float, epoch: int) -> bool:
        """True when the pruner says this trial should stop."""
        self.trial.report(value, epoch)
        return self.trial.should_prune()
