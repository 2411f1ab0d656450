"""Trials: what a search suggests, which worker gets a trial, how it ends, which died."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from harness.ownership import owner_is_dead
from harness.search.storage import stale_trial_ids
from harness.search.studies import DEFAULTS
from harness.study.schema import Knob

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
DEAD_REASON = "its process died (killed, or the machine stopped); retried with the same params"
SURPLUS_REASON = "surplus: other workers filled the trial budget at the same moment; not run"
SECOND_DEFAULTS_REASON = "surplus: another worker queued the study defaults at the same moment"


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


def best_value(search: optuna.Study) -> float | None:
    """The best objective value so far; None before the first COMPLETE trial."""
    try:
        return search.best_value
    except ValueError:
        return None


def best_params(search: optuna.Study) -> dict[str, object] | None:
    """The params of the best COMPLETE trial; None when every trial failed or was pruned."""
    if not search.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    return dict(search.best_trial.params)


def linked_run(trial: optuna.trial.FrozenTrial) -> str | None:
    """The MLflow run `link_run` recorded on a trial, if any."""
    return trial.user_attrs.get("mlflow_run_id")


def link_run(trial: optuna.Trial, mlflow_run_id: str, owner: str) -> None:
    """Record the trial's MLflow run and the process that runs it (see `fail_dead_trials`)."""
    trial.set_user_attr("mlflow_run_id", mlflow_run_id)
    trial.set_user_attr("owner", owner)


def finish_trial(
    search: optuna.Study, trial: optuna.Trial, state: str, value: float | None, reason: str | None
) -> None:
    """Close a trial with its outcome: `state` is COMPLETE, PRUNED or FAIL (Optuna's names);
    only a COMPLETE trial's value counts."""
    if reason:
        trial.set_user_attr("failure_reason" if state == "FAIL" else "stop_reason", reason)
    search.tell(trial, value if state == "COMPLETE" else None, state=TrialState[state])


def requeue(search: optuna.Study, dead: optuna.trial.FrozenTrial) -> None:
    """Queue a dead trial's params again, pointing back at it."""
    search.enqueue_trial(dead.params, user_attrs={"retry_of": dead.number})


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


PACE = "seconds_per_epoch"  # the user attribute `record_pace` writes


def record_pace(trial: optuna.Trial, epoch_seconds: list[float]) -> None:
    """Keep a trial's training seconds per epoch, the first epoch left out where there are
    more (it carries graph building and compilation), for `seconds_per_epoch`."""
    steady = epoch_seconds[1:] or epoch_seconds
    if steady:
        trial.set_user_attr(PACE, sum(steady) / len(steady))


def seconds_per_epoch(search: optuna.Study) -> list[float]:
    """Training seconds per epoch of each finished trial (`record_pace`), for `[budget]
    study_minutes` (`harness.run.deadline`).

    Not the trial's wall time over its epochs: a trial that was a fresh worker's first job
    carries the framework's import and the data's loading, which would make a pace several
    times too slow and reserve the whole budget for re-trainings. A trial that recorded no pace
    (an older rnnbench) counts with its wall time per epoch.
    """
    paces = []
    for trial in search.get_trials(deepcopy=False, states=FINISHED):
        epochs = len(trial.intermediate_values)
        if PACE in trial.user_attrs:
            paces.append(float(trial.user_attrs[PACE]))
        elif epochs and trial.datetime_start and trial.datetime_complete:
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
            paces.append(seconds / epochs)
    return paces


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
    study_id = storage.get_study_id_from_name(search.study_name)
    stale = set(stale_trial_ids(storage, study_id))
    dead = []
    for trial in search.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        owner = str(trial.user_attrs.get("owner", ""))
        if trial_id not in stale and not owner_is_dead(owner):
            continue
        try:
            storage.set_trial_user_attr(trial_id, "failure_reason", DEAD_REASON)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker recorded it first
        dead.append(trial)
    return dead
