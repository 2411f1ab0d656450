"""Study identity: a digest of everything in a study definition that changes a result.

Runs made under different definitions must never be mixed in one search, one re-training set or
one report. So every Optuna search and the MLflow experiment remember the definition they were
made under, every run carries its digest, and a `bench run`, `bench worker` or `bench report`
whose study file now says something else stops before any work, naming what changed.

In the digest: the task and dataset, epochs, the data options, the fixed values (execution
options among them), the search space with its defaults, the objective (and its target), the
re-training's test weights (the final epoch's or the best validation epoch's: what a test
figure means) and the verdict's margins: everything that changes what one run computes or how
it is judged; and
`MEASUREMENT`, the version of how the harness itself measures, so that figures measured two ways
are never mixed.
Not in it: the name and description, which architectures and backends take part (each search
is one of them), the trial budget and timeout, the sampler and pruner (they choose which
configurations are tried and which stop early, never what a finished run computes), and the
re-training's seed count and cross-backend switch. Those change how much is run, so changing
them resumes and adds runs. (One exception: a trial budget that starts or stops searching
changes the default test weights, and so the digest, unless [retrain] test_weights is set.)
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from harness.errors import BenchError

if TYPE_CHECKING:
    from harness.search import Storage
    from harness.study.schema import Study
    from harness.tracking import Tracker

DIGEST_KEY = "definition_digest"  # the tag on runs and experiments, the user attr on searches
DEFINITION_KEY = "definition"  # the whole definition as JSON, to say what changed
# How the harness measures; raised whenever a recorded figure changes meaning. 2 (warm
# workers): peak memory from each run's start, not its process's; evaluation in chunks of one
# shape (the last padded), which may move a logit in its last bits on a shape-tuned kernel.
# 3 (paired verdicts): re-trainings run seed-major in a seeded order, recorded per run, and each
# run records how busy its host was (other work's CPU share, steal, load): a store without those
# cannot be judged for contention, so it is refused rather than reported as if it could.
# 4 (the searched answer): a study that searches tests each re-training with the weights of its
# best validation epoch and its trials report their best epoch's objective; re-trainings carry
# `test_weights` in their configuration; the defaults are re-trained beside the best.
MEASUREMENT = 4


def definition(study: Study) -> dict[str, object]:
    """The result-changing part of a study, as plain JSON-able values."""
    return {
        "task": study.task,
        "dataset": study.dataset,
        "epochs": study.epochs,
        "data": study.data.model_dump(),
        "fixed": dict(study.fixed),
        "search": {name: knob.model_dump() for name, knob in study.search.items()},
        "objective": study.objective.model_dump(),
        "test_weights": study.retrain.test_weights,
        "verdict": study.verdict.model_dump(),
        "measurement": MEASUREMENT,
    }


def canonical(value: dict[str, object]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def digest(value: dict[str, object]) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()[:16]


def study_digest(study: Study) -> str:
    return digest(definition(study))


def attributes(study: Study) -> dict[str, str]:
    """What a store keeps of a study's identity: the definition (to name a change) and its
    digest (to compare at a glance)."""
    return {DEFINITION_KEY: canonical(definition(study)), DIGEST_KEY: study_digest(study)}


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def changes(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """Dotted keys whose values differ, as "key: old -> new" (absent values read "unset")."""
    old, new = _flat(before), _flat(after)
    return [
        f"{key}: {old.get(key, 'unset')!r} -> {new.get(key, 'unset')!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key, "unset") != new.get(key, "unset")
    ]


def check(study: Study, stored_json: str | None, where: str) -> None:
    """Raise a one-line error when `where` (a store) was made under another definition.

    A store made before identities were recorded (no stored definition) is accepted as it is.
    """
    if not stored_json:
        return
    current = definition(study)
    # Compared on the parts that count now: a store whose rnnbench also recorded parts that no
    # longer count (the sampler and pruner, once) is still the same study.
    stored = {key: value for key, value in json.loads(stored_json).items() if key in current}
    if digest(stored) == digest(current):
        return
    changed = "; ".join(changes(stored, current)) or "the definition's encoding"
    if stored.get("measurement") != current["measurement"]:
        raise BenchError(
            f"{study.path}: {where} was made by an rnnbench that measures differently "
            f"({changed}); nothing was run or mixed. Use a new --out (new stores) or a new "
            "[study] name; the old stores stay readable by the rnnbench that made them"
        )
    raise BenchError(
        f"{study.path}: the study definition changed since {where} was made ({changed}); "
        "nothing was run or mixed. To keep both results, use a new --out (new stores) or a new "
        "[study] name; to resume the earlier study, restore its values"
    )


def check_identity(study: Study, tracker: Tracker, storage: Storage, record: bool = True) -> None:
    """Stop before any work when the stores were made under another study definition; with
    `record`, write the definition into a new MLflow experiment (new searches record their own).

    The write is read back and checked, whether it succeeded or lost a race: two processes with
    different definitions starting on one empty store at once would otherwise both pass (a
    local store lets the last writer win; a tracking server on PostgreSQL refuses the second).
    """
    from harness import search  # Optuna loads only where stores are opened

    where = f"the MLflow experiment {study.name!r}"
    stored = tracker.experiment_tag(DEFINITION_KEY)
    check(study, stored, where)
    for name, definition in search.stored_definitions(study, storage).items():
        check(study, definition, f"the Optuna search {name!r}")
    if stored is None and record:
        tracker.write_experiment_tags(attributes(study))
        check(study, tracker.experiment_tag(DEFINITION_KEY), where)
