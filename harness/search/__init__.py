"""Every Optuna call of rnnbench lives in this package; the rest of the code calls the
functions re-exported here and names Optuna's types through the aliases in `storage`.

`storage` opens SQLite or PostgreSQL storages (and holds the one private Optuna API rnnbench
needs, `stale_trial_ids`), `studies` the Optuna study of each (architecture, backend), `trials`
how trials are suggested, claimed, closed and found dead, `reporter` the trial process's side
(pruning, heartbeats), `records` what a search found, read back for the report.
"""

from harness.search.records import TrialRecord, read_importances, read_trials
from harness.search.reporter import TrialReporter
from harness.search.storage import (
    GRACE_SECONDS,
    HEARTBEAT_SECONDS,
    OptunaStudy,
    Storage,
    Trial,
    open_storage,
    reading,
    stale_trial_ids,
)
from harness.search.studies import (
    DEFAULTS,
    existing_searches,
    make_pruner,
    make_sampler,
    open_search,
    optuna_study_name,
    stored_definitions,
)
from harness.search.trials import (
    DEAD_REASON,
    FINISHED,
    PACE,
    SECOND_DEFAULTS_REASON,
    SURPLUS_REASON,
    Tally,
    best_params,
    best_value,
    claim_trial,
    fail_dead_trials,
    finish_trial,
    link_run,
    linked_run,
    record_pace,
    requeue,
    seconds_per_epoch,
    suggest,
)

__all__ = [
    "DEAD_REASON",
    "DEFAULTS",
    "FINISHED",
    "PACE",
    "GRACE_SECONDS",
    "HEARTBEAT_SECONDS",
    "SECOND_DEFAULTS_REASON",
    "SURPLUS_REASON",
    "OptunaStudy",
    "Storage",
    "Tally",
    "Trial",
    "TrialRecord",
    "TrialReporter",
    "best_params",
    "best_value",
    "claim_trial",
    "existing_searches",
    "fail_dead_trials",
    "finish_trial",
    "link_run",
    "linked_run",
    "make_pruner",
    "make_sampler",
    "open_search",
    "open_storage",
    "optuna_study_name",
    "read_importances",
    "read_trials",
    "reading",
    "requeue",
    "record_pace",
    "seconds_per_epoch",
    "stale_trial_ids",
    "stored_definitions",
    "suggest",
]
