"""A study: one TOML file naming what to search, on which models and backends, and how long.

The file is validated completely when it is loaded, so a typo fails in the first second with one
line that says what was expected, what was received and where (file and dotted key), instead of
an hour into a search. The models mirror the file's tables; `Study` is the flat result that the
search and the trial runner read.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from backends import BACKENDS
from harness.config import RunConfig
from harness.errors import BenchError
from harness.model_spec import ARCHITECTURES, CAUSAL_ARCHITECTURES
from harness.study.errors import describe, one_line, problem, show

STUDIES_DIR = Path(__file__).resolve().parents[2] / "studies"

# The RunConfig fields a study may fix or search, and the type their values must have.
KNOBS: dict[str, type] = {
    "hidden_size": int,
    "num_layers": int,
    "learning_rate": float,
    "dropout_rate": float,
    "sequence_length": int,
    "batch_size": int,
    "embedding_dim": int,
    "num_words": int,
    "optimizer": str,
    "precision": str,  # execution options (harness.execution): how fast, not what is learned
    "jit_compile": bool,
    "cudnn": bool,
    "flush_denormal": bool,
}
_KIND = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_METRIC_DIRECTION = {
    "val_accuracy": "maximize",
    "val_loss": "minimize",
    "val_perplexity": "minimize",
}
_NAME = re.compile(r"[A-Za-z0-9_.-]+")

Task = Literal["classification", "language_model"]
Value = bool | int | float | str  # bool first: pydantic must not read true as 1


class _Table(BaseModel):
    """One TOML table: frozen, strict (no "5" for 5, no true for 1), unknown keys named."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # pydantic's own extra_forbidden error cannot list the keys that are allowed.
        if isinstance(data, dict):
            for key, value in data.items():
                if key not in cls.model_fields:
                    what = "table" if isinstance(value, dict) else "key"
                    allowed = ", ".join(cls.model_fields)
                    raise problem(
                        (key,), f"unknown {what} (expected one of {allowed})", show(value)
                    )
        return data


class _Header(_Table):
    """The [study] table."""

    name: str  # MLflow experiment and Optuna study prefix
    description: str = ""  # one line shown by `bench studies`
    task: Task = "classification"
    dataset: Literal["imdb"] = "imdb"
    architectures: list[str] = Field(default=list(ARCHITECTURES), min_length=1)
    backends: list[str] = Field(default=list(BACKENDS), min_length=1)
    # The backend every other one is compared against in the report; the first by default.
    baseline: str | None = None
    epochs: int = Field(ge=1)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not _NAME.fullmatch(name):
            raise problem((), "expected letters, digits, '_', '.' or '-'", show(name))
        return name

    @field_validator("description")
    @classmethod
    def _printable(cls, text: str) -> str:
        if not text.isprintable():  # it is printed as one line of a table
            raise problem((), "expected one line of printable text", show(text))
        return text

    @field_validator("architectures", "backends")
    @classmethod
    def _known_names(cls, names: list[str], info: ValidationInfo) -> list[str]:
        valid = ARCHITECTURES if info.field_name == "architectures" else tuple(BACKENDS)
        for index, name in enumerate(names):
            if name not in valid:
                raise problem((index,), f"expected one of {', '.join(valid)}", show(name))
            if name in names[:index]:
                raise problem((index,), "expected each name once", f"{name!r} again")
        return names

    @model_validator(mode="after")
    def _baseline_among_backends(self) -> _Header:
        if self.baseline is not None and self.baseline not in self.backends:
            raise problem(
                ("baseline",),
                f"expected one of the study's backends ({', '.join(self.backends)})",
                show(self.baseline),
            )
        return self

    @model_validator(mode="after")
    def _causal_for_language_models(self) -> _Header:
        if self.task != "language_model":
            return self
        for index, name in enumerate(self.architectures):
            if name not in CAUSAL_ARCHITECTURES:
                raise problem(
                    ("architectures", index),
                    f"expected one of {', '.join(CAUSAL_ARCHITECTURES)} for a language model "
                    "(a BiLSTM's backward direction reads the very words it must predict)",
                    show(name),
                )
        return self


class Budget(_Table):
    """How long one (architecture, backend) search may run; it stops at whichever comes first."""

    trials: int | None = Field(default=None, ge=1)  # finished (complete or pruned) trials
    timeout_minutes: float | None = Field(default=None, gt=0)  # wall clock

    @model_validator(mode="after")
    def _bounded(self) -> Budget:
        if self.trials is None and self.timeout_minutes is None:
            raise problem((), "expected trials or timeout_minutes (or both)", "neither")
        return self


class Objective(_Table):
    metric: Literal["val_accuracy", "val_loss", "val_perplexity"]
    direction: Literal["maximize", "minimize"]
    # MLPerf-style time to target: training seconds until the metric first reaches this value.
    target: float | None = None

    @model_validator(mode="after")
    def _fits(self) -> Objective:
        # A mismatch would make the search hunt for the worst model without any error.
        wanted = _METRIC_DIRECTION[self.metric]
        if self.direction != wanted:
            raise problem(
                ("direction",), f"expected {wanted!r} for {self.metric}", show(self.direction)
            )
        return self


class Sampler(_Table):
    type: Literal["tpe", "random"] = "tpe"
    seed: int = Field(default=0, ge=0)


class Pruner(_Table):
    type: Literal["median", "percentile", "threshold", "none"] = "median"
    n_startup_trials: int = Field(default=2, ge=0)  # trials that finish before any is pruned
    n_warmup_steps: int = Field(default=0, ge=0)  # epochs reported before pruning may start
    percentile: float = Field(default=25.0, gt=0, lt=100)  # only for "percentile"
    lower: float | None = None  # only for "threshold"
    upper: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Pruner:
        # A bound given to a pruner that ignores it is almost always a mistyped `type`.
        for key, owner in (
            ("percentile", "percentile"),
            ("lower", "threshold"),
            ("upper", "threshold"),
        ):
            if key in self.model_fields_set and self.type != owner:
                raise problem(
                    (key,), f"expected only with type = {owner!r}", show(getattr(self, key))
                )
        if self.type == "threshold":
            if self.lower is None and self.upper is None:
                raise problem(
                    (), "expected lower or upper (or both) with type = 'threshold'", "neither"
                )
            if self.lower is not None and self.upper is not None and self.lower > self.upper:
                raise problem(
                    (), "expected lower <= upper", f"lower={self.lower}, upper={self.upper}"
                )
        return self


class DataOptions(_Table):
    subset: int | None = Field(default=None, ge=2)  # reviews kept per split; None keeps all 25k
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)


class Retrain(_Table):
    """How the best configuration of each search is re-trained and tested."""

    seeds: int = Field(default=3, ge=1)  # seeds 0, 1, ..., seeds - 1
    cross_backend: bool = True  # also run each backend's best config on the other backend


class Knob(_Table):
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
    """Raise unless RunConfig takes `value` for `knob`, rewording its error to name the key."""
    try:
        RunConfig(backend="torch", architecture="lstm", **{knob: value})  # type: ignore[arg-type]
    except BenchError as error:
        match = re.search(r"(expected .*?)(?:; received .*)?$", str(error))
        phrase = match.group(1) if match else f"expected a value RunConfig accepts ({error})"
        raise problem(loc, phrase, show(value)) from None


def _unknown_knob(name: str, value: object) -> PydanticCustomError:
    return problem((name,), f"unknown knob (expected one of {', '.join(KNOBS)})", show(value))


class _File(_Table):
    """The whole file, table by table, in the order errors are reported."""

    study: _Header
    budget: Budget
    objective: Objective
    sampler: Sampler = Sampler()
    pruner: Pruner = Pruner()
    data: DataOptions = DataOptions()
    retrain: Retrain = Retrain()
    fixed: dict[str, Value] = Field(default_factory=dict)
    search: dict[str, Knob]

    @field_validator("fixed", mode="before")
    @classmethod
    def _typed_fixed(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw  # pydantic reports "expected a table"
        for name, value in raw.items():
            if name not in KNOBS:
                raise _unknown_knob(name, value)
        return {name: _typed(name, value, (name,)) for name, value in raw.items()}

    @field_validator("search", mode="before")
    @classmethod
    def _typed_search(cls, raw: Any) -> Any:
        # Typed here, where the knob's name is known; Knob itself only sees numbers and strings.
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

    @model_validator(mode="after")
    def _runnable(self) -> _File:
        for name, value in self.fixed.items():
            if name in self.search:
                raise problem(
                    ("fixed", name),
                    "expected a knob fixed or searched, not both",
                    f"{value!r} and a [search] entry",
                )
            _accepted(name, value, ("fixed", name))
        for name, knob in self.search.items():
            for key in ("low", "high", "default"):
                if getattr(knob, key) is not None:
                    _accepted(name, getattr(knob, key), ("search", name, key))
            for index, choice in enumerate(knob.choices or ()):
                _accepted(name, choice, ("search", name, "choices", index))
        return self


class Study(BaseModel):
    """A validated study file: what `bench search` runs, flattened for its readers."""

    model_config = ConfigDict(frozen=True)

    path: Path
    name: str
    description: str
    task: Task
    dataset: str
    architectures: list[str]
    backends: list[str]
    baseline: str  # the backend the report compares the others against
    epochs: int
    budget: Budget
    objective: Objective
    sampler: Sampler
    pruner: Pruner
    data: DataOptions
    retrain: Retrain
    fixed: dict[str, Value]
    search: dict[str, Knob]

    def default_params(self) -> dict[str, object]:
        """Fixed values plus each searched knob's default: the first trial of every search."""
        return {**self.fixed, **{name: knob.default for name, knob in self.search.items()}}

    def run_config(
        self, backend: str, architecture: str, params: dict[str, object], seed: int = 0
    ) -> RunConfig:
        """The run for `params` (searched values) on top of the fixed values and the defaults."""
        for name in params:
            if name not in KNOBS:
                raise BenchError(
                    f"{self.path}: run_config params: expected one of {', '.join(KNOBS)}; "
                    f"received {name!r}"
                )
        if backend not in BACKENDS:
            raise BenchError(
                f"{self.path}: backend: expected one of {', '.join(BACKENDS)}; received {backend!r}"
            )
        return RunConfig(
            backend=backend,
            architecture=architecture,
            task=self.task,
            epochs=self.epochs,
            seed=seed,
            subset=self.data.subset,
            validation_fraction=self.data.validation_fraction,
            **{**self.default_params(), **params},  # type: ignore[arg-type]
        )


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _locate(name_or_path: str | Path) -> tuple[Path, str]:
    """The file to read and how errors should name it."""
    text = str(name_or_path)
    given = Path(name_or_path)
    if given.is_file():
        return given, text
    is_bare_name = _NAME.fullmatch(text) is not None and not text.endswith(".toml")
    if not is_bare_name:
        return given, text  # reading it reports the missing file
    candidate = STUDIES_DIR / f"{text}.toml"
    if candidate.is_file():
        return candidate, _shown(candidate)
    known = ", ".join(sorted(path.stem for path in STUDIES_DIR.glob("*.toml"))) or "(none)"
    raise one_line(
        f"unknown study {text!r}: expected a study file or one of {known} (in {STUDIES_DIR})"
    )


def load_study(name_or_path: str | Path) -> Study:
    """Read and validate a study file, given by path or by name (`imdb` -> studies/imdb.toml)."""
    path, shown = _locate(name_or_path)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as error:
        reason = (error.strerror or type(error).__name__).lower()
        raise one_line(f"{shown}: expected a readable study file; received {reason}") from None
    except UnicodeDecodeError as error:
        raise one_line(
            f"{shown}: not valid TOML: expected UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise one_line(f"{shown}: not valid TOML: {error}") from None
    try:
        file = _File.model_validate(raw)
    except ValidationError as error:
        raise one_line(f"{shown}: {describe(error.errors()[0], set(_File.model_fields))}") from None
    header = file.study.model_dump()
    header["baseline"] = header["baseline"] or header["backends"][0]
    return Study(
        path=path,
        **header,
        budget=file.budget,
        objective=file.objective,
        sampler=file.sampler,
        pruner=file.pruner,
        data=file.data,
        retrain=file.retrain,
        fixed=file.fixed,
        search=file.search,
    )


def list_studies() -> list[Study]:
    """Every study in STUDIES_DIR, by name; a broken file raises rather than silently vanishing."""
    studies: dict[str, Study] = {}
    for path in sorted(STUDIES_DIR.glob("*.toml")):
        study = load_study(path)
        if study.name in studies:
            # Two files sharing a name would log into the same experiments and Optuna studies.
            raise BenchError(
                f"{path}: study.name: expected a name no other study uses; "
                f"received {study.name!r} (also in {studies[study.name].path.name})"
            )
        studies[study.name] = study
    return [studies[name] for name in sorted(studies)]
