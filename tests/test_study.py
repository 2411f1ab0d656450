"""Study files: the shipped ones load, broken ones fail with one line that names file and key."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.config import RunConfig
from harness.errors import BenchError
from harness.model_spec import ARCHITECTURES, CAUSAL_ARCHITECTURES
from harness.study.schema import KNOBS, STUDIES_DIR, Study, list_studies, load_study

# A small valid study; each broken case below changes one thing in it.
BASE = """\
[study]
name = "t"
architectures = ["lstm"]
backends = ["torch"]
epochs = 1

[budget]
trials = 2

[objective]
metric = "val_accuracy"
direction = "maximize"

[fixed]
num_words = 1000

[search]
hidden_size = { low = 16, high = 48, step = 16, default = 32 }
learning_rate = { low = 1e-3, high = 1e-2, log = true, default = 3e-3 }
optimizer = { choices = ["rmsprop", "adam"], default = "adam" }
"""
OBJECTIVE = '[objective]\nmetric = "val_accuracy"\ndirection = "maximize"\n'


def _with(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


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
    path.write_text(BASE + "\n[data]\nsubset = 300\nvalidation_fraction = 0.25\n")
    study = load_study(path)
    assert study.path == path
    assert study.default_params() == {
        "num_words": 1000,
        "hidden_size": 32,
        "learning_rate": 3e-3,
        "optimizer": "adam",
    }
    default = study.run_config("torch", "lstm", {})
    assert (default.num_words, default.hidden_size, default.optimizer) == (1000, 32, "adam")
    assert default.dropout_rate == RunConfig.dropout_rate  # in neither table: RunConfig's default
    assert (default.subset, default.validation_fraction, default.epochs) == (300, 0.25, 1)
    tuned = study.run_config("keras", "gru", {"hidden_size": 48, "num_words": 500}, seed=2)
    assert (tuned.hidden_size, tuned.num_words, tuned.learning_rate) == (48, 500, 3e-3)
    assert (tuned.backend, tuned.architecture, tuned.seed) == ("keras", "gru", 2)


def test_int_is_accepted_for_a_float_knob(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(_with("num_words = 1000", "num_words = 1000\ndropout_rate = 0"))
    value = load_study(path).fixed["dropout_rate"]
    assert value == 0.0 and isinstance(value, float)


def test_run_config_rejects_unknown_params() -> None:
    with pytest.raises(BenchError, match="expected one of hidden_size"):
        load_study("imdb-quick").run_config("torch", "lstm", {"colour": "red"})


# --- broken files ---------------------------------------------------------------------------

# (id, file text, dotted key the message must name)
BROKEN = [
    ("unknown table", BASE + "\n[colours]\nred = 1\n", "colours"),
    ("unknown study key", _with("epochs = 1", 'epochs = 1\ncolour = "red"'), "study.colour"),
    ("unknown knob", BASE + "units = { low = 1, high = 2, default = 1 }\n", "search.units"),
    ("unknown fixed knob", _with("num_words = 1000", "words = 1000"), "fixed.words"),
    ("string for int", _with("low = 16", 'low = "abc"'), "search.hidden_size.low"),
    ("float for int", _with("low = 16", "low = 16.5"), "search.hidden_size.low"),
    ("bool for int", _with("epochs = 1", "epochs = true"), "study.epochs"),
    (
        "string for float",
        _with("default = 3e-3", 'default = "fast"'),
        "search.learning_rate.default",
    ),
    ("low > high", _with("low = 16, high = 48", "low = 64, high = 48"), "search.hidden_size"),
    ("empty choices", _with('["rmsprop", "adam"]', "[]"), "search.optimizer.choices"),
    (
        "repeated choice",
        _with('["rmsprop", "adam"]', '["adam", "adam"]'),
        "search.optimizer.choices[1]",
    ),
    (
        "default not a choice",
        _with('default = "adam"', 'default = "sgd"'),
        "search.optimizer.default",
    ),
    ("default out of range", _with("default = 32", "default = 64"), "search.hidden_size.default"),
    (
        "default off the step grid",
        _with("default = 32", "default = 40"),
        "search.hidden_size.default",
    ),
    ("no default", _with(", default = 32", ""), "search.hidden_size.default"),
    ("log with low <= 0", _with("low = 1e-3", "low = 0.0"), "search.learning_rate.low"),
    (
        "step with log",
        _with("log = true,", "log = true, step = 1e-3,"),
        "search.learning_rate.step",
    ),
    (
        "range for a text knob",
        _with('{ choices = ["rmsprop", "adam"],', "{ low = 1, high = 2,"),
        "search.optimizer.low",
    ),
    ("knob not a table", BASE + "num_layers = 2\n", "search.num_layers"),
    (
        "unknown architecture",
        _with('["lstm"]', '["lstm", "transformer"]'),
        "study.architectures[1]",
    ),
    ("repeated architecture", _with('["lstm"]', '["lstm", "lstm"]'), "study.architectures[1]"),
    ("no architectures", _with('["lstm"]', "[]"), "study.architectures"),
    ("unknown backend", _with('["torch"]', '["jax"]'), "study.backends[0]"),
    ("bad study name", _with('name = "t"', 'name = "a b"'), "study.name"),
    ("unknown task", _with("epochs = 1", 'epochs = 1\ntask = "translation"'), "study.task"),
    ("zero epochs", _with("epochs = 1", "epochs = 0"), "study.epochs"),
    ("unknown metric", _with('"val_accuracy"', '"f1"'), "objective.metric"),
    ("direction misfits metric", _with('"maximize"', '"minimize"'), "objective.direction"),
    ("unknown sampler", BASE + '\n[sampler]\ntype = "grid"\n', "sampler.type"),
    ("unknown pruner", BASE + '\n[pruner]\ntype = "hyperband"\n', "pruner.type"),
    ("percentile for median", BASE + "\n[pruner]\npercentile = 10.0\n", "pruner.percentile"),
    ("threshold without bounds", BASE + '\n[pruner]\ntype = "threshold"\n', "pruner"),
    (
        "fixed and searched",
        _with("num_words = 1000", "num_words = 1000\nhidden_size = 32"),
        "fixed.hidden_size",
    ),
    ("RunConfig rejects", _with("num_words = 1000", "dropout_rate = 1.5"), "fixed.dropout_rate"),
    (
        "RunConfig rejects a choice",
        _with('"rmsprop", "adam"', '"sgd", "adam"'),
        "search.optimizer.choices[0]",
    ),
    ("budget without bounds", _with("trials = 2", ""), "budget"),
    ("budget not a table", "budget = 2\n" + _with("[budget]\ntrials = 2", ""), "budget"),
    ("missing table", _with(OBJECTIVE, ""), "objective"),
    ("subset too small", BASE + "\n[data]\nsubset = 1\n", "data.subset"),
    (
        "fraction out of range",
        BASE + "\n[data]\nvalidation_fraction = 1.0\n",
        "data.validation_fraction",
    ),
    ("zero retrain seeds", BASE + "\n[retrain]\nseeds = 0\n", "retrain.seeds"),
    ("quoted odd key", BASE + '\n[data]\n"new\\nline" = 1\n', 'data."new\\nline"'),
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
    path.write_text(_with("low = 16, high = 48", "low = 64, high = 48"))
    assert (
        _error(path)
        == f"{path}: search.hidden_size: expected low <= high; received low=64, high=48"
    )
    path.write_text(_with("low = 16", 'low = "abc"'))
    assert _error(path) == f"{path}: search.hidden_size.low: expected an integer; received 'abc'"
    path.write_text(_with(OBJECTIVE, ""))
    assert _error(path) == f"{path}: objective: expected a [objective] table; received nothing"
    path.write_text(_with("epochs = 1", 'epochs = 1\ncolour = "red"'))
    assert _error(path).startswith(f"{path}: study.colour: unknown key (expected one of name, ")
    assert _error(path).endswith("); received 'red'")


def test_long_values_are_cut(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(_with('name = "t"', f'name = "{"x y" * 100}"'))
    received = _error(path).split("; received ", 1)[1]
    assert received.endswith("...") and len(received) <= 60


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BASE + "epochs = = 2\n")
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


def _toml_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def to_toml(value: object) -> str:
    """A value as TOML; the document is one inline table per top-level key (tomllib can't write)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(to_toml(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_toml_string(k)} = {to_toml(v)}" for k, v in value.items()) + "}"


def _document(doc: dict[str, object]) -> str:
    return "".join(f"{_toml_string(key)} = {to_toml(value)}\n" for key, value in doc.items())


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
    assert tomllib.loads(_document(QUICK)) == QUICK


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_study_loads_or_fails_in_one_line(
    data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    doc = json.loads(json.dumps(QUICK))  # a deep copy
    for _ in range(data.draw(st.integers(1, 3))):
        _mutate(data, doc)
    text = _document(doc)
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
