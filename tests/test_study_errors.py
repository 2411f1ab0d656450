"""Broken or mutated study files fail with one line that names file and key, never a traceback."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from study_texts import DROP, knob, toml

from harness.errors import BenchError
from harness.study.files import STUDIES_DIR
from harness.study.schema import Study, load_study


def _error(source: str | Path) -> str:
    with pytest.raises(BenchError) as caught:
        load_study(source)
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and message.isprintable(), message
    return message


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
    ("unknown pruner", toml(pruner={"type": "wilcoxon"}), "pruner.type"),
    (
        "percentile for median",  # no type: the median pruner
        toml(pruner={"type": DROP, "percentile": 10.0}),
        "pruner.percentile",
    ),
    ("threshold without bounds", toml(pruner={"type": "threshold"}), "pruner"),
    (
        "min_resource for median",
        toml(pruner={"type": "median", "min_resource": 1}),
        "pruner.min_resource",
    ),
    (
        "reduction_factor for none",  # conftest's small study has type = "none"
        toml(pruner={"reduction_factor": 3}),
        "pruner.reduction_factor",
    ),
    (
        "max_resource for successive halving",
        toml(pruner={"type": "successive_halving", "max_resource": 1}),
        "pruner.max_resource",
    ),
    (
        "min_early_stopping_rate for hyperband",
        toml(pruner={"type": "hyperband", "min_early_stopping_rate": 0}),
        "pruner.min_early_stopping_rate",
    ),
    (
        "n_startup_trials for hyperband",
        toml(pruner={"type": "hyperband", "n_startup_trials": 2}),
        "pruner.n_startup_trials",
    ),
    (
        "n_warmup_steps for successive halving",
        toml(pruner={"type": "successive_halving", "n_warmup_steps": 1}),
        "pruner.n_warmup_steps",
    ),
    (
        "percentile for hyperband",
        toml(pruner={"type": "hyperband", "percentile": 10.0}),
        "pruner.percentile",
    ),
    (
        "reduction_factor of 1",
        toml(pruner={"type": "hyperband", "reduction_factor": 1}),
        "pruner.reduction_factor",
    ),
    (
        "min_resource of 0",
        toml(pruner={"type": "successive_halving", "min_resource": 0}),
        "pruner.min_resource",
    ),
    (
        "min_resource > max_resource",
        toml(
            study={"epochs": 5},
            pruner={"type": "hyperband", "min_resource": 3, "max_resource": 2},
        ),
        "pruner.min_resource",
    ),
    (
        "max_resource > epochs",
        toml(study={"epochs": 3}, pruner={"type": "hyperband", "max_resource": 4}),
        "pruner.max_resource",
    ),
    (
        "min_resource > epochs",  # conftest's small study runs 1 epoch
        toml(pruner={"type": "successive_halving", "min_resource": 2}),
        "pruner.min_resource",
    ),
    (
        "first rung past the last epoch",
        toml(
            study={"epochs": 5},
            pruner={"type": "successive_halving", "min_early_stopping_rate": 2},
        ),
        "pruner.min_early_stopping_rate",
    ),
    ("zero study minutes", toml(budget={"study_minutes": 0}), "budget.study_minutes"),
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


def test_multi_fidelity_errors_read_as_documented(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml(pruner={"type": "median", "min_resource": 1}))
    assert _error(path) == (
        f"{path}: pruner.min_resource: expected only with type = 'hyperband' or "
        "'successive_halving'; received 1"
    )
    path.write_text(toml(pruner={"type": "hyperband", "n_startup_trials": 2}))
    assert _error(path) == (
        f"{path}: pruner.n_startup_trials: expected no n_startup_trials with type = 'hyperband' "
        "(min_resource and reduction_factor decide when it prunes); received 2"
    )
    path.write_text(toml(study={"epochs": 3}, pruner={"type": "hyperband", "max_resource": 4}))
    assert _error(path) == f"{path}: pruner.max_resource: expected <= study.epochs (3); received 4"
    path.write_text(
        toml(
            study={"epochs": 5}, pruner={"type": "successive_halving", "min_early_stopping_rate": 2}
        )
    )
    assert _error(path) == (
        f"{path}: pruner.min_early_stopping_rate: expected min_resource x "
        "reduction_factor^min_early_stopping_rate <= study.epochs (5), or no trial is ever "
        "judged; received 2 (1 x 3^2 = 9 epochs)"
    )
    path.write_text(toml(budget={"trials": DROP}))
    assert _error(path) == (
        f"{path}: budget: expected trials, timeout_minutes or study_minutes (any of them); "
        "received none"
    )


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
        "unknown study 'no-such-study': expected a study file or one of imdb, imdb-cpu, "
        "imdb-cpu-search, imdb-gpu-quick, imdb-lm, imdb-lm-quick, imdb-quick "
        f"(in {STUDIES_DIR})"
    )


# --- any mutation of a real study: a Study or one line, never a traceback ---------------------

QUICK = tomllib.loads((STUDIES_DIR / "imdb-quick.toml").read_text())
SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    # No subnormals: a backend test run earlier in this process may have set the CPU to flush
    # them to zero (the harness's default), and hypothesis then refuses to generate them.
    st.floats(allow_nan=False, allow_subnormal=False),
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
