"""Study files: the shipped ones load and build run configs, and valid files load as written."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_texts import toml

from harness.config import RunConfig
from harness.errors import BenchError
from harness.model_spec import ARCHITECTURES, CAUSAL_ARCHITECTURES
from harness.study.files import STUDIES_DIR
from harness.study.schema import KNOBS, list_studies, load_study

# --- the shipped studies --------------------------------------------------------------------


def test_shipped_studies_are_listed_by_name() -> None:
    studies = list_studies()
    assert [study.name for study in studies] == [
        "imdb",
        "imdb-cpu",
        "imdb-lm",
        "imdb-lm-quick",
        "imdb-quick",
    ]
    assert all(study.description for study in studies)
    assert all(study.path.parent == STUDIES_DIR for study in studies)


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("imdb", "classification"),
        ("imdb-cpu", "classification"),
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
    assert study.backends == (four if name == "imdb-quick" else ["keras", "torch"])
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
