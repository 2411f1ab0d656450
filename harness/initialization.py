"""Keras's default initialisation scheme, drawn once in numpy and loaded into every backend.

Drawing the initial weights in the harness (rather than in each framework) makes "same
initialisation" literal: a given seed starts every backend from the very same numbers.
"""

from __future__ import annotations

import numpy as np

from harness.model_spec import ModelSpec, weight_shapes

EMBEDDING_RANGE = 0.05  # keras.initializers.RandomUniform(-0.05, 0.05), Embedding's default


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Keras's GlorotUniform for a 2-D kernel laid out (fan_in, fan_out)."""
    fan_in, fan_out = shape
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def orthogonal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Keras's Orthogonal (gain 1): QR of a Gaussian matrix, signs fixed by R's diagonal."""
    rows, cols = shape
    flat = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    return q.T if rows < cols else q


def initial_weights(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    """Canonical float32 weights for `spec`: Glorot kernels, orthogonal recurrent kernels,
    zero biases with the LSTM forget gate at 1, uniform embeddings."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, shape in weight_shapes(spec).items():
        if name == "embedding":
            value = rng.uniform(-EMBEDDING_RANGE, EMBEDDING_RANGE, size=shape)
        elif name.endswith("recurrent_kernel"):
            value = orthogonal(rng, shape)
        elif name.endswith("kernel"):
            value = glorot_uniform(rng, shape)
        else:
            value = np.zeros(shape)
            if name.endswith("/bias") and spec.cell == "lstm" and name != "dense/bias":
                units = spec.hidden_size
                value[units : 2 * units] = 1.0  # unit_forget_bias=True; gate order i, f, c, o
        weights[name] = value.astype(np.float32)
    return weights
