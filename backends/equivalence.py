"""How backends are shown to compute the same function: same weights in, same batches through.

Each backend records a `Trace` per model shape: logits, loss and gradients at the harness's
initial weights, the weights after one RMSprop and one Adam step, and the loss of every step
of 50 steps on real IMDB batches in the harness's order, with the weights after them. Two
backends are equivalent when their traces agree within the bounds of tests/test_equivalence.py.
Because every backend is deterministic, a trace recorded alone equals one recorded in lockstep
with another backend; so four backends cost four traces, not six pairs of runs.

docs/scripts/equivalence_drift.py prints the same figures for docs/equivalence.md. Both import
them from here, and both read the same slice of real IMDB reviews (`harness.data.slice`), so
the table in the docs measures exactly what the tests check.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from backends import BACKENDS, Backend, TrainableModel, Weights, get_backend
from backends.keras_loading import switch_keras_backend
from harness.initialization import initial_weights
from harness.model_spec import ARCHITECTURES, CAUSAL_ARCHITECTURES, ModelSpec, OptimizerSpec
from harness.tasks import Split
from harness.training import epoch_batches

# (architecture, layers): every cell alone, and a stack of each kind: a unidirectional one (LSTM)
# and a bidirectional one, whose second layer reads both directions. Every other stack's forward
# pass is held to the numpy reference (tests/test_reference.py, every architecture at 1 and 2
# layers), and a stack is the same code in every backend whatever its cell; tracing each of the
# 14 shapes cost each backend a module of compiled models (5 minutes of CI for Keras on JAX).
SHAPES = [(arch, 1) for arch in ARCHITECTURES] + [("lstm", 2), ("bilstm", 2)]
LM_SHAPES = [(arch, 1) for arch in CAUSAL_ARCHITECTURES] + [("lstm", 2)]
LM_VOCAB = 500
BATCH = 16
LOCKSTEP_STEPS = 50
WEIGHTS_SEED = 7  # the initial weights every compared model loads
ORDER_SEED = 3  # the batch order of lockstep training


def backend_pairs() -> list[tuple[str, str]]:
    """Every pair of registered backends, each once, in registry order."""
    return list(itertools.combinations(BACKENDS, 2))


def comparable_backend(name: str) -> Backend:
    """`get_backend(name)`, reloading Keras first if this process holds it on another backend.

    For the tests and docs/scripts, which compare every backend in one process; a run has a
    process per backend and never reloads (`backends.keras_loading`).
    """
    info = BACKENDS[name]
    if info.keras_backend is not None:
        switch_keras_backend(info.keras_backend)
    return get_backend(name)


def small_spec(arch: str, layers: int) -> ModelSpec:
    """The classification model of the equivalence tests and the drift table."""
    return ModelSpec(arch, vocab_size=2000, embedding_dim=16, hidden_size=12, num_layers=layers)


def lm_spec(arch: str, layers: int) -> ModelSpec:
    """The language model of the equivalence tests: Dense(vocab) at every time step."""
    return ModelSpec(
        arch, LM_VOCAB, embedding_dim=16, hidden_size=12, num_layers=layers, task="language_model"
    )


def loaded_model(
    backend: Backend, spec: ModelSpec, optimizer: str = "rmsprop", learning_rate: float = 1e-3
) -> TrainableModel:
    """A model of `spec` holding the shared initial weights (`WEIGHTS_SEED`)."""
    model = backend.build(spec, OptimizerSpec(optimizer, learning_rate))
    model.set_weights(initial_weights(spec, seed=WEIGHTS_SEED))
    return model


def lockstep_batches(split: Split, steps: int = LOCKSTEP_STEPS) -> list[np.ndarray]:
    """The indices of the first `steps` batches in the harness's order, epoch after epoch."""
    batches: list[np.ndarray] = []
    epoch = 0
    while len(batches) < steps:
        epoch += 1
        batches += list(epoch_batches(len(split), BATCH, seed=ORDER_SEED, epoch=epoch))
    return batches[:steps]


@dataclass
class Trace:
    """What one backend computed for one model shape, in float32 on the CPU."""

    parameters: int
    initial: Weights  # as loaded, read back
    logits: np.ndarray  # at the initial weights, on the first lockstep batch
    loss: float | None = None  # at the initial weights; None where loss_and_gradients is absent
    gradients: Weights | None = None
    scores: tuple[np.ndarray, np.ndarray] | None = None  # language models: score_batch
    stepped: dict[str, Weights] = field(default_factory=dict)  # optimiser -> after one step
    losses: np.ndarray = field(default_factory=lambda: np.zeros(0))  # every lockstep step
    trained: Weights = field(default_factory=dict)  # after the lockstep steps


def _gradients(model: TrainableModel, x: np.ndarray, y: np.ndarray):
    try:
        return model.loss_and_gradients(x, y)
    except NotImplementedError:  # an optional hook: the tests skip what needs it
        return None, None


def _train(model: TrainableModel, split: Split, batches: list[np.ndarray], trace: Trace) -> None:
    losses = []
    for step, index in enumerate(batches):
        model.train_step(split.x[index], split.y[index])
        losses.append(model.take_train_metrics()[0])
        if step == 0:
            trace.stepped.setdefault("rmsprop", model.get_weights())
    trace.losses, trace.trained = np.array(losses), model.get_weights()


def classification_trace(backend: Backend, arch: str, layers: int, split: Split) -> Trace:
    """The trace of `small_spec(arch, layers)`: RMSprop for the lockstep run, and one Adam step."""
    spec = small_spec(arch, layers)
    batches = lockstep_batches(split)
    x, y = split.x[batches[0]], split.y[batches[0]]
    model = loaded_model(backend, spec, "rmsprop")
    trace = Trace(model.count_trainable_parameters(), model.get_weights(), model.predict_batch(x))
    trace.loss, trace.gradients = _gradients(model, x, y)
    _train(model, split, batches, trace)
    adam = loaded_model(backend, spec, "adam")
    adam.train_step(x, y)
    trace.stepped["adam"] = adam.get_weights()
    return trace


def language_model_trace(backend: Backend, arch: str, layers: int, split: Split) -> Trace:
    """The trace of `lm_spec(arch, layers)`, trained with Adam at 3e-3."""
    model = loaded_model(backend, lm_spec(arch, layers), "adam", learning_rate=3e-3)
    x, y = split.x[:8], split.y[:8]
    trace = Trace(model.count_trainable_parameters(), model.get_weights(), model.predict_batch(x))
    trace.scores = model.score_batch(x, y)
    trace.loss, _ = _gradients(model, x, y)
    _train(model, split, lockstep_batches(split), trace)
    return trace


def backend_traces(name: str, classification: Split, language_model: Split) -> dict[str, Trace]:
    """Every trace of backend `name`, keyed ``"gru-2layer"`` and ``"lm-gru-2layer"``."""
    backend = comparable_backend(name)
    traces = {
        f"{arch}-{layers}layer": classification_trace(backend, arch, layers, classification)
        for arch, layers in SHAPES
    }
    for arch, layers in LM_SHAPES:
        trace = language_model_trace(backend, arch, layers, language_model)
        traces[f"lm-{arch}-{layers}layer"] = trace
    return traces


def largest_weight_gap(a: Weights, b: Weights) -> float:
    """The largest absolute difference between two models' weights, over every tensor."""
    return max(float(np.abs(a[name] - b[name]).max()) for name in a)
