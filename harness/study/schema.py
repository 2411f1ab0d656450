"""A study: one TOML file naming what to search, on which models and backends, and how long.

The file is validated completely when it is loaded, so a typo fails in the first second with one
line that says what was expected, what was received and where (file and dotted key), instead of
an hour into a search. The models mirror the file's tables (`harness.study.tables`, with the
knobs in `harness.study.knobs`); `Study` is the flat result that the search and the trial runner
read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from backends import BACKENDS
from harness.config import RunConfig
from harness.errors import BenchError
from harness.study.errors import describe, one_line
from harness.study.files import locate, read_toml, shipped_studies
from harness.study.knobs import KNOBS, Knob, Value, check_runnable, typed_fixed, typed_search
from harness.study.tables import (
    Budget,
    DataOptions,
    Header,
    Objective,
    Pruner,
    Retrain,
    Sampler,
    Table,
    Task,
    Verdict,
)

__all__ = [
    "KNOBS",
    "Budget",
    "DataOptions",
    "Knob",
    "Objective",
    "Pruner",
    "Retrain",
    "Sampler",
    "Study",
    "Verdict",
    "list_studies",
    "load_study",
]


class _File(Table):
    """The whole file, table by table, in the order errors are reported."""

    study: Header
    budget: Budget
    objective: Objective
    sampler: Sampler = Sampler()
    pruner: Pruner = Pruner()
    data: DataOptions = DataOptions()
    retrain: Retrain = Retrain()
    verdict: Verdict = Verdict()
    fixed: dict[str, Value] = Field(default_factory=dict)
    search: dict[str, Knob]

    @field_validator("fixed", mode="before")
    @classmethod
    def _typed_fixed(cls, raw: Any) -> Any:
        return typed_fixed(raw)

    @field_validator("search", mode="before")
    @classmethod
    def _typed_search(cls, raw: Any) -> Any:
        return typed_search(raw)

    @model_validator(mode="after")
    def _runnable(self) -> _File:
        check_runnable(self.fixed, self.search)
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
    verdict: Verdict
    fixed: dict[str, Value]
    search: dict[str, Knob]

    def default_params(self) -> dict[str, object]:
        """Fixed values plus each searched knob's default: the first trial of every search."""
        return {**self.fixed, **{name: knob.default for name, knob in self.search.items()}}

    def plan(self) -> list[str]:
        """What running the study means, as lines for a person (`bench run --dry-run`)."""
        trials = self.budget.trials
        limits = [f"{trials} trial{'s' if trials != 1 else ''}"] if trials else []
        if self.budget.timeout_minutes:
            limits.append(f"{self.budget.timeout_minutes:g} minutes")
        searches = len(self.architectures) * len(self.backends)
        seeds, others = self.retrain.seeds, len(self.backends) - 1
        cross = others if self.retrain.cross_backend else 0
        return [
            f"study {self.name} ({self.path}): {self.task}, {self.epochs} epochs per run",
            f"searches: {searches}, one per (architecture, backend), each stopping at "
            f"{' or '.join(limits)}, whichever comes first",
            *(f"  {name}: {', '.join(self.backends)}" for name in self.architectures),
            f"re-trainings: the best of each search on {seeds} seeds ({searches * seeds} runs)",
            f"cross runs: the best of each search on the other backend(s) ({others}), "
            f"{seeds} seeds each ({searches * cross * seeds} runs)"
            if cross
            else "cross runs: none",
            f"baseline of the report: {self.baseline}",
        ]

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


def load_study(name_or_path: str | Path) -> Study:
    """Read and validate a study file, given by path or by the name of a shipped study."""
    path, shown = locate(name_or_path)
    raw = read_toml(path, shown)
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
        verdict=file.verdict,
        fixed=file.fixed,
        search=file.search,
    )


def list_studies() -> list[Study]:
    """Every shipped study, by name; a broken file raises rather than silently vanishing."""
    studies: dict[str, Study] = {}
    for path in shipped_studies():
        study = load_study(path)
        if study.name in studies:
            # Two files sharing a name would log into the same experiments and Optuna studies.
            raise BenchError(
                f"{path}: study.name: expected a name no other study uses; "
                f"received {study.name!r} (also in {studies[study.name].path.name})"
            )
        studies[study.name] = study
    return [studies[name] for name in sorted(studies)]
