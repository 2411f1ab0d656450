"""Re-training: each search's best configuration on fresh seeds, and on the other backend(s).

These runs are the ones the report compares, evaluated on the test split that no trial saw. A
re-training is identified by its configuration (`config_hash`), target backend and seed, so a
re-run skips the ones that finished and a new best configuration gets runs of its own.
"""

from __future__ import annotations

import hashlib
import json
import queue
from typing import TYPE_CHECKING

from harness import search
from harness.ownership import owner_is_dead, owner_tag
from harness.run.events import RetrainDone, RetrainStarted, Skipped
from harness.run.trial import TrialJob

if TYPE_CHECKING:
    from harness.run.context import RunContext
    from harness.run.searches import Search

ORPHANED = "its `bench run` process died (killed, or the machine stopped); re-run on resume"


def config_hash(config: dict[str, object]) -> str:
    """The key of a re-training: the whole run configuration but the seed and the backend, so
    that runs of one configuration on any backend share it and any other change splits them."""
    kept = {k: v for k, v in config.items() if k not in ("seed", "backend")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


class Retraining:
    """Runs the re-trainings of finished searches on the worker slots of `pool`."""

    def __init__(self, context: RunContext) -> None:
        self.context = context

    def run_all(self, searches: list[Search]) -> None:
        """Each backend's best config on fresh seeds, and on the other backend(s)."""
        for run_id in self.context.tracker.running_runs(roles=("retrain", "cross")):
            owner = self.context.tracker.tag(run_id, "owner")
            if owner and owner_is_dead(owner):
                self.context.tracker.finish(run_id, "KILLED", ORPHANED)
        todo: queue.Queue[tuple[str, str, str, dict[str, object], int]] = queue.Queue()
        for opened in searches:
            params = search.best_params(opened.optuna_study)
            if params is None:
                continue  # nothing to re-train: every trial failed or was pruned
            source = opened.backend
            targets = [source]
            if self.context.study.retrain.cross_backend:
                targets += [b for b in self.context.study.backends if b != source]
            for target in targets:
                for seed in range(self.context.study.retrain.seeds):
                    todo.put((opened.architecture, source, target, params, seed))

        def work(slot: int) -> None:
            while not self.context.pool.stopping.is_set():
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                self.run_one(*job, slot=slot)

        self.context.pool.in_parallel(work)

    def run_one(
        self,
        architecture: str,
        source: str,
        target: str,
        params: dict[str, object],
        seed: int,
        slot: int = 0,
    ) -> None:
        """One re-training of `source`'s best params on `target`, unless it finished before."""
        role = "retrain" if source == target else "cross"
        name = f"{self.context.study.name}/{architecture}/{target}"
        config = self.context.study.run_config(target, architecture, params, seed=seed).as_params()
        tags = {
            "study": self.context.study.name,
            "role": role,
            "architecture": architecture,
            "backend": target,
            "config_from": source,
            "seed": str(seed),
            "config_hash": config_hash(config),
        }
        if self.context.tracker.finished_runs(**tags):
            self.context.on_event(Skipped(name))
            return  # resumed: this one is done
        optuna_name = search.optuna_study_name(self.context.study, architecture, source)
        parent = self.context.tracker.search_run(
            self.context.study.name, architecture, source, optuna_name
        )
        label = f"{architecture}/{target} " + (
            f"retrain seed {seed}" if role == "retrain" else f"cross from {source} seed {seed}"
        )
        run_id = self.context.tracker.start(label, {**tags, "owner": owner_tag()}, parent=parent)
        job_label = f"{name} {source} best config, seed {seed}"
        self.context.on_event(RetrainStarted(job_label))
        job = TrialJob(
            config=config,
            data=str(self.context.places.data),
            objective=self.context.study.objective.metric,
            evaluate_test=True,
            folder=str(
                self.context.places.out
                / "jobs"
                / f"{optuna_name}/{source}-best-on-{target}-seed-{seed}"
            ),
        )
        outcome = self.context.jobs.execute(job, run_id, job_label, slot)
        self.context.on_event(
            RetrainDone(
                job_label, outcome.state, outcome.metrics, outcome.reason, str(job.log_path)
            )
        )
