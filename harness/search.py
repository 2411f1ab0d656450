"""Every Optuna call of rnnbench: storages, samplers, pruners, search spaces and trial reports.

One Optuna study per (architecture, backend), named ``<study>/<arch>/<backend>``, all in one
storage. Both backends of an architecture get the same sampler seed, search space and budget.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings

import optuna
from optuna.trial import TrialState

from harness.errors import BenchError
from harness.study import Knob, Pruner, Study

optuna.logging.set_verbosity(optuna.logging.WARNING)  # rnnbench shows its own progress
# Heartbeats with ask-and-tell are "experimental" in Optuna; they are what finds dead trials.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
DEAD_REASON = "its process died (killed, or the machine stopped); retried with the same params"
HEARTBEAT_SECONDS = 10  # a trial process proves it is alive this often (see `fail_stale_trials`)
GRACE_SECONDS = 60  # silence after which a RUNNING trial is taken for dead


def optuna_study_name(study: Study, architecture: str, backend: str) -> str:
    return f"{study.name}/{architecture}/{backend}"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage (SQLite or PostgreSQL) whose trials send heartbeats."""
    try:
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
            engine_kwargs={"pool_pre_ping": True},
        )
    except Exception as error:  # noqa: BLE001 - SQLAlchemy raises many types for a bad URL
        raise BenchError(
            f"--storage: expected a reachable Optuna RDB URL (sqlite:///file.db, "
            f"postgresql://user@host/db); received {url!r} ({type(error).__name__})"
        ) from None


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
    if not search.trials:
        defaults = {k: v.default for k, v in study.search.items()}
        search.enqueue_trial(defaults, user_attrs={"enqueued": "study defaults"})
    return search


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


def owner_tag() -> str:
    """Which `bench run` process owns a trial: stored on the trial as `owner`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_is_dead(trial: optuna.trial.FrozenTrial) -> bool:
    """True when the trial's owner ran on this machine and its process is gone."""
    host, _, pid = str(trial.user_attrs.get("owner", "")).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's trial: only its heartbeats can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, under another user
    return False


def fail_dead_trials(
    search: optuna.Study, storage: optuna.storages.RDBStorage
) -> list[optuna.trial.FrozenTrial]:
    """Mark RUNNING trials whose process is gone as FAIL, with the reason; returns them.

    Gone means: owned by a process of this machine that no longer exists (found at once), or
    silent for longer than the heartbeat grace period (a trial of any machine). This is
    Optuna's `fail_stale_trials` plus the first test, and it records why.
    """
    study_id = search._study_id
    stale = set(storage._get_stale_trial_ids(study_id))
    dead = []
    for trial in search.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial._trial_id not in stale and not _owner_is_dead(trial):
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
