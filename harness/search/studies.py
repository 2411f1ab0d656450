"""The Optuna studies of a rnnbench study: one per (architecture, backend), named
``<study>/<arch>/<backend>``, all in one storage, with the same sampler seed, space and budget."""

from __future__ import annotations

from collections.abc import Iterator

import optuna

from harness import identity
from harness.study.schema import Pruner, Study

DEFAULTS = {"enqueued": "study defaults"}  # the user attribute of the defaults' queued trial


def optuna_study_name(study: Study, architecture: str, backend: str) -> str:
    return f"{study.name}/{architecture}/{backend}"


def make_sampler(study: Study) -> optuna.samplers.BaseSampler:
    if study.sampler.type == "random":
        return optuna.samplers.RandomSampler(seed=study.sampler.seed)
    return optuna.samplers.TPESampler(seed=study.sampler.seed)


def make_pruner(pruner: Pruner, epochs: int) -> optuna.pruners.BasePruner:
    """The study file's pruner; `epochs` (the study's) is Hyperband's default max_resource.

    Both the search (whose sampler reads a Hyperband pruner's brackets) and each trial process
    build it, from the same table and epochs. Trials report each epoch as step 1, 2, ..., so
    a resource of n is n epochs.
    """
    match pruner.type:
        case "hyperband":
            return optuna.pruners.HyperbandPruner(
                min_resource=pruner.min_resource,
                max_resource=pruner.max_resource or epochs,
                reduction_factor=pruner.reduction_factor,
            )
        case "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner(
                min_resource=pruner.min_resource,
                reduction_factor=pruner.reduction_factor,
                min_early_stopping_rate=pruner.min_early_stopping_rate,
            )
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
        pruner=make_pruner(study.pruner, study.epochs),
        direction=study.objective.direction,
        load_if_exists=True,
    )
    if identity.DEFINITION_KEY not in search.user_attrs:
        for key, value in identity.attributes(study).items():
            search.set_user_attr(key, value)
    # Read back: a process with another definition may have created this search meanwhile.
    identity.check(
        study, search.user_attrs.get(identity.DEFINITION_KEY), f"the Optuna search {name!r}"
    )
    if not search.trials:
        defaults = {k: v.default for k, v in study.search.items()}
        # Workers starting together may all get here: only the first one's copy is queued.
        search.enqueue_trial(defaults, user_attrs=DEFAULTS, skip_if_exists=True)
    return search


def existing_searches(
    study: Study, storage: optuna.storages.BaseStorage
) -> Iterator[tuple[str, str, str, int]]:
    """(architecture, backend, search name, storage id) of each search of `study` that exists."""
    found = set(optuna.get_all_study_names(storage))
    for architecture in study.architectures:
        for backend in study.backends:
            name = optuna_study_name(study, architecture, backend)
            if name in found:
                yield architecture, backend, name, storage.get_study_id_from_name(name)


def stored_definitions(study: Study, storage: optuna.storages.BaseStorage) -> dict[str, str | None]:
    """The definition each existing search of `study` was made under (None: not recorded)."""
    return {
        name: storage.get_study_user_attrs(study_id).get(identity.DEFINITION_KEY)
        for _, _, name, study_id in existing_searches(study, storage)
    }
