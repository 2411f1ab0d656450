"""Proof that every pair of registered backends computes the same function and takes the same steps.

Every test loads the harness's initial weights into both backends of a pair, feeds both the same
real IMDB batches and compares the results tensor by tensor, in float32 on the CPU. The pairs are
`itertools.combinations` of `BACKENDS`, so a new backend is compared with each existing one the
moment it is registered; `BENCH_TEST_BROKEN_BACKEND=1` adds a deliberately broken one
(tests/broken_backend.py) to show that these tests catch it.
"""

from __future__ import annotations

import numpy as np
import pytest

from backends import BACKENDS, get_backend
from backends.equivalence import (
    BATCH,
    SHAPES,
    backend_pairs,
    lockstep_losses,
    small_spec,
    twin_models,
)
from harness.data.classification import load_imdb
from harness.data.language_model import load_language_model_data
from harness.errors import BenchError
from harness.model_spec import (
    ARCHITECTURES,
    CAUSAL_ARCHITECTURES,
    ModelSpec,
    OptimizerSpec,
    count_parameters,
)
from harness.training import epoch_batches

PAIRS = backend_pairs()
PAIR_IDS = [f"{a}-{b}" for a, b in PAIRS]
IDS = [f"{arch}-{layers}layer" for arch, layers in SHAPES]


@pytest.fixture(params=PAIRS, ids=PAIR_IDS)
def pair(request) -> tuple[str, str]:
    return request.param


@pytest.fixture(scope="module")
def imdb(imdb_slice):
    return load_imdb(imdb_slice, num_words=2000, sequence_length=48)


@pytest.fixture(scope="module")
def batch(imdb):
    index = next(epoch_batches(len(imdb.train), BATCH, seed=0, epoch=1))
    return imdb.train.x[index], imdb.train.y[index]


def gradients_of(model, x, y):
    """The optional `loss_and_gradients`, or a skip naming the backend that leaves it out."""
    try:
        return model.loss_and_gradients(x, y)
    except NotImplementedError as error:
        pytest.skip(f"optional hook not implemented: {error}")


def assert_weights_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].shape == b[name].shape, name
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize("name", tuple(BACKENDS))
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (ModelSpec("simple_rnn", 10_000, 32, 32), 322_113),
        (ModelSpec("lstm", 10_000, 32, 32), 328_353),
        # Embedding(10000, 50) + Bidirectional(LSTM(128)) + Dense(1): the layer alone is 183,296.
        (ModelSpec("bilstm", 10_000, 50, 128), 10_000 * 50 + 183_296 + 257),
    ],
    ids=["simple_rnn", "lstm", "bilstm"],
)
def test_parameter_counts_match_keras_reference_values(spec, expected, name):
    model = get_backend(name).build(spec, OptimizerSpec())
    assert model.count_trainable_parameters() == expected
    assert count_parameters(spec) == expected


@pytest.mark.parametrize(("arch", "layers"), SHAPES, ids=IDS)
def test_same_weights_same_logits_loss_and_gradients(pair, arch, layers, batch):
    first, second = twin_models(pair, small_spec(arch, layers))
    assert first.count_trainable_parameters() == second.count_trainable_parameters()
    x, y = batch
    np.testing.assert_allclose(first.predict_batch(x), second.predict_batch(x), rtol=0, atol=1e-5)
    first_loss, first_grads = gradients_of(first, x, y)
    second_loss, second_grads = gradients_of(second, x, y)
    assert first_loss == pytest.approx(second_loss, abs=1e-6)
    assert first_grads.keys() == second_grads.keys()
    for name, grad in first_grads.items():
        scale = max(float(np.abs(grad).max()), 1e-12)
        relative = float(np.abs(grad - second_grads[name]).max()) / scale
        assert relative <= 1e-4, f"{name}: relative gradient difference {relative:.2e}"


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
@pytest.mark.parametrize(("arch", "layers"), SHAPES, ids=IDS)
def test_one_optimizer_step_gives_the_same_weights(pair, arch, layers, optimizer, batch):
    first, second = twin_models(pair, small_spec(arch, layers), optimizer)
    before = first.get_weights()
    for model in (first, second):
        model.train_step(*batch)
    after = first.get_weights()
    assert any(not np.array_equal(before[n], after[n]) for n in before), "the step changed nothing"
    assert_weights_close(after, second.get_weights(), atol=1e-5)


@pytest.mark.parametrize(("arch", "layers"), SHAPES, ids=IDS)
def test_lockstep_training_loss_curves_agree(pair, arch, layers, imdb):
    """50 steps on real reviews in the harness's batch order; the losses agree at every step."""
    models = twin_models(pair, small_spec(arch, layers), "rmsprop")
    curves = lockstep_losses(models, imdb.train)
    drift = np.abs(curves[0] - curves[1])
    assert drift.max() <= 1e-3, f"largest per-step loss difference {drift.max():.2e}"
    # The models did learn something together, so the agreement is not two flat lines.
    assert curves[0][-10:].mean() < curves[0][:10].mean()
    assert_weights_close(models[0].get_weights(), models[1].get_weights(), atol=1e-4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_weights_transfer_in_both_directions(pair, arch, batch):
    first, second = twin_models(pair, small_spec(arch, 2))
    x, y = batch
    first.train_step(x, y)  # move away from the shared start so a transfer is visible
    second.set_weights(first.get_weights())
    np.testing.assert_allclose(second.predict_batch(x), first.predict_batch(x), rtol=0, atol=1e-5)
    for _ in range(2):
        second.train_step(x, y)
    first.set_weights(second.get_weights())
    np.testing.assert_allclose(first.predict_batch(x), second.predict_batch(x), rtol=0, atol=1e-5)
    assert_weights_close(first.get_weights(), second.get_weights(), atol=0)


# -- the language-model head: Dense(vocab) at every time step, softmax cross-entropy ----------
LM_SHAPES = [(arch, layers) for arch in CAUSAL_ARCHITECTURES for layers in (1, 2)]
LM_IDS = [f"{arch}-{layers}layer" for arch, layers in LM_SHAPES]
LM_VOCAB = 500


@pytest.fixture(scope="module")
def lm_corpus(imdb_slice):
    return load_language_model_data(imdb_slice, num_words=LM_VOCAB, sequence_length=16)


def lm_spec(arch: str, layers: int) -> ModelSpec:
    return ModelSpec(
        arch, LM_VOCAB, embedding_dim=16, hidden_size=12, num_layers=layers, task="language_model"
    )


@pytest.mark.parametrize(("arch", "layers"), LM_SHAPES, ids=LM_IDS)
def test_language_model_same_logits_loss_and_token_scores(pair, arch, layers, lm_corpus):
    first, second = twin_models(pair, lm_spec(arch, layers))
    x, y = lm_corpus.train.x[:8], lm_corpus.train.y[:8]
    first_logits, second_logits = first.predict_batch(x), second.predict_batch(x)
    assert first_logits.shape == (8, 16, LM_VOCAB)
    np.testing.assert_allclose(first_logits, second_logits, rtol=0, atol=1e-5)
    first_scores, second_scores = first.score_batch(x, y), second.score_batch(x, y)
    np.testing.assert_allclose(first_scores[0], second_scores[0], rtol=0, atol=1e-5)
    assert (first_scores[1] == second_scores[1]).mean() > 0.99  # argmax ties may break apart
    assert gradients_of(first, x, y)[0] == pytest.approx(gradients_of(second, x, y)[0], abs=1e-6)


@pytest.mark.parametrize(("arch", "layers"), LM_SHAPES, ids=LM_IDS)
def test_language_model_lockstep_training_loss_curves_agree(pair, arch, layers, lm_corpus):
    models = twin_models(pair, lm_spec(arch, layers), "adam", learning_rate=3e-3)
    curves = lockstep_losses(models, lm_corpus.train)
    drift = np.abs(curves[0] - curves[1])
    assert drift.max() <= 1e-3, f"largest per-step loss difference {drift.max():.2e}"
    assert curves[0][-10:].mean() < curves[0][:10].mean() - 0.5  # it learned word statistics
    assert_weights_close(models[0].get_weights(), models[1].get_weights(), atol=1e-4)


def test_a_bidirectional_model_cannot_be_a_language_model():
    with pytest.raises(BenchError, match="expected one of simple_rnn, lstm, gru for a language"):
        ModelSpec("bilstm", LM_VOCAB, 16, 12, task="language_model")
