"""What each search found, in rnnbench's terms, for the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import optuna
from optuna.trial import TrialState

from harness.search.studies import existing_searches
from harness.study.schema import Study


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the report shows it (counts, best values, the optimization history)."""

    number: int  # in the order the storage created the search's trials
    state: str  # Optuna's name for it: COMPLETE, PRUNED, FAIL, RUNNING or WAITING
    value: float | None  # the objective, of a COMPLETE trial only
    last_reported: float | None  # its last epoch's reported value: where a pruned trial stopped
    params: dict[str, object] = field(default_factory=dict)
    started: datetime | None = None  # Optuna's clock: when the trial was claimed
    completed: datetime | None = None  # and when it was told its outcome
    epochs: int = 0  # epochs it reported: the resource it used under a multi-fidelity pruner


def read_trials(
    study: Study, storage: optuna.storages.BaseStorage
) -> dict[tuple[str, str], list[TrialRecord]]:
    """Trials per (architecture, backend); a search that never started is absent."""
    return {
        (architecture, backend): [
            _record(trial) for trial in storage.get_all_trials(study_id, deepcopy=False)
        ]
        for architecture, backend, _, study_id in existing_searches(study, storage)
    }


def _record(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    last = trial.last_step
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        value=trial.value if trial.state == TrialState.COMPLETE else None,
        last_reported=None if last is None else trial.intermediate_values[last],
        params=dict(trial.params),
        started=trial.datetime_start,
        completed=trial.datetime_complete,
        epochs=len(trial.intermediate_values),
    )


def read_importances(
    study: Study, storage: optuna.storages.BaseStorage
) -> dict[tuple[str, str], dict[str, float]]:
    """Optuna's parameter importances of each search (fANOVA, seeded: the same store gives the
    same figures), over its COMPLETE trials; a search that cannot have them (fewer than two
    complete trials, or no knob that varied) gets none rather than an error."""
    found = {}
    for architecture, backend, name, _ in existing_searches(study, storage):
        search = optuna.load_study(study_name=name, storage=storage)
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        try:
            found[(architecture, backend)] = optuna.importance.get_param_importances(
                search, evaluator=evaluator
            )
        except (RuntimeError, ValueError):  # too few trials, or nothing varied
            found[(architecture, backend)] = {}
    return found
