"""Study files: the shipped ones load, broken ones fail with one line that names file and key."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import tomli_w
from conftest import study_document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.config import RunConfig
from harness.errors import BenchError
from harness.model_spec import ARCHITECTURES, CAUSAL_ARCHITECTURES
from harness.study.files import STUDIES_DIR
from harness.study.schema import KNOBS, Study, list_studies, load_study

# conftest's small study with a text knob added; each broken case below changes one thing in it.
OPTIMIZER = {"choices": ["rmsprop", "adam"], "default": "adam"}
DROP = object()  # a key to leave out of a table


def document(**tables: object) -> dict[str, object]:
    """conftest's study document with `tables` changed: a dict updates that table's keys (DROP
    leaves one out), None leaves the table out, anything else replaces it."""
    changes = {"search": {"optimizer": OPTIMIZER}, **tables}
    if isinstance(tables.get("search"), dict):
        changes["search"] = {"optimizer": OPTIMIZER, **tables["search"]}
    plain = {
        name: value for name, value in changes.items() if value is None or isinstance(value, dict)
    }
    doc: dict[str, object] = study_document(**plain)  # type: ignore[arg-type]
    for name, value in changes.items():
        if name not in plain:
            doc[name] = value
        elif isinstance(value, dict):
            doc[name] = {key: item for key, item in doc[name].items() if item is not DROP}
    return doc


def toml(**tables: object) -> str:
    """The TOML text of `document(**tables)`."""
    return tomli_w.dumps(document(**tables))


def knob(name: str, **changes: object) -> dict[str, object]:
    """A searched knob of the base study with some keys changed (DROP leaves one out)."""
    entry = {**document()["search"][name], **changes}  # type: ignore[index]
    return {key: value for key, value in entry.items() if value is not DROP}


def _error(source: str | Path) -> str:
    with pytest.raises(BenchError) as caught:
        load_study(source)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and message.isprintable(), message
    return message


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
    assert study.backends == ["keras", "torch"]
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
    assert study.data.subset == 1000 and study.epochs == 2 and study.budget.trials == 2
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


# --- broken files ---------------------------------------------------------------------------

# (id, file text, dotted key the message must name)
BROKEN = [
    ("unknown table", toml(colours={"red": 1}), "colours"),
    ("unknown study key", toml(study={"colour": "red"}), "study.colour"),
    (
        "unknown knob",
        toml(search={"units": {"low": 1, "high": 2, "default": 1}}),
        "search.units",
    ),
    ("unknown fixed knob", toml(fixed={"num_words": DROP, "words": 1000}), "fixed.words"),
    (
        "string for int",
        toml(search={"hidden_size": knob("hidden_size", low="abc")}),
        "search.hidden_size.low",
    ),
    (
        "float for int",
        toml(search={"hidden_size": knob("hidden_size", low=4.5)}),
        "search.hidden_size.low",
    ),
    ("bool for int", toml(study={"epochs": True}), "study.epochs"),
    (
        "string for float",
        toml(search={"learning_rate": knob("learning_rate", default="fast")}),
        "search.learning_rate.default",
    ),
    (
        "low > high",
        toml(search={"hidden_size": knob("hidden_size", low=64, high=48)}),
        "search.hidden_size",
    ),
    (
        "empty choices",
        toml(search={"optimizer": knob("optimizer", choices=[])}),
        "search.optimizer.choices",
    ),
    (
        "repeated choice",
        toml(search={"optimizer": knob("optimizer", choices=["adam", "adam"])}),
        "search.optimizer.choices[1]",
    ),
    (
        "default not a choice",
        toml(search={"optimizer": knob("optimizer", default="sgd")}),
        "search.optimizer.default",
    ),
    (
        "default out of range",
        toml(search={"hidden_size": knob("hidden_size", default=64)}),
        "search.hidden_size.default",
    ),
    (
        "default off the step grid",
        toml(search={"hidden_size": knob("hidden_size", default=10)}),
        "search.hidden_size.default",
    ),
    (
        "no default",
        toml(search={"hidden_size": knob("hidden_size", default=DROP)}),
        "search.hidden_size.default",
    ),
    (
        "log with low <= 0",
        toml(search={"learning_rate": knob("learning_rate", low=0.0)}),
        "search.learning_rate.low",
    ),
    (
        "step with log",
        toml(search={"learning_rate": knob("learning_rate", step=1e-3)}),
        "search.learning_rate.step",
    ),
    (
        "range for a text knob",
        toml(search={"optimizer": {"low": 1, "high": 2, "default": "adam"}}),
        "search.optimizer.low",
    ),
    ("knob not a table", toml(search={"num_layers": 2}), "search.num_layers"),
    (
        "unknown architecture",
        toml(study={"architectures": ["gru", "transformer"]}),
        "study.architectures[1]",
    ),
    (
        "repeated architecture",
        toml(study={"architectures": ["gru", "gru"]}),
        "study.architectures[1]",
    ),
    ("no architectures", toml(study={"architectures": []}), "study.architectures"),
    ("unknown backend", toml(study={"backends": ["jax"]}), "study.backends[0]"),
    ("bad study name", toml(study={"name": "a b"}), "study.name"),
    ("unknown task", toml(study={"task": "translation"}), "study.task"),
    ("zero epochs", toml(study={"epochs": 0}), "study.epochs"),
    ("unknown metric", toml(objective={"metric": "f1"}), "objective.metric"),
    ("direction misfits metric", toml(objective={"direction": "minimize"}), "objective.direction"),
    ("unknown sampler", toml(sampler={"type": "grid"}), "sampler.type"),
    ("unknown pruner", toml(pruner={"type": "hyperband"}), "pruner.type"),
    (
        "percentile for median",  # no type: the median pruner
        toml(pruner={"type": DROP, "percentile": 10.0}),
        "pruner.percentile",
    ),
    ("threshold without bounds", toml(pruner={"type": "threshold"}), "pruner"),
    ("fixed and searched", toml(fixed={"hidden_size": 8}), "fixed.hidden_size"),
    ("RunConfig rejects", toml(fixed={"dropout_rate": 1.5}), "fixed.dropout_rate"),
    (
        "RunConfig rejects a choice",
        toml(search={"optimizer": knob("optimizer", choices=["sgd", "adam"])}),
        "search.optimizer.choices[0]",
    ),
    ("budget without bounds", toml(budget={"trials": DROP}), "budget"),
    ("budget not a table", toml(budget=2), "budget"),
    ("missing table", toml(objective=None), "objective"),
    ("subset too small", toml(data={"subset": 1}), "data.subset"),
    ("fraction out of range", toml(data={"validation_fraction": 1.0}), "data.validation_fraction"),
    ("zero retrain seeds", toml(retrain={"seeds": 0}), "retrain.seeds"),
    ("quoted odd key", toml(data={"new\nline": 1}), 'data."new\\nline"'),
]


@pytest.mark.parametrize(("text", "key"), [pytest.param(t, k, id=i) for i, t, k in BROKEN])
def test_broken_file_fails_with_one_line(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    message = _error(str(path))
    assert message.startswith(f"{path}: {key}: "), message
    assert "expected" in message and "; received " in message, message


def test_key_errors_read_as_documented(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml(search={"hidden_size": knob("hidden_size", low=64, high=48)}))
    assert (
        _error(path)
        == f"{path}: search.hidden_size: expected low <= high; received low=64, high=48"
    )
    path.write_text(toml(search={"hidden_size": knob("hidden_size", low="abc")}))
    assert _error(path) == f"{path}: search.hidden_size.low: expected an integer; received 'abc'"
    path.write_text(toml(objective=None))
    assert _error(path) == f"{path}: objective: expected a [objective] table; received nothing"
    path.write_text(toml(study={"colour": "red"}))
    assert _error(path).startswith(f"{path}: study.colour: unknown key (expected one of name, ")
    assert _error(path).endswith("); received 'red'")


def test_long_values_are_cut(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml(study={"name": "x y" * 100}))
    received = _error(path).split("; received ", 1)[1]
    assert received.endswith("...") and len(received) <= 60


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml() + "epochs = = 2\n")
    assert _error(str(path)).startswith(f"{path}: not valid TOML: ")


def test_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe[study]")
    assert _error(str(path)).startswith(f"{path}: not valid TOML: expected UTF-8 text")


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_unreadable_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "missing.toml"
    if kind == "folder":
        path.mkdir()
    message = _error(str(path))
    assert message.startswith(f"{path}: expected a readable study file; received "), message


def test_unknown_study_name() -> None:
    message = _error("no-such-study")
    assert message == (
        "unknown study 'no-such-study': expected a study file or one of imdb, imdb-cpu, imdb-lm, "
        f"imdb-lm-quick, imdb-quick "
        f"(in {STUDIES_DIR})"
    )


# --- any mutation of a real study: a Study or one line, never a traceback ---------------------

QUICK = tomllib.loads((STUDIES_DIR / "imdb-quick.toml").read_text())
SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.booleans(),
    # Values that pass one check and fail a later one reach deeper into the validation.
    st.sampled_from([0, 1, 2, 64, 0.5, 1e-3, "lstm", "adam", "torch", "tpe", "median", ""]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _mutate(data: st.DataObject, doc: dict[str, object]) -> None:
    """Delete, replace or add one entry at a random depth of `doc`."""
    container: dict | list = doc
    while True:
        keys = list(container.keys() if isinstance(container, dict) else range(len(container)))
        deeper = [k for k in keys if isinstance(container[k], dict | list)]  # type: ignore[index]
        if not deeper or data.draw(st.integers(0, 3)) == 0:  # mostly deeper: more checks reached
            break
        container = container[data.draw(st.sampled_from(deeper))]  # type: ignore[index]
    action = data.draw(st.sampled_from(["delete", "set", "add"] if keys else ["add"]))
    if action == "add":
        if isinstance(container, dict):
            container[data.draw(st.text(min_size=1, max_size=8))] = data.draw(VALUES)
        else:
            container.append(data.draw(VALUES))
        return
    key = data.draw(st.sampled_from(keys))
    if action == "delete":
        del container[key]  # type: ignore[arg-type]
    else:
        container[key] = data.draw(VALUES)  # type: ignore[index]


def test_serialiser_round_trips() -> None:
    assert tomllib.loads(tomli_w.dumps(QUICK)) == QUICK


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_study_loads_or_fails_in_one_line(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    doc = json.loads(json.dumps(QUICK))  # a deep copy
    for _ in range(data.draw(st.integers(1, 3))):
        _mutate(data, doc)
    text = tomli_w.dumps(doc)
    assert tomllib.loads(text) == doc
    path = tmp_path_factory.getbasetemp() / "mutated.toml"
    path.write_text(text, encoding="utf-8")
    try:
        study = load_study(str(path))
    except BenchError as error:
        message = str(error)
        assert len(message.splitlines()) == 1 and message.isprintable(), message
        assert message.startswith(f"{path}: "), message
    else:
        assert isinstance(study, Study)
        study.run_config(study.backends[0], study.architectures[0], {})
