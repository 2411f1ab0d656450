"""Study files: the shipped ones load and build run configs, and valid files load as written."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from helpers import SHIPPED_STUDIES
from study_texts import DROP, toml

from harness.config import RunConfig
from harness.errors import BenchError
from harness.model_spec import ARCHITECTURES, CAUSAL_ARCHITECTURES
from harness.search import TrialReporter, claim_trial, make_pruner, open_search, open_storage
from harness.study.files import STUDIES_DIR
from harness.study.schema import KNOBS, Pruner, list_studies, load_study

# --- the shipped studies --------------------------------------------------------------------


def test_shipped_studies_are_listed_by_name() -> None:
    studies = list_studies()
    assert [study.name for study in studies] == SHIPPED_STUDIES
    assert all(study.description for study in studies)
    assert all(study.path.parent == STUDIES_DIR for study in studies)


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("imdb", "classification"),
        ("imdb-cpu", "classification"),
        ("imdb-cpu-search", "classification"),
        ("imdb-gpu-quick", "classification"),
        ("imdb-quick", "classification"),
        ("imdb-lm", "language_model"),
        ("imdb-lm-quick", "language_model"),
    ],
)
def test_shipped_study_builds_valid_run_configs(name: str, task: str) -> None:
    study = load_study(name)
    expected = ARCHITECTURES if task == "classification" else CAUSAL_ARCHITECTURES
    assert study.task == task and study.architectures == list(expected)
    four = ["keras", "torch", "keras-jax", "keras-torch"]
    gpu = ["torch", "keras-jax", "keras-torch"]  # the GPU machine has no TensorFlow
    backends = {"imdb-quick": four, "imdb-gpu-quick": gpu}.get(name, ["keras", "torch"])
    assert study.backends == backends
    assert set(study.default_params()) <= set(KNOBS)
    for backend in study.backends:
        for architecture in study.architectures:
            config = study.run_config(backend, architecture, {}, seed=1)
            assert isinstance(config, RunConfig)
            assert (config.backend, config.architecture, config.seed) == (backend, architecture, 1)
            assert config.task == task
            assert config.epochs == study.epochs
            assert config.subset == study.data.subset
            assert config.validation_fraction == study.data.validation_fraction


def test_full_study_matches_its_brief() -> None:
    study = load_study("imdb")
    assert (study.epochs, study.budget.trials, study.budget.timeout_minutes) == (5, 30, 120)
    assert (study.objective.metric, study.objective.direction) == ("val_accuracy", "maximize")
    assert (study.sampler.type, study.sampler.seed) == ("tpe", 42)
    assert (study.pruner.type, study.pruner.n_startup_trials, study.pruner.n_warmup_steps) == (
        "median",
        5,
        1,
    )
    assert study.data.subset is None
    assert (study.retrain.seeds, study.retrain.cross_backend) == (5, True)
    assert study.fixed == {"num_words": 10000}
    execution = {"precision", "jit_compile", "cudnn", "flush_denormal"}  # how fast, not what
    assert set(study.search) == set(KNOBS) - {"num_words"} - execution
    assert study.search["learning_rate"].log
    assert study.search["sequence_length"].choices == [100, 200, 400]


def test_quick_study_is_small() -> None:
    study = load_study("imdb-quick")
    assert study.data.subset == 1000 and study.epochs == 2 and study.budget.trials == 1
    # One trial: every search keeps the default, so the re-trains are equal work without cross runs.
    assert study.baseline == "torch" and not study.retrain.cross_backend
    assert study.fixed == {"num_words": 5000, "embedding_dim": 16, "num_layers": 1}
    assert study.default_params()["optimizer"] == "adam"


def test_load_by_name_and_by_path_agree() -> None:
    by_name = load_study("imdb-quick")
    by_path = load_study(STUDIES_DIR / "imdb-quick.toml")
    by_text = load_study(str(STUDIES_DIR / "imdb-quick.toml"))
    assert by_name == by_path == by_text


def test_params_override_fixed_values_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(toml(data={"subset": 300, "validation_fraction": 0.25}))
    study = load_study(path)
    assert study.path == path
    assert study.default_params() == {
        "num_words": 1000,
        "embedding_dim": 8,
        "sequence_length": 32,
        "hidden_size": 8,
        "learning_rate": 3e-3,
        "optimizer": "adam",
    }
    default = study.run_config("torch", "lstm", {})
    assert (default.num_words, default.hidden_size, default.optimizer) == (1000, 8, "adam")
    assert default.dropout_rate == RunConfig.dropout_rate  # in neither table: RunConfig's default
    assert (default.subset, default.validation_fraction, default.epochs) == (300, 0.25, 1)
    tuned = study.run_config("keras", "gru", {"hidden_size": 48, "num_words": 500}, seed=2)
    assert (tuned.hidden_size, tuned.num_words, tuned.learning_rate) == (48, 500, 3e-3)
    assert (tuned.backend, tuned.architecture, tuned.seed) == ("keras", "gru", 2)


def test_int_is_accepted_for_a_float_knob(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(toml(fixed={"dropout_rate": 0}))
    value = load_study(path).fixed["dropout_rate"]
    assert value == 0.0 and isinstance(value, float)


def test_run_config_rejects_unknown_params() -> None:
    with pytest.raises(BenchError, match="expected one of hidden_size"):
        load_study("imdb-quick").run_config("torch", "lstm", {"colour": "red"})


# --- pruners --------------------------------------------------------------------------------


def _pruner_study(tmp_path: Path, epochs: int, **pruner: object):
    path = tmp_path / "t.toml"
    path.write_text(toml(study={"epochs": epochs}, pruner=pruner))
    return load_study(path)


@pytest.mark.parametrize(
    ("table", "kind", "settings"),
    [
        ({"type": "median"}, optuna.pruners.MedianPruner, {"_n_startup_trials": 2}),
        (
            {"type": "percentile", "percentile": 10.0, "n_warmup_steps": 1},
            optuna.pruners.PercentilePruner,
            {"_percentile": 10.0, "_n_warmup_steps": 1},
        ),
        (
            {"type": "threshold", "lower": 0.6},
            optuna.pruners.ThresholdPruner,
            {"_lower": 0.6, "_upper": float("inf")},
        ),
        # Hyperband's max_resource defaults to the study's 9 epochs, not Optuna's "auto".
        (
            {"type": "hyperband"},
            optuna.pruners.HyperbandPruner,
            {"_min_resource": 1, "_max_resource": 9, "_reduction_factor": 3},
        ),
        (
            {"type": "hyperband", "min_resource": 2, "max_resource": 8, "reduction_factor": 2},
            optuna.pruners.HyperbandPruner,
            {"_min_resource": 2, "_max_resource": 8, "_reduction_factor": 2},
        ),
        # Successive halving: our reduction_factor default (3), not Optuna's (4).
        (
            {"type": "successive_halving"},
            optuna.pruners.SuccessiveHalvingPruner,
            {"_min_resource": 1, "_reduction_factor": 3, "_min_early_stopping_rate": 0},
        ),
        (
            {"type": "successive_halving", "min_resource": 2, "min_early_stopping_rate": 1},
            optuna.pruners.SuccessiveHalvingPruner,
            {"_min_resource": 2, "_reduction_factor": 3, "_min_early_stopping_rate": 1},
        ),
        ({"type": "none"}, optuna.pruners.NopPruner, {}),
    ],
)
def test_make_pruner_builds_the_tables_pruner(
    tmp_path: Path, table: dict[str, object], kind: type, settings: dict[str, object]
) -> None:
    study = _pruner_study(tmp_path, 9, **table)
    pruner = make_pruner(study.pruner, study.epochs)
    assert type(pruner) is kind
    assert {name: getattr(pruner, name) for name in settings} == settings


def test_a_trial_process_builds_the_pruner_its_search_has(tmp_path: Path) -> None:
    """The parent sends the [pruner] table as set in the file (`exclude_unset`); the child adds
    the run's epochs, so a defaulted max_resource is the study's epochs on both sides."""
    study = _pruner_study(tmp_path, 9, type="hyperband", reduction_factor=3)
    storage = open_storage(f"sqlite:///{tmp_path / 'optuna.db'}")
    search = open_search(study, "gru", "torch", storage)
    trial = claim_trial(search, budget=5)
    sent = json.loads(json.dumps(study.pruner.model_dump(exclude_unset=True)))  # job.json
    assert "max_resource" not in sent
    epochs = study.run_config("torch", "gru", {}).epochs
    reporter = TrialReporter(
        f"sqlite:///{tmp_path / 'optuna.db'}",
        search.study_name,
        trial.number,
        Pruner(**sent),
        epochs,
    )
    try:
        child, parent = reporter.trial.study.pruner, search.pruner
        assert type(child) is type(parent) is optuna.pruners.HyperbandPruner
        assert vars(child) == vars(parent) and child._max_resource == 9
    finally:
        reporter.close()


@pytest.mark.parametrize(
    ("table", "rungs"),
    [
        ({"type": "successive_halving"}, [1, 3, 9]),  # min_resource x 3^k epochs
        ({"type": "successive_halving", "min_resource": 2, "reduction_factor": 2}, [2, 4, 8]),
        ({"type": "successive_halving", "min_early_stopping_rate": 1}, [3, 9]),
    ],
)
def test_the_resource_is_epochs(tmp_path: Path, table: dict[str, object], rungs: list[int]) -> None:
    """Trials report epoch 1, 2, ... as their steps, so a rung of n resources is judged after
    n epochs: trials that each beat the last are judged at every rung (Optuna records each as
    `completed_rung_<k>`), and a worse one is pruned at the first."""
    study = _pruner_study(tmp_path, 9, **table)
    search = optuna.create_study(
        direction="maximize", pruner=make_pruner(study.pruner, study.epochs)
    )
    for number in range(3):
        trial = search.ask()
        judged: dict[str, int] = {}  # rung -> the epoch it was judged at
        for epoch in range(1, study.epochs + 1):
            trial.report(0.5 + 0.1 * number, epoch)
            assert not trial.should_prune()
            for key in search.trials[-1].system_attrs:
                if key.startswith("completed_rung_"):
                    judged.setdefault(key, epoch)
        search.tell(trial, 0.5 + 0.1 * number)
        assert sorted(judged.values()) == rungs
    worse = search.ask()
    for epoch in range(1, rungs[0] + 1):
        worse.report(0.1, epoch)
        assert worse.should_prune() == (epoch == rungs[0])


def test_study_minutes_alone_is_a_budget_and_the_plan_says_so(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(toml(budget={"trials": DROP, "study_minutes": 45}))
    study = load_study(path)
    assert (study.budget.trials, study.budget.study_minutes) == (None, 45.0)
    plan = "\n".join(study.plan())
    assert "each stopping at its share of the total budget" in plan
    assert "total budget: 45 minutes for the whole study, re-trainings included" in plan
    assert "total budget" not in "\n".join(load_study("imdb-quick").plan())
