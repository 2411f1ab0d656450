"""Re-training: each search's best configuration on fresh seeds, and on the other backend(s).

These runs are the ones the report compares, evaluated on the test split that no trial saw. A
re-training is identified by its configuration (`config_hash`), target backend and seed, so a
re-run skips the ones that finished and a new best configuration gets runs of its own.

A study that searches also re-trains its defaults, on the same seeds, on the baseline backend
only (the backends are proven to compute the same function): what tuning bought then carries
an interval, paired by seed. Where the baseline's best configuration is the defaults, its
re-trainings are those runs and nothing more is run.
"""

from __future__ import annotations

import hashlib
import json
import queue
import random
from typing import TYPE_CHECKING

from harness import search
from harness.ownership import owner_is_dead, owner_tag
from harness.run.events import RetrainDone, RetrainStarted, Skipped
from harness.run.trial import TrialJob

if TYPE_CHECKING:
    from harness.run.context import RunContext
    from harness.run.searches import Search

ORPHANED = "its `bench run` process died (killed, or the machine stopped); re-run on resume"
DEFAULTS = "defaults"  # the source of a defaults re-training, and its role
ROLES = ("retrain", "cross", DEFAULTS)

Job = tuple[str, str, str, dict[str, object], int]  # (architecture, source, target, params, seed)


def config_hash(config: dict[str, object]) -> str:
    """The key of a re-training: the whole run configuration but the seed and the backend, so
    that runs of one configuration on any backend share it and any other change splits them."""
    kept = {k: v for k, v in config.items() if k not in ("seed", "backend")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def role_of(source: str, target: str) -> str:
    """What a re-training is for: the search's best on its own backend, on another, or the
    study's defaults."""
    if source == DEFAULTS:
        return DEFAULTS
    return "retrain" if source == target else "cross"


def seed_major(jobs: list[Job], seed: int | None) -> list[Job]:
    """The re-trainings in the order that lets the verdict tell a framework from the machine.

    Seed-major within each architecture: for each seed, every backend's run once, in an order
    shuffled with a generator seeded by (study seed, architecture, seed). The two sides of a
    pair then run next to each other (or side by side with several worker slots), so a machine
    that drifts or gets busy hits both sides of a pair rather than all of one backend's runs,
    and the shuffle keeps one backend from always going first (warm caches, turbo budget).
    Jobs are (architecture, source, target, params, seed) as `Retraining.run_one` takes them.
    """
    by_block: dict[tuple[str, int], list[Job]] = {}
    for job in jobs:
        by_block.setdefault((job[0], job[4]), []).append(job)
    ordered = []
    for (architecture, run_seed), block in by_block.items():
        block = sorted(block, key=lambda job: (job[1], job[2]))  # a fixed start for the shuffle
        random.Random(f"{seed}/{architecture}/{run_seed}").shuffle(block)
        ordered += block
    architectures = list(dict.fromkeys(job[0] for job in jobs))
    return sorted(ordered, key=lambda job: (architectures.index(job[0]), job[4]))


class Retraining:
    """Runs the re-trainings of finished searches on the worker slots of `pool`."""

    def __init__(self, context: RunContext) -> None:
        self.context = context

    def run_all(self, searches: list[Search]) -> None:
        """Each backend's best config on fresh seeds, and on the other backend(s)."""
        for run_id in self.context.tracker.running_runs(roles=ROLES):
            owner = self.context.tracker.tag(run_id, "owner")
            if owner and owner_is_dead(owner):
                self.context.tracker.finish(run_id, "KILLED", ORPHANED)
        wanted: list[Job] = []
        study = self.context.study
        for opened in searches:
            params = search.best_params(opened.optuna_study)
            if params is None:
                continue  # nothing to re-train: every trial failed or was pruned
            source = opened.backend
            targets = [source]
            if self.context.study.retrain.cross_backend:
                targets += [b for b in self.context.study.backends if b != source]
            for target in targets:
                for seed in range(study.retrain.seeds):
                    wanted.append((opened.architecture, source, target, params, seed))
            if study.searched and source == study.baseline:
                for seed in range(study.retrain.seeds):
                    if params != study.search_defaults():
                        wanted.append((opened.architecture, DEFAULTS, source, {}, seed))
                    else:  # its search chose the defaults: their re-trainings are these runs
                        self.context.on_event(Skipped(f"{opened.name} defaults, seed {seed}"))
        todo: queue.Queue[tuple[Job, int]] = queue.Queue()
        for position, job in enumerate(seed_major(wanted, self.context.study.sampler.seed)):
            todo.put((job, position))

        def work(slot: int) -> None:
            while not self.context.pool.stopping.is_set():
                try:
                    job, position = todo.get_nowait()
                except queue.Empty:
                    return
                self.run_one(*job, slot=slot, position=position)

        self.context.pool.in_parallel(work)

    def run_one(
        self,
        architecture: str,
        source: str,
        target: str,
        params: dict[str, object],
        seed: int,
        slot: int = 0,
        position: int = 0,
    ) -> None:
        """One re-training of `source`'s best params on `target` (or of the study's defaults),
        unless it finished before."""
        role = role_of(source, target)
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
        searched_on = target if role == DEFAULTS else source
        optuna_name = search.optuna_study_name(self.context.study, architecture, searched_on)
        parent = self.context.tracker.search_run(
            self.context.study.name, architecture, searched_on, optuna_name
        )
        label = (
            f"{architecture}/{target} "
            + {
                "retrain": f"retrain seed {seed}",
                "cross": f"cross from {source} seed {seed}",
                DEFAULTS: f"defaults seed {seed}",
            }[role]
        )
        # Where the run sits in the seed-major order, so that a report can show the design held.
        placed = {"owner": owner_tag(), "run_order": str(position)}
        run_id = self.context.tracker.start(label, {**tags, **placed}, parent=parent)
        job_label = (
            f"{name} defaults, seed {seed}"
            if role == DEFAULTS
            else f"{name} {source} best config, seed {seed}"
        )
        self.context.on_event(RetrainStarted(job_label))
        job = TrialJob(
            config=config,
            data=str(self.context.places.data),
            objective=self.context.study.objective.metric,
            evaluate_test=True,
            folder=str(
                self.context.places.out
                / "jobs"
                / optuna_name
                / f"{source}{'' if role == DEFAULTS else '-best'}-on-{target}-seed-{seed}"
            ),
        )
        outcome = self.context.jobs.execute(job, run_id, job_label, slot)
        self.context.on_event(
            RetrainDone(
                job_label, outcome.state, outcome.metrics, outcome.reason, str(job.log_path)
            )
        )
