"""The knobs of a study: the RunConfig fields its [fixed] table sets and its [search] table tunes.

A knob's type comes from RunConfig and what values it takes from `RunConfig.check_field`, so a
study file is held to exactly the limits `bench train` and every run are held to.
"""

from __future__ import annotations

import math
import typing
from typing import Any

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from harness.config import FieldError, RunConfig
from harness.study.errors import problem, show
from harness.study.tables import Table

# The RunConfig fields a study may fix or search; the last four are execution options
# (harness.execution): how fast a model trains, not what it learns.
KNOB_NAMES = (
    "hidden_size",
    "num_layers",
    "learning_rate",
    "dropout_rate",
    "sequence_length",
    "batch_size",
    "embedding_dim",
    "num_words",
    "optimizer",
    "precision",
    "jit_compile",
    "cudnn",
    "flush_denormal",
)
# Each knob and the type its values must have, as RunConfig declares it.
KNOBS: dict[str, type] = {name: typing.get_type_hints(RunConfig)[name] for name in KNOB_NAMES}
_KIND = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}

Value = bool | int | float | str  # bool first: pydantic must not read true as 1


class Knob(Table):
    """One searched knob: `choices`, or a `low`..`high` range; `default` is the first trial's."""

    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = None
    log: bool = False
    choices: list[Value] | None = None
    default: Value

    @model_validator(mode="after")
    def _shape(self) -> Knob:
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise problem((), "expected either choices or low/high", "both")
            if not self.choices:
                raise problem(("choices",), "expected at least one choice", "[]")
            for index, choice in enumerate(self.choices):
                if choice in self.choices[:index]:
                    raise problem(
                        ("choices", index), "expected each choice once", f"{choice!r} again"
                    )
            if self.default not in self.choices:
                listed = ", ".join(str(choice) for choice in self.choices)
                raise problem(("default",), f"expected one of {listed}", show(self.default))
            return self
        if self.low is None and self.high is None:
            raise problem((), "expected choices, or low and high", "neither")
        for key in ("low", "high"):
            if getattr(self, key) is None:
                raise problem((key,), "expected a value (low and high go together)", "nothing")
        assert (
            self.low is not None and self.high is not None and isinstance(self.default, int | float)
        )
        if self.low > self.high:
            raise problem((), "expected low <= high", f"low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise problem(("low",), "expected > 0 with log = true", show(self.low))
        if self.step is not None:
            if self.log:
                raise problem(("step",), "expected no step with log = true", show(self.step))
            if self.step <= 0:
                raise problem(("step",), "expected > 0", show(self.step))
        if not self.low <= self.default <= self.high:
            raise problem(
                ("default",), f"expected a value in [{self.low}, {self.high}]", show(self.default)
            )
        if self.step is not None:
            # Optuna samples only low + k * step; an off-grid default is a value never searched.
            offset = (self.default - self.low) / self.step
            if not math.isclose(offset, round(offset), abs_tol=1e-9):
                grid = f"{self.low} + k * {self.step}"
                raise problem(
                    ("default",), f"expected a value on the grid {grid}", show(self.default)
                )
        return self


def typed_fixed(raw: Any) -> Any:
    """The [fixed] table with every value checked against its knob's type."""
    if not isinstance(raw, dict):
        return raw  # pydantic reports "expected a table"
    for name, value in raw.items():
        if name not in KNOBS:
            raise _unknown_knob(name, value)
    return {name: _typed(name, value, (name,)) for name, value in raw.items()}


def typed_search(raw: Any) -> Any:
    """The [search] table with each knob's bounds and choices checked against its type: here,
    where the knob's name is known, since Knob itself only sees numbers and strings."""
    if not isinstance(raw, dict):
        return raw
    typed: dict[str, Any] = {}
    for name, entry in raw.items():
        if name not in KNOBS:
            raise _unknown_knob(name, entry)
        if isinstance(entry, dict):
            entry = dict(entry)
            for key in ("low", "high", "step", "default"):
                if key not in entry:
                    continue
                if KNOBS[name] in (str, bool) and key != "default":
                    kind = "text" if KNOBS[name] is str else "true/false"
                    raise problem(
                        (name, key), f"expected choices for a {kind} knob", show(entry[key])
                    )
                entry[key] = _typed(name, entry[key], (name, key))
            if isinstance(entry.get("choices"), list):
                entry["choices"] = [
                    _typed(name, choice, (name, "choices", index))
                    for index, choice in enumerate(entry["choices"])
                ]
        typed[name] = entry
    return typed


def check_runnable(fixed: dict[str, Value], search: dict[str, Knob]) -> None:
    """Raise unless every fixed value and every bound and choice of a search is one RunConfig
    takes, and no knob is both fixed and searched."""
    for name, value in fixed.items():
        if name in search:
            raise problem(
                ("fixed", name),
                "expected a knob fixed or searched, not both",
                f"{value!r} and a [search] entry",
            )
        _accepted(name, value, ("fixed", name))
    for name, knob in search.items():
        for key in ("low", "high", "default"):
            if getattr(knob, key) is not None:
                _accepted(name, getattr(knob, key), ("search", name, key))
        for index, choice in enumerate(knob.choices or ()):
            _accepted(name, choice, ("search", name, "choices", index))


def _typed(knob: str, value: object, loc: tuple[str | int, ...]) -> Value:
    """`value` checked against the knob's type; ints become floats for float knobs."""
    kind = KNOBS[knob]
    if kind is float and type(value) in (int, float):
        try:
            number = float(value)  # type: ignore[arg-type]
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise problem(loc, "expected a finite number", show(value))
        return number
    if type(value) is not kind:  # `type(...) is` so that true is not an integer
        raise problem(loc, f"expected {_KIND[kind]}", show(value))
    return value  # type: ignore[return-value]


def _accepted(knob: str, value: Value, loc: tuple[str | int, ...]) -> None:
    """Raise unless RunConfig takes `value` for `knob`, in its own words but at the file's key."""
    try:
        RunConfig.check_field(knob, value)
    except FieldError as error:
        raise problem(loc, error.expected, show(value)) from None


def _unknown_knob(name: str, value: object) -> PydanticCustomError:
    return problem((name,), f"unknown knob (expected one of {', '.join(KNOBS)})", show(value))
