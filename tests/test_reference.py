"""What every registered backend computes, beyond its interface: the numpy reference's logits
(`harness.reference`) and the same numbers again from the same seed."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import TINY_VOCAB, WEIGHTS_SEED, built, tiny_spec

from harness.config import RunConfig
from harness.initialization import initial_weights
from harness.model_spec import ARCHITECTURES, CAUSAL_ARCHITECTURES
from harness.reference import reference_logits
from harness.training import train

VOCAB = TINY_VOCAB  # the vocabulary of the `tiny_imdb` fixture


REFERENCE_CASES = [
    (task, arch, layers)
    for task, archs in (("classification", ARCHITECTURES), ("language_model", CAUSAL_ARCHITECTURES))
    for arch in archs
    for layers in (1, 2)
]


@pytest.mark.parametrize(("task", "arch", "layers"), REFERENCE_CASES)
def test_predict_batch_is_the_numpy_reference_forward_pass(backend, task, arch, layers, windows):
    """Logits against `harness.reference`, Keras's cell formulas in numpy: on a CPU in float32
    every backend agrees with it to 1e-5 (`bench doctor` runs the same check on the device)."""
    if backend.accelerator() is not None:
        pytest.skip("on a GPU the gap is `bench doctor`'s to judge (TF32 and fused kernels)")
    spec = tiny_spec(arch, layers, task=task)
    model = built(backend, spec)
    x = windows[0][:4]
    expected = reference_logits(spec, initial_weights(spec, WEIGHTS_SEED), x)
    np.testing.assert_allclose(model.predict_batch(x), expected, rtol=0, atol=1e-5)


def test_weights_loaded_after_training_replace_the_trained_ones(backend, windows):
    """A model that has trained (on JAX its weights then live in the step's state) and is then
    given other weights computes exactly the reference forward pass of those."""
    spec = tiny_spec("lstm", 2)
    model = built(backend, spec)
    x = windows[0][:4]
    model.train_step(x, np.ones(len(x), np.float32))
    other = initial_weights(spec, WEIGHTS_SEED + 1)
    model.set_weights(other)
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(value, other[name], err_msg=name)
    np.testing.assert_allclose(
        model.predict_batch(x), reference_logits(spec, other, x), rtol=0, atol=1e-5
    )


def test_same_seed_gives_identical_metrics(backend_name, backend, tiny_imdb):
    """Through `train`, with dropout on, so the framework's own random numbers are covered too;
    another seed gives other numbers."""
    sizes = {"hidden_size": 8, "embedding_dim": 8, "num_words": VOCAB, "sequence_length": 32}

    def config(seed: int) -> RunConfig:
        return RunConfig(
            backend=backend_name,
            architecture="gru",
            epochs=2,
            seed=seed,
            dropout_rate=0.3,
            batch_size=32,
            **sizes,
        )

    first, second = train(config(5), tiny_imdb), train(config(5), tiny_imdb)
    assert [e.train_loss for e in first.epochs] == [e.train_loss for e in second.epochs]
    assert [e.val_loss for e in first.epochs] == [e.val_loss for e in second.epochs]
    assert first.test == second.test
    assert train(config(6), tiny_imdb).epochs[0].train_loss != first.epochs[0].train_loss
