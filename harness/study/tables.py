"""The tables of a study file but its knobs: [study], [budget], [objective], [sampler], [pruner],
[data] and [retrain], each a strict pydantic model.

Strict so that a typo fails when the file is loaded, in one line naming the key
(`harness.study.errors`), instead of an hour into a search: no "5" for 5, no true for 1, and an
unknown key is named with the keys that are allowed.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from backends import BACKENDS
from harness.metrics import METRIC_DIRECTION
from harness.model_spec import ARCHITECTURES, CAUSAL_ARCHITECTURES
from harness.study.errors import problem, show

# A study's name is also a folder name (bench-runs/<name>) and a store prefix: it starts with a
# letter or digit, so that neither "." nor ".." (nor a hidden file) can be a study, and is short.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "a name of 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
Task = Literal["classification", "language_model"]


class Table(BaseModel):
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


class Header(Table):
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
    # "gpu": `bench run` refuses a machine without one, in one line with an estimate of the
    # hours it would take there (`--on-cpu` runs it anyway); "any" (the default): no check.
    sized_for: Literal["any", "gpu"] = "any"
    cpu_study: str | None = None  # what that refusal suggests instead, e.g. "imdb-cpu"

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not NAME.fullmatch(name):
            raise problem((), f"expected {NAME_RULE}", show(name))
        return name

    @field_validator("description", "cpu_study")
    @classmethod
    def _printable(cls, text: str | None) -> str | None:
        if text is not None and not text.isprintable():  # it is printed in one line
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
    def _cpu_study_for_gpu_studies(self) -> Header:
        # Only a study sized for a GPU is ever refused, so only it can suggest another.
        if self.cpu_study is not None and self.sized_for != "gpu":
            raise problem(
                ("cpu_study",), "expected only with sized_for = 'gpu'", show(self.cpu_study)
            )
        return self

    @model_validator(mode="after")
    def _baseline_among_backends(self) -> Header:
        if self.baseline is not None and self.baseline not in self.backends:
            raise problem(
                ("baseline",),
                f"expected one of the study's backends ({', '.join(self.backends)})",
                show(self.baseline),
            )
        return self

    @model_validator(mode="after")
    def _causal_for_language_models(self) -> Header:
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


class Budget(Table):
    """How long the searches may run: each stops at whichever of its limits comes first."""

    trials: int | None = Field(default=None, ge=1)  # finished (complete or pruned) per search
    timeout_minutes: float | None = Field(default=None, gt=0)  # wall clock per search
    # The whole study's wall clock, re-trainings included (`harness.run.deadline`); None: none.
    study_minutes: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _bounded(self) -> Budget:
        if self.trials is None and self.timeout_minutes is None and self.study_minutes is None:
            raise problem(
                (), "expected trials, timeout_minutes or study_minutes (any of them)", "none"
            )
        return self


class Objective(Table):
    metric: Literal["val_accuracy", "val_loss", "val_perplexity"]
    direction: Literal["maximize", "minimize"]
    # MLPerf-style time to target: training seconds until the metric first reaches this value.
    target: float | None = None

    @model_validator(mode="after")
    def _fits(self) -> Objective:
        # A mismatch would make the search hunt for the worst model without any error.
        wanted = METRIC_DIRECTION[self.metric]
        if self.direction != wanted:
            raise problem(
                ("direction",), f"expected {wanted!r} for {self.metric}", show(self.direction)
            )
        return self


class Sampler(Table):
    type: Literal["tpe", "random"] = "tpe"
    seed: int = Field(default=0, ge=0, lt=2**32)  # NumPy's legacy generator takes no larger


PrunerType = Literal["median", "percentile", "threshold", "hyperband", "successive_halving", "none"]
MULTI_FIDELITY = ("hyperband", "successive_halving")  # pruners whose resource is epochs
# Which pruner types read each key: a key given to a pruner that ignores it is almost always a
# mistyped `type`.
_READERS = {
    "percentile": ("percentile",),
    "lower": ("threshold",),
    "upper": ("threshold",),
    "min_resource": MULTI_FIDELITY,
    "reduction_factor": MULTI_FIDELITY,
    "max_resource": ("hyperband",),
    "min_early_stopping_rate": ("successive_halving",),
}


class Pruner(Table):
    type: PrunerType = "median"
    n_startup_trials: int = Field(default=2, ge=0)  # trials that finish before any is pruned
    n_warmup_steps: int = Field(default=0, ge=0)  # epochs reported before pruning may start
    percentile: float = Field(default=25.0, gt=0, lt=100)  # only for "percentile"
    lower: float | None = None  # only for "threshold"
    upper: float | None = None
    # Hyperband and successive halving (Optuna's), with epochs as the resource:
    min_resource: int = Field(default=1, ge=1)  # epochs every trial runs before it is judged
    # Only for "hyperband": its R, which sets its brackets (a trial not pruned still runs every
    # epoch); None: the study's epochs.
    max_resource: int | None = Field(default=None, ge=1)
    reduction_factor: int = Field(default=3, ge=2)  # 1 in this many goes on at each rung
    # Only for "successive_halving": the first rung is min_resource x reduction_factor^this.
    min_early_stopping_rate: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Pruner:
        for key, readers in _READERS.items():
            if key in self.model_fields_set and self.type not in readers:
                types = " or ".join(repr(reader) for reader in readers)
                raise problem(
                    (key,), f"expected only with type = {types}", show(getattr(self, key))
                )
        if self.type in MULTI_FIDELITY:
            # Its rungs decide when it judges a trial: a count of trials or steps is a mistake.
            for key in ("n_startup_trials", "n_warmup_steps"):
                if key in self.model_fields_set:
                    raise problem(
                        (key,),
                        f"expected no {key} with type = {self.type!r} (min_resource and "
                        "reduction_factor decide when it prunes)",
                        show(getattr(self, key)),
                    )
        if self.max_resource is not None and self.min_resource > self.max_resource:
            raise problem(
                ("min_resource",),
                f"expected <= max_resource ({self.max_resource})",
                show(self.min_resource),
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

    def first_rung(self) -> int:
        """The epoch at which a multi-fidelity pruner first judges a trial."""
        if self.type == "successive_halving":
            return self.min_resource * self.reduction_factor**self.min_early_stopping_rate
        return self.min_resource


class DataOptions(Table):
    subset: int | None = Field(default=None, ge=2)  # reviews kept per split; None keeps all 25k
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)


class Retrain(Table):
    """How the best configuration of each search is re-trained and tested."""

    seeds: int = Field(default=3, ge=1)  # seeds 0, 1, ..., seeds - 1
    cross_backend: bool = True  # also run each backend's best config on the other backend
    # Which weights score the test split: "best_epoch" (the best validation epoch's, as Keras's
    # EarlyStopping(restore_best_weights=True); the final epoch's are scored too) or "final".
    # Unset: "best_epoch" when the study searches ([budget] trials unset or > 1), else "final";
    # `load_study` resolves it, so a Study always names it.
    test_weights: Literal["best_epoch", "final"] | None = None


class Verdict(Table):
    """Which differences matter: the margins of the report's equivalence tests (TOST).

    A clause says "equivalent" only when its 90% interval lies inside ±margin, so a margin is
    a claim about what the study cares about, and part of the study's identity: two reports
    under different margins are different studies.
    """

    # Accuracy-like test metrics (higher is better, in [0, 1]): an absolute difference. 0.005 is
    # half a point of accuracy, about the seed-to-seed spread of a small IMDB model.
    quality_margin: float = Field(default=0.005, gt=0, le=1)
    # Perplexity: relative, as a ratio of geometric means within 1 ± this (0.02: 2%).
    quality_margin_relative: float = Field(default=0.02, gt=0, lt=1)
    # Time per epoch, throughput and memory: a ratio within 1 ± this counts as the same cost.
    cost_margin: float = Field(default=0.05, gt=0, lt=1)
