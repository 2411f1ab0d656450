"""One flat, typed record of everything that defines a training run, and what each field takes.

Flat on purpose: `RunConfig.as_params()` is exactly what gets logged as a run's parameters, and
every knob a search may tune is one field here. It is also the one source of defaults and limits:
`bench train` derives its flags (name, default, help, check) from these fields, and a study file
checks its knobs with `RunConfig.check_field`, so the three cannot drift apart.

`ModelSpec` keeps defaults of its own (hidden_size 32) for code that builds a spec by hand; no run
ever uses them, because `model_spec()` passes every field. The defaults here are the ones that rule.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from backends import BACKENDS
from harness.errors import BenchError
from harness.execution import PRECISIONS, ExecutionOptions
from harness.model_spec import ARCHITECTURES, OPTIMIZERS, TASKS, ModelSpec, OptimizerSpec

# "best_epoch": as Keras's EarlyStopping(restore_best_weights=True) would test (harness.training).
TEST_WEIGHTS = ("final", "best_epoch")


class FieldError(BenchError):
    """A value one field refuses; `expected` is the phrase a study file's error reuses."""

    def __init__(self, name: str, expected: str, value: object) -> None:
        super().__init__(f"{name}: {expected}; received {value!r}")
        self.name, self.expected, self.value = name, expected, value


@dataclass(frozen=True)
class Accepts:
    """The values one field takes, and how `bench train` offers it."""

    help: str  # the flag's help text
    low: float | None = None  # the smallest value allowed
    above: float | None = None  # values must be greater than this
    below: float | None = None  # values must be smaller than this
    choices: tuple[str, ...] = ()
    optional: bool = False  # None is allowed too ("not set")
    flag: str | None = ""  # the `bench train` flag: "" derives it from the name, None: no flag
    fractional: bool = False  # a float field: "a finite number", never inf or nan

    def expected(self) -> str:
        """What the field takes, as the "expected ..." phrase of an error."""
        if self.choices:
            return f"expected one of {', '.join(self.choices)}"
        bounds = [
            f"{sign} {int(bound)}" if float(bound).is_integer() else f"{sign} {bound:g}"
            for sign, bound in ((">=", self.low), (">", self.above), ("<", self.below))
            if bound is not None
        ]
        either = "None or " if self.optional else ""
        number = "a finite number " if self.fractional else ""
        return f"expected {either}{number}{' and '.join(bounds)}" if bounds else "expected a value"

    def refuses(self, value: Any) -> bool:
        if value is None:
            return not self.optional
        if self.choices:
            return value not in self.choices
        if isinstance(value, float) and not math.isfinite(value):
            return True  # inf and nan pass every comparison they should fail
        return (
            (self.low is not None and value < self.low)
            or (self.above is not None and value <= self.above)
            or (self.below is not None and value >= self.below)
        )


def setting(default: Any = MISSING, text: str = "", **accepts: Any) -> Any:
    """A RunConfig field that carries what it accepts (`Accepts`) as its metadata."""
    fractional = isinstance(default, float)
    return field(
        default=default, metadata={"accepts": Accepts(text, fractional=fractional, **accepts)}
    )


@dataclass(frozen=True)
class RunConfig:
    # The field order is the order of `as_params()`, which keys re-trainings: keep it.
    backend: str = setting(text=" or ".join(BACKENDS) + ".")  # checked by backends.check_backend
    architecture: str = setting(
        text="simple_rnn, lstm, gru or bilstm.", choices=ARCHITECTURES, flag="arch"
    )
    epochs: int = setting(2, "Passes over the training split.", low=1)
    hidden_size: int = setting(64, "Units per direction.", low=1)  # 128 to 512 on a GPU
    num_layers: int = setting(1, "Stacked recurrent layers.", low=1)
    learning_rate: float = setting(1e-3, "Optimiser step size.", above=0)
    # 0.2 to 0.5 in practice; 0 makes the backends bit-comparable
    dropout_rate: float = setting(0.0, "Dropout after each recurrent layer.", low=0, below=1)
    # The last tokens of a review are kept, as Keras pads and truncates 'pre'.
    sequence_length: int = setting(200, "Tokens kept per review.", low=1)
    batch_size: int = setting(64, "Reviews per training step.", low=1)
    embedding_dim: int = setting(32, "Embedding width.", low=1)
    num_words: int = setting(10_000, "Vocabulary cap.", low=4)  # including the 3 reserved ids
    optimizer: str = setting("rmsprop", "rmsprop or adam (Keras's defaults).", choices=OPTIMIZERS)
    # Below 2**32: NumPy's legacy generator (under Keras's seeding) takes no larger seed.
    seed: int = setting(0, "Initial weights, batch order and dropout.", low=0, below=2**32)
    # Carved from the official train split; a study sets it in [data].
    validation_fraction: float = setting(
        0.2, "Share of train held out.", above=0, below=1, flag=None
    )
    # None keeps all 25k reviews per split.
    subset: int | None = setting(
        None, "Reviews kept per split, for quick runs.", low=2, optional=True
    )
    task: str = setting(
        "classification",
        "classification (sentiment) or language_model (next word).",
        choices=TASKS,
    )
    # How fast, not what is learned (harness.execution), like jit_compile, cudnn, flush_denormal.
    precision: str = setting(
        "float32", "float32, or bf16 / fp16 mixed precision (fp16: GPU only).", choices=PRECISIONS
    )
    jit_compile: bool = setting(False, "torch.compile / TensorFlow XLA on the training step.")
    cudnn: bool = setting(True, "cuDNN's fused RNN kernels on a GPU (--no-cudnn: generic).")
    # Denormals flushed to zero on a CPU (harness.execution); not a flag of `bench train`.
    flush_denormal: bool = setting(True, "Flush denormal floats on a CPU.", flag=None)
    # What the test figures mean, so it keys re-trainings; a study sets it in [retrain].
    test_weights: str = setting(
        "final",
        "Weights the test split is scored with: the final epoch's, or the best validation "
        "epoch's (the final epoch's figures are kept beside them as final_test_*).",
        choices=TEST_WEIGHTS,
    )

    def __post_init__(self) -> None:
        for item in fields(self):
            self.check_field(item.name, getattr(self, item.name))
        self.model_spec()  # what no single field decides (a BiLSTM cannot be a language model)
        self.optimizer_spec()
        self.execution_options()

    @staticmethod
    def accepts(name: str) -> Accepts:
        """What field `name` takes; KeyError for a name that is no field."""
        return _ACCEPTS[name]

    @staticmethod
    def check_field(name: str, value: object) -> None:
        """Raise FieldError unless field `name` takes `value` (whatever the other fields hold)."""
        accepts = _ACCEPTS[name]
        if accepts.refuses(value):
            raise FieldError(name, accepts.expected(), value)

    def model_spec(self) -> ModelSpec:
        return ModelSpec(
            architecture=self.architecture,
            vocab_size=self.num_words,
            embedding_dim=self.embedding_dim,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout_rate=self.dropout_rate,
            task=self.task,
        )

    def optimizer_spec(self) -> OptimizerSpec:
        return OptimizerSpec(self.optimizer, self.learning_rate)

    def execution_options(self) -> ExecutionOptions:
        return ExecutionOptions(self.precision, self.jit_compile, self.cudnn, self.flush_denormal)

    def data_params(self) -> dict[str, object]:
        """The keyword arguments of the task's data loader (`harness.tasks.load_data`)."""
        return {
            "num_words": self.num_words,
            "sequence_length": self.sequence_length,
            "validation_fraction": self.validation_fraction,
            "subset": self.subset,
        }

    def as_params(self) -> dict[str, object]:
        return asdict(self)


_ACCEPTS: dict[str, Accepts] = {item.name: item.metadata["accepts"] for item in fields(RunConfig)}
