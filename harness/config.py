"""One flat, typed record of everything that defines a training run.

Flat on purpose: `RunConfig.as_params()` is exactly what gets logged as a run's parameters, and
every knob a search may tune is one field here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.errors import BenchError
from harness.execution import ExecutionOptions
from harness.model_spec import ModelSpec, OptimizerSpec


@dataclass(frozen=True)
class RunConfig:
    backend: str  # "keras" or "torch"
    architecture: str  # simple_rnn, lstm, gru or bilstm
    epochs: int = 2
    hidden_size: int = 64  # units per direction; 128 to 512 is typical on a GPU
    num_layers: int = 1
    learning_rate: float = 1e-3
    dropout_rate: float = 0.0  # 0.2 to 0.5 in practice; 0 makes the backends bit-comparable
    sequence_length: int = 200  # tokens kept per review (the last ones, as Keras pads 'pre')
    batch_size: int = 64
    embedding_dim: int = 32
    num_words: int = 10_000  # vocabulary cap, including the 3 reserved ids
    optimizer: str = "rmsprop"  # rmsprop or adam, both with Keras's defaults
    seed: int = 0  # initial weights, batch order and dropout masks
    validation_fraction: float = 0.2  # carved from the official train split
    subset: int | None = None  # reviews kept per split, for quick runs; None keeps all 25k
    task: str = "classification"  # or "language_model": next-word prediction on the same text
    precision: str = "float32"  # or "bf16" / "fp16" mixed precision (harness.execution)
    jit_compile: bool = False  # torch.compile / XLA on the training step
    cudnn: bool = True  # cuDNN's fused RNN kernels on a GPU; False forces the generic kernels
    flush_denormal: bool = True  # denormal floats flushed to zero on a CPU (harness.execution)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise BenchError(f"{name}: expected >= 1; received {getattr(self, name)}")
        self.model_spec()  # validates the model's fields
        self.optimizer_spec()
        self.execution_options()

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
