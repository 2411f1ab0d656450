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
from harness.study.errors import describe, one_line, problem, show
from harness.study.files import locate, read_toml, shipped_studies
from harness.study.knobs import KNOBS, Knob, Value, check_runnable, typed_fixed, typed_search
from harness.study.tables import (
    MULTI_FIDELITY,
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

TESTED_WITH = {  # [retrain] test_weights, as `bench run --dry-run` says it
    "best_epoch": "the best validation epoch's weights (the final epoch's scored beside them)",
    "final": "the final epoch's weights",
}

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

    @model_validator(mode="after")
    def _pruner_within_epochs(self) -> _File:
        # A rung past the last epoch is never reached: the pruner would silently never prune.
        pruner, epochs = self.pruner, self.study.epochs
        if pruner.type not in MULTI_FIDELITY:
            return self
        for key in ("min_resource", "max_resource"):
            value = getattr(pruner, key)
            if value is not None and value > epochs:
                raise problem(("pruner", key), f"expected <= study.epochs ({epochs})", show(value))
        if pruner.first_rung() > epochs:
            raise problem(
                ("pruner", "min_early_stopping_rate"),
                "expected min_resource x reduction_factor^min_early_stopping_rate <= "
                f"study.epochs ({epochs}), or no trial is ever judged",
                f"{pruner.min_early_stopping_rate} ({pruner.min_resource} x "
                f"{pruner.reduction_factor}^{pruner.min_early_stopping_rate} = "
                f"{pruner.first_rung()} epochs)",
            )
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
    sized_for: str = "any"  # "gpu": refused on a machine without one (harness.run.sizing)
    cpu_study: str | None = None  # the study that refusal suggests instead
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
        return {**self.fixed, **self.search_defaults()}

    def search_defaults(self) -> dict[str, object]:
        """Each searched knob's default, as a search's params: what tuning is measured against."""
        return {name: knob.default for name, knob in self.search.items()}

    @property
    def searched(self) -> bool:
        """Whether the searches may try more than their first trial (the defaults)."""
        return self.budget.trials is None or self.budget.trials > 1

    def plan(self) -> list[str]:
        """What running the study means, as lines for a person (`bench run --dry-run`)."""
        trials = self.budget.trials
        limits = [f"{trials} trial{'s' if trials != 1 else ''}"] if trials else []
        if self.budget.timeout_minutes:
            limits.append(f"{self.budget.timeout_minutes:g} minutes")
        total = self.budget.study_minutes
        if total:
            limits.append("its share of the total budget")
        searches = len(self.architectures) * len(self.backends)
        seeds, others = self.retrain.seeds, len(self.backends) - 1
        cross = others if self.retrain.cross_backend else 0
        return [
            f"study {self.name} ({self.path}): {self.task}, {self.epochs} epochs per run",
            f"searches: {searches}, one per (architecture, backend), each stopping at "
            f"{' or '.join(limits)}, whichever comes first",
            *(f"  {name}: {', '.join(self.backends)}" for name in self.architectures),
            *(
                [
                    f"total budget: {total:g} minutes for the whole study, re-trainings included: "
                    "their time is reserved at the pace of the trials that finished, and the "
                    "searches share the rest equally (each runs at least its first trial)"
                ]
                if total
                else []
            ),
            f"re-trainings: the best of each search on {seeds} seeds ({searches * seeds} runs), "
            f"tested with {TESTED_WITH[self.retrain.test_weights or 'final']}",
            f"cross runs: the best of each search on the other backend(s) ({others}), "
            f"{seeds} seeds each ({searches * cross * seeds} runs)"
            if cross
            else "cross runs: none",
            *(
                [
                    f"defaults: re-trained on {self.baseline}, {seeds} seeds per architecture "
                    f"(at most {len(self.architectures) * seeds} runs; none where its search "
                    "chose them), to measure what tuning bought"
                ]
                if self.searched
                else []
            ),
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
            test_weights=self.retrain.test_weights,
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
    study = Study(
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
    if study.retrain.test_weights is not None:
        return study
    # A search's last epoch is often past its best; a study that only re-runs its defaults
    # keeps the final epoch's figures, as studies did before the key existed.
    weights = "best_epoch" if study.searched else "final"
    return study.model_copy(
        update={"retrain": study.retrain.model_copy(update={"test_weights": weights})}
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
