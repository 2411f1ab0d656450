"""What several test modules share: running `bench` as a user would, and the tiny models the
backend suites build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backends import Backend, TrainableModel
from harness.initialization import initial_weights
from harness.model_spec import ModelSpec, OptimizerSpec

REPO = Path(__file__).resolve().parent.parent
TINY_VOCAB = 1000  # the vocabulary of conftest's `tiny_imdb`
WEIGHTS_SEED = 3  # the initial weights `built` loads


def bench(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`bench ARGS` in a subprocess (via `python -m harness`), from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )


def tiny_spec(arch: str, layers: int = 1, **fields) -> ModelSpec:
    return ModelSpec(arch, TINY_VOCAB, embedding_dim=8, hidden_size=8, num_layers=layers, **fields)


def built(backend: Backend, spec: ModelSpec, **optimizer) -> TrainableModel:
    """A model of `spec` on `backend` with the harness's initial weights (`WEIGHTS_SEED`)."""
    model = backend.build(spec, OptimizerSpec(**optimizer))
    model.set_weights(initial_weights(spec, WEIGHTS_SEED))
    return model
