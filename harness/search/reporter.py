"""The trial process's side of a search: report each epoch, ask whether to prune, beat."""

from __future__ import annotations

import functools
import os
import threading

import optuna

from harness.search.storage import HEARTBEAT_SECONDS, open_storage
from harness.search.studies import make_pruner
from harness.study.schema import Pruner
from harness.study.tables import MULTI_FIDELITY


@functools.lru_cache(maxsize=4)
def process_storage(url: str) -> optuna.storages.RDBStorage:
    """One storage per URL in a trial process: a warm worker runs many trials, and opening a
    storage (engine, schema check) costs more than a short trial's reports."""
    return open_storage(url)


class TrialReporter:
    """Used inside a trial process: report each epoch's objective and ask whether to prune.

    A daemon thread records a heartbeat every few seconds until `close` (the trial ended) or
    the process dies, so that a trial whose process was killed is found (`fail_dead_trials`)
    and retried.
    """

    def __init__(
        self,
        storage_url: str,
        study_name: str,
        trial_number: int,
        pruner: Pruner,
        epochs: int,
    ) -> None:
        self.storage = process_storage(storage_url)
        # A multi-fidelity pruner's rung can fall on the last epoch (epochs count from 1): a
        # trial that trained every epoch is complete, not pruned, so it is not asked then.
        self.last_asked = epochs - 1 if pruner.type in MULTI_FIDELITY else epochs
        # Storages keep no pruner: it must be the study file's, passed along by the parent with
        # the study's epochs (a Hyperband pruner's default max_resource).
        search = optuna.load_study(
            study_name=study_name, storage=self.storage, pruner=make_pruner(pruner, epochs)
        )
        study_id = self.storage.get_study_id_from_name(study_name)
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(study_id, trial_number)
        self.trial = optuna.Trial(search, trial_id)
        self.trial_id = trial_id
        self.storage.record_heartbeat(trial_id)
        self.ended = threading.Event()
        self.beating = threading.Thread(target=self._beat, name="optuna-heartbeat", daemon=True)
        self.beating.start()

    def close(self) -> None:
        """The trial ended: no more heartbeats (a warm worker goes on to other trials)."""
        self.ended.set()
        self.beating.join()

    def _beat(self) -> None:
        parent = os.getppid()
        while not self.ended.wait(HEARTBEAT_SECONDS):
            if os.getppid() != parent:  # `bench run` died: this orphan's work would be lost
                os._exit(1)
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the grace period covers it
                continue

    def report(self, value: float, epoch: int) -> bool:
        """True when the pruner says this trial should stop."""
        self.trial.report(value, epoch)
        return epoch <= self.last_asked and self.trial.should_prune()
