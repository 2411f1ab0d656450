"""Proof that the Keras and PyTorch backends compute the same function and take the same steps.

Every test loads the harness's initial weights into both frameworks, feeds both the same real
IMDB batches and compares the results tensor by tensor, in float32 on the CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from backends import get_backend
from harness.data.classification import load_imdb
from harness.data.language_model import load_language_model_data
from harness.errors import BenchError
from harness.initialization import initial_weights
from harness.model_spec import (
    ARCHITECTURES,
    CAUSAL_ARCHITECTURES,
    ModelSpec,
    OptimizerSpec,
    count_parameters,
)
from harness.training import epoch_batches

SHAPES = [(arch, layers) for arch in ARCHITECTURES for layers in (1, 2)]
IDS = [f"{arch}-{layers}layer" for arch, layers in SHAPES]
BATCH = 16
LOCKSTEP_STEPS = 50


@pytest.fixture(scope="module")
def imdb(imdb_slice):
    return load_imdb(imdb_slice, num_words=2000, sequence_length=48)


@pytest.fixture(scope="module")
def batch(imdb):
    index = next(epoch_batches(len(imdb.train), BATCH, seed=0, epoch=1))
    return imdb.train.x[index], imdb.train.y[index]


def small_spec(arch: str, layers: int) -> ModelSpec:
    return ModelSpec(arch, vocab_size=2000, embedding_dim=16, hidden_size=12, num_layers=layers)


def twin_models(spec: ModelSpec, optimizer: str = "rmsprop", learning_rate: float = 1e-3):
    """A Keras model and a PyTorch model holding the same initial weights."""
    weights = initial_weights(spec, seed=7)
    twins = []
    for name in ("keras", "torch"):
        model = get_backend(name).build(spec, OptimizerSpec(optimizer, learning_rate))
        model.set_weights(weights)
        twins.append(model)
    return twins


def assert_weights_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].shape == b[name].shape, name
        np.testing.assert_allclose(a[name], b[name], rtol=0, atol=atol, err_msg=name)


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
def test_parameter_counts_match_keras_reference_values(spec, expected):
    keras_model, torch_model = twin_models(spec)
    assert keras_model.model.count_params() == expected  # what Keras itself reports
    assert keras_model.count_trainable_parameters() == expected
    assert torch_model.count_trainable_parameters() == expected
    assert count_parameters(spec) == expected


@pytest.mark.parametrize(("arch", "layers"), SHAPES, ids=IDS)
def test_same_weights_same_logits_loss_and_gradients(arch, layers, batch):
    spec = small_spec(arch, layers)
    keras_model, torch_model = twin_models(spec)
    assert keras_model.count_trainable_parameters() == torch_model.count_trainable_parameters()
    x, y = batch
    np.testing.assert_allclose(
        keras_model.predict_logits(x), torch_model.predict_logits(x), rtol=0, atol=1e-5
    )
    keras_loss, keras_grads = keras_model.loss_and_gradients(x, y)
    torch_loss, torch_grads = torch_model.loss_and_gradients(x, y)
    assert keras_loss == pytest.approx(torch_loss, abs=1e-6)
    assert keras_grads.keys() == torch_grads.keys()
    for name, keras_grad in keras_grads.items():
        scale = max(float(np.abs(keras_grad).max()), 1e-12)
        relative = float(np.abs(keras_grad - torch_grads[name]).max()) / scale
        assert relative <= 1e-4, f"{name}: relative gradient difference {relative:.2e}"


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
@pytest.mark.parametrize(("arch", "layers"), SHAPES, ids=IDS)
def test_one_optimizer_step_gives_the_same_weights(arch, layers, optimizer, batch):
    keras_model, torch_model = twin_models(small_spec(arch, layers), optimizer)
    before = keras_model.get_weights()
    for model in (keras_model, torch_model):
        model.train_step(*batch)
    after = keras_model.get_weights()
    assert any(not np.array_equal(before[n], after[n]) for n in before), "the step changed nothing"
    assert_weights_close(after, torch_model.get_weights(), atol=1e-5)


@pytest.mark.parametrize(("arch", "layers"), SHAPES, ids=IDS)
def test_lockstep_training_loss_curves_agree(arch, layers, imdb):
    """50 steps on real reviews in the harness's batch order; the losses agree at every step."""
    keras_model, torch_model = twin_models(small_spec(arch, layers), "rmsprop")
    steps, epoch, curves = 0, 0, {"keras": [], "torch": []}
    while steps < LOCKSTEP_STEPS:
        epoch += 1
        for index in epoch_batches(len(imdb.train), BATCH, seed=3, epoch=epoch):
            if steps == LOCKSTEP_STEPS:
                break
            x, y = imdb.train.x[index], imdb.train.y[index]
            for name, model in (("keras", keras_model), ("torch", torch_model)):
                model.train_step(x, y)
                curves[name].append(model.take_train_metrics()[0])
            steps += 1
    keras_curve, torch_curve = np.array(curves["keras"]), np.array(curves["torch"])
    drift = np.abs(keras_curve - torch_curve)
    assert drift.max() <= 1e-3, f"largest per-step loss difference {drift.max():.2e}"
    # The models did learn something together, so the agreement is not two flat lines.
    assert keras_curve[-10:].mean() < keras_curve[:10].mean()
    assert_weights_close(keras_model.get_weights(), torch_model.get_weights(), atol=1e-4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_weights_transfer_in_both_directions(arch, batch):
    spec = small_spec(arch, 2)
    keras_model, torch_model = twin_models(spec)
    x, y = batch
    keras_model.train_step(x, y)  # move away from the shared start so a transfer is visible
    torch_model.set_weights(keras_model.get_weights())
    np.testing.assert_allclose(
        torch_model.predict_logits(x), keras_model.predict_logits(x), rtol=0, atol=1e-5
    )
    for _ in range(2):
        torch_model.train_step(x, y)
    keras_model.set_weights(torch_model.get_weights())
    np.testing.assert_allclose(
        keras_model.predict_logits(x), torch_model.predict_logits(x), rtol=0, atol=1e-5
    )
    assert_weights_close(keras_model.get_weights(), torch_model.get_weights(), atol=0)


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
def test_language_model_same_logits_loss_and_token_scores(arch, layers, lm_corpus):
    keras_model, torch_model = twin_models(lm_spec(arch, layers))
    x, y = lm_corpus.train.x[:8], lm_corpus.train.y[:8]
    keras_logits, torch_logits = keras_model.predict_logits(x), torch_model.predict_logits(x)
    assert keras_logits.shape == (8, 16, LM_VOCAB)
    np.testing.assert_allclose(keras_logits, torch_logits, rtol=0, atol=1e-5)
    assert keras_model.loss_and_gradients(x, y)[0] == pytest.approx(
        torch_model.loss_and_gradients(x, y)[0], abs=1e-6
    )
    keras_scores, torch_scores = (
        keras_model.token_log_likelihood(x, y),
        torch_model.token_log_likelihood(x, y),
    )
    np.testing.assert_allclose(keras_scores[0], torch_scores[0], rtol=0, atol=1e-5)
    assert (keras_scores[1] == torch_scores[1]).mean() > 0.99  # argmax ties may break apart


@pytest.mark.parametrize(("arch", "layers"), LM_SHAPES, ids=LM_IDS)
def test_language_model_lockstep_training_loss_curves_agree(arch, layers, lm_corpus):
    keras_model, torch_model = twin_models(lm_spec(arch, layers), "adam", learning_rate=3e-3)
    curves = {"keras": [], "torch": []}
    for index in list(epoch_batches(len(lm_corpus.train), BATCH, seed=3, epoch=1))[:LOCKSTEP_STEPS]:
        x, y = lm_corpus.train.x[index], lm_corpus.train.y[index]
        for name, model in (("keras", keras_model), ("torch", torch_model)):
            model.train_step(x, y)
            curves[name].append(model.take_train_metrics()[0])
    keras_curve, torch_curve = np.array(curves["keras"]), np.array(curves["torch"])
    assert len(keras_curve) == LOCKSTEP_STEPS
    drift = np.abs(keras_curve - torch_curve)
    assert drift.max() <= 1e-3, f"largest per-step loss difference {drift.max():.2e}"
    assert keras_curve[-10:].mean() < keras_curve[:10].mean() - 0.5  # it learned word statistics
    assert_weights_close(keras_model.get_weights(), torch_model.get_weights(), atol=1e-4)


def test_a_bidirectional_model_cannot_be_a_language_model():
    with pytest.raises(BenchError, match="expected one of simple_rnn, lstm, gru for a language"):
        ModelSpec("bilstm", LM_VOCAB, task="language_model")
