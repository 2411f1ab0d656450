"""The trial process's side of a search: report each epoch, ask whether to prune, beat."""

from __future__ import annotations

import os
import threading
import time

import optuna

from harness.search.storage import HEARTBEAT_SECONDS, open_storage
from harness.search.studies import make_pruner
from harness.study.schema import Pruner


class TrialReporter:
    """Used inside a trial process: report each epoch's objective and ask whether to prune.

    A daemon thread records a heartbeat every few seconds while the process lives, so that a
    trial whose process was killed is found (`fail_dead_trials`) and retried.
    """

    def __init__(
        self, storage_url: str, study_name: str, trial_number: int, pruner: Pruner
    ) -> None:
        self.storage = open_storage(storage_url)
        # Storages keep no pruner: it must be the study file's, passed along by the parent.
        search = optuna.load_study(
            study_name=study_name, storage=self.storage, pruner=make_pruner(pruner)
        )
        study_id = self.storage.get_study_id_from_name(study_name)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)
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
