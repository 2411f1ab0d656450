"""How two backends are shown to compute the same function: same weights in, same batches through.

The equivalence tests (tests/test_equivalence.py) assert bounds on what these functions return;
docs/scripts/equivalence_drift.py prints the same figures for docs/equivalence.md. Both import
them from here, and both read the same slice of real IMDB reviews (`harness.data.slice`), so
the table in the docs measures exactly what the tests check.
"""

from __future__ import annotations

import itertools

import numpy as np

from backends import BACKENDS, TrainableModel, Weights, get_backend
from harness.initialization import initial_weights
from harness.model_spec import ARCHITECTURES, ModelSpec, OptimizerSpec
from harness.tasks import Split
from harness.training import epoch_batches

SHAPES = [(arch, layers) for arch in ARCHITECTURES for layers in (1, 2)]  # (architecture, layers)
BATCH = 16
LOCKSTEP_STEPS = 50
WEIGHTS_SEED = 7  # the initial weights every compared model loads
ORDER_SEED = 3  # the batch order of lockstep training


def backend_pairs() -> list[tuple[str, str]]:
    """Every pair of registered backends, each once, in registry order."""
    return list(itertools.combinations(BACKENDS, 2))


def small_spec(arch: str, layers: int) -> ModelSpec:
    """The classification model of the equivalence tests and the drift table."""
    return ModelSpec(arch, vocab_size=2000, embedding_dim=16, hidden_size=12, num_layers=layers)


def twin_models(
    names: tuple[str, ...],
    spec: ModelSpec,
    optimizer: str = "rmsprop",
    learning_rate: float = 1e-3,
) -> list[TrainableModel]:
    """One model per backend in `names`, all holding the same initial weights."""
    weights = initial_weights(spec, seed=WEIGHTS_SEED)
    models = []
    for name in names:
        model = get_backend(name).build(spec, OptimizerSpec(optimizer, learning_rate))
        model.set_weights(weights)
        models.append(model)
    return models


def lockstep_losses(
    models: list[TrainableModel], split: Split, steps: int = LOCKSTEP_STEPS
) -> np.ndarray:
    """Train every model on the same `steps` batches of `split`, in the harness's order (epoch
    after epoch as needed), one step each in turn; each step's loss, ``(models, steps)``."""
    curves: list[list[float]] = [[] for _ in models]
    epoch = 0
    while len(curves[0]) < steps:
        epoch += 1
        for index in epoch_batches(len(split), BATCH, seed=ORDER_SEED, epoch=epoch):
            if len(curves[0]) == steps:
                break
            for curve, model in zip(curves, models, strict=True):
                model.train_step(split.x[index], split.y[index])
                curve.append(model.take_train_metrics()[0])
    return np.array(curves)


def largest_weight_gap(a: Weights, b: Weights) -> float:
    """The largest absolute difference between two models' weights, over every tensor."""
    return max(float(np.abs(a[name] - b[name]).max()) for name in a)
