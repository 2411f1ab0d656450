"""The framework-neutral description of a model and the layout of its weights.

Every backend builds its model from one `ModelSpec`, and all exchange weights in one canonical
layout: Keras's own (kernels as ``(inputs, units * gates)``, Keras's gate order). Writing the
layout down once is what lets the harness initialise every framework with the same numbers and
lets the tests compare them tensor by tensor. The loss follows from the task (`TASK_LOSSES`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.errors import BenchError

ARCHITECTURES = ("simple_rnn", "lstm", "gru", "bilstm")
TASKS = ("classification", "language_model")
CAUSAL_ARCHITECTURES = ("simple_rnn", "lstm", "gru")  # the ones that can predict the next word

# Gates per recurrent cell: how many (inputs, units) blocks its kernels stack side by side.
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3, "bilstm": 4}
# The loss each task trains with, always from logits, chosen here once so that every backend
# optimises the same objective; a backend maps each name to its framework's function, and
# counts a correct prediction the matching way (logit > 0, or top-1 token).
TASK_LOSSES = {
    "classification": "binary_crossentropy",  # one sigmoid logit per review
    "language_model": "sparse_categorical_crossentropy",  # softmax over the vocabulary per token
}


@dataclass(frozen=True)
class ModelSpec:
    """Embedding -> `num_layers` recurrent layers (each followed by Dropout) -> Dense head.

    The task picks the head: ``classification`` reads the last time step into Dense(1), one
    logit per review; ``language_model`` reads every time step into Dense(vocab_size), logits
    for the next word at each position.
    """

    architecture: str  # one of ARCHITECTURES
    vocab_size: int  # rows of the embedding table (== num_words of the data)
    # No defaults for the sizes: harness.config.RunConfig is the one place defaults live.
    embedding_dim: int
    hidden_size: int  # units per direction
    num_layers: int = 1
    dropout_rate: float = 0.0  # Dropout after every recurrent layer; never recurrent dropout
    task: str = "classification"  # one of TASKS

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise BenchError(
                f"unknown architecture: expected one of {', '.join(ARCHITECTURES)}; "
                f"received {self.architecture!r}"
            )
        if self.task not in TASKS:
            raise BenchError(f"task: expected one of {', '.join(TASKS)}; received {self.task!r}")
        if self.task == "language_model" and self.architecture not in CAUSAL_ARCHITECTURES:
            raise BenchError(
                f"architecture: expected one of {', '.join(CAUSAL_ARCHITECTURES)} for a language "
                f"model; received {self.architecture!r}, whose backward direction reads the very "
                "words it must predict"
            )
        for name in ("vocab_size", "embedding_dim", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise BenchError(f"{name}: expected >= 1; received {getattr(self, name)}")
        if not 0.0 <= self.dropout_rate < 1.0:
            raise BenchError(f"dropout_rate: expected 0 <= rate < 1; received {self.dropout_rate}")

    @property
    def directions(self) -> int:
        return 2 if self.architecture == "bilstm" else 1

    @property
    def cell(self) -> str:
        """The recurrent cell each direction runs ("bilstm" runs an LSTM both ways)."""
        return "lstm" if self.architecture == "bilstm" else self.architecture

    @property
    def output_size(self) -> int:
        return self.vocab_size if self.task == "language_model" else 1

    @property
    def loss(self) -> str:
        """The training loss's name (`TASK_LOSSES`): mean cross-entropy per prediction."""
        return TASK_LOSSES[self.task]

    @property
    def sequence_output(self) -> bool:
        """Whether the head reads every time step (language model) or only the last one."""
        return self.task == "language_model"

    def as_params(self) -> dict[str, object]:
        return asdict(self)


def layer_input_size(spec: ModelSpec, layer: int) -> int:
    return spec.embedding_dim if layer == 0 else spec.hidden_size * spec.directions


def direction_prefixes(spec: ModelSpec, layer: int) -> list[str]:
    """Name prefixes of the directions of one recurrent layer, forward first."""
    if spec.directions == 1:
        return [f"rnn_{layer}"]
    return [f"rnn_{layer}/forward", f"rnn_{layer}/backward"]


def weight_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Canonical name -> shape of every trainable tensor, in Keras's order."""
    shapes: dict[str, tuple[int, ...]] = {"embedding": (spec.vocab_size, spec.embedding_dim)}
    units, gates = spec.hidden_size, GATES[spec.architecture]
    for layer in range(spec.num_layers):
        for prefix in direction_prefixes(spec, layer):
            shapes[f"{prefix}/kernel"] = (layer_input_size(spec, layer), units * gates)
            shapes[f"{prefix}/recurrent_kernel"] = (units, units * gates)
            # Keras's GRU (reset_after=True) keeps separate input and recurrent biases.
            bias_rows = (2,) if spec.cell == "gru" else ()
            shapes[f"{prefix}/bias"] = (*bias_rows, units * gates)
    shapes["dense/kernel"] = (spec.hidden_size * spec.directions, spec.output_size)
    shapes["dense/bias"] = (spec.output_size,)
    return shapes


def count_parameters(spec: ModelSpec) -> int:
    total = 0
    for shape in weight_shapes(spec).values():
        size = 1
        for dim in shape:
            size *= dim
        total += size
    return total


OPTIMIZERS = ("rmsprop", "adam")


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimiser with Keras's default hyper-parameters; every backend uses Keras's formulas."""

    name: str = "rmsprop"  # one of OPTIMIZERS
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise BenchError(
                f"unknown optimizer: expected one of {', '.join(OPTIMIZERS)}; "
                f"received {self.name!r}"
            )
        if not self.learning_rate > 0:
            raise BenchError(f"learning_rate: expected > 0; received {self.learning_rate}")


# Keras's defaults, written once so that every backend reads the same numbers.
RMSPROP_RHO = 0.9
ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
EPSILON = 1e-7
