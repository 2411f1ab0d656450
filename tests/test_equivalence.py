"""Proof that every pair of registered backends computes the same function and takes the same steps.

Each backend records its traces once (`backends.equivalence`): the harness's initial weights
loaded, the same real IMDB batches fed in the harness's order, everything in float32 on the CPU.
Every pair is then compared tensor by tensor. The pairs are `itertools.combinations` of
`BACKENDS`, so a new backend is compared with each existing one the moment it is registered;
`BENCH_TEST_BROKEN_BACKEND=1` adds a deliberately broken one (tests/broken_backend.py) to show
that these tests catch it.

Weights moving between backends need no test of their own here: every backend's `set_weights`
then `predict_batch` equals the numpy reference forward pass of the same weights
(tests/test_reference.py), so any backend's weights give the same logits in any other.
"""

from __future__ import annotations

import numpy as np
import pytest

from backends import BACKENDS
from backends.equivalence import (
    LM_SHAPES,
    LM_VOCAB,
    SHAPES,
    Trace,
    backend_pairs,
    backend_traces,
    comparable_backend,
)
from harness.data.classification import load_imdb
from harness.data.language_model import load_language_model_data
from harness.errors import BenchError
from harness.model_spec import ModelSpec, OptimizerSpec, count_parameters

PAIRS = backend_pairs()
PAIR_IDS = [f"{a}~{b}" for a, b in PAIRS]  # "~": backend names hold dashes
IDS = [f"{arch}-{layers}layer" for arch, layers in SHAPES]
LM_IDS = [f"lm-{arch}-{layers}layer" for arch, layers in LM_SHAPES]


@pytest.fixture(params=PAIRS, ids=PAIR_IDS)
def pair(request) -> tuple[str, str]:
    return request.param


@pytest.fixture(scope="module")
def traces(imdb_slice):
    """Each backend's traces, recorded the first time a test asks for that backend."""
    imdb = load_imdb(imdb_slice, num_words=2000, sequence_length=48)
    corpus = load_language_model_data(imdb_slice, num_words=LM_VOCAB, sequence_length=16)
    recorded: dict[str, dict[str, Trace]] = {}

    def of(name: str) -> dict[str, Trace]:
        if name not in recorded:
            recorded[name] = backend_traces(name, imdb.train, corpus.train)
        return recorded[name]

    return of


def traces_of(traces, pair: tuple[str, str], case: str) -> tuple[Trace, Trace]:
    return traces(pair[0])[case], traces(pair[1])[case]


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
    model = comparable_backend(name).build(spec, OptimizerSpec())
    assert model.count_trainable_parameters() == expected
    assert count_parameters(spec) == expected


@pytest.mark.parametrize("case", IDS)
def test_same_weights_same_logits_loss_and_gradients(pair, case, traces):
    first, second = traces_of(traces, pair, case)
    assert first.parameters == second.parameters
    np.testing.assert_allclose(first.logits, second.logits, rtol=0, atol=1e-5)
    if first.gradients is None or second.gradients is None:
        pytest.skip("optional hook not implemented: loss_and_gradients")
    assert first.loss == pytest.approx(second.loss, abs=1e-6)
    assert first.gradients.keys() == second.gradients.keys()
    for name, grad in first.gradients.items():
        scale = max(float(np.abs(grad).max()), 1e-12)
        relative = float(np.abs(grad - second.gradients[name]).max()) / scale
        assert relative <= 1e-4, f"{name}: relative gradient difference {relative:.2e}"


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
@pytest.mark.parametrize("case", IDS)
def test_one_optimizer_step_gives_the_same_weights(pair, case, optimizer, traces):
    first, second = traces_of(traces, pair, case)
    after = first.stepped[optimizer]
    moved = [n for n in after if not np.array_equal(first.initial[n], after[n])]
    assert moved, "the step changed nothing"
    assert_weights_close(after, second.stepped[optimizer], atol=1e-5)


@pytest.mark.parametrize("case", IDS)
def test_lockstep_training_loss_curves_agree(pair, case, traces):
    """50 steps on real reviews in the harness's batch order; the losses agree at every step."""
    first, second = traces_of(traces, pair, case)
    drift = np.abs(first.losses - second.losses)
    assert len(drift) == 50 and drift.max() <= 1e-3, f"largest loss difference {drift.max():.2e}"
    # The models did learn something together, so the agreement is not two flat lines.
    assert first.losses[-10:].mean() < first.losses[:10].mean()
    assert_weights_close(first.trained, second.trained, atol=1e-4)


# -- the language-model head: Dense(vocab) at every time step, softmax cross-entropy ----------


@pytest.mark.parametrize("case", LM_IDS)
def test_language_model_same_logits_loss_and_token_scores(pair, case, traces):
    first, second = traces_of(traces, pair, case)
    assert first.logits.shape == (8, 16, LM_VOCAB)
    np.testing.assert_allclose(first.logits, second.logits, rtol=0, atol=1e-5)
    np.testing.assert_allclose(first.scores[0], second.scores[0], rtol=0, atol=1e-5)
    assert (first.scores[1] == second.scores[1]).mean() > 0.99  # argmax ties may break apart
    if first.loss is None or second.loss is None:
        pytest.skip("optional hook not implemented: loss_and_gradients")
    assert first.loss == pytest.approx(second.loss, abs=1e-6)


@pytest.mark.parametrize("case", LM_IDS)
def test_language_model_lockstep_training_loss_curves_agree(pair, case, traces):
    first, second = traces_of(traces, pair, case)
    drift = np.abs(first.losses - second.losses)
    assert drift.max() <= 1e-3, f"largest per-step loss difference {drift.max():.2e}"
    assert first.losses[-10:].mean() < first.losses[:10].mean() - 0.5  # it learned word counts
    assert_weights_close(first.trained, second.trained, atol=1e-4)


def test_a_bidirectional_model_cannot_be_a_language_model():
    with pytest.raises(BenchError, match="expected one of simple_rnn, lstm, gru for a language"):
        ModelSpec("bilstm", LM_VOCAB, 16, 12, task="language_model")
