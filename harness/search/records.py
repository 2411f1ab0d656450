"""What each search found, in rnnbench's terms, for the report."""

from __future__ import annotations

from dataclasses import dataclass

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
    )
