"""One conformance suite for every registered backend: each interface method, every architecture.

Written against `backends.base` alone and parametrised over `BACKENDS`, so a new backend is tested
once registered; optional hooks are skipped, with the reason, where a backend leaves them out.
Cases that cost seconds each run the GRU in the quick set and the other architectures as slow.
`BENCH_TEST_BROKEN_BACKEND=1` adds a deliberately broken backend (tests/broken_backend.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import TINY_VOCAB, WEIGHTS_SEED, built, tiny_spec

from backends import BACKENDS, TrainableModel, Weights
from harness import metrics
from harness.config import RunConfig
from harness.errors import BenchError
from harness.execution import ExecutionOptions
from harness.initialization import initial_weights
from harness.model_spec import (
    ARCHITECTURES,
    CAUSAL_ARCHITECTURES,
    ModelSpec,
    OptimizerSpec,
    count_parameters,
    weight_shapes,
)
from harness.tasks import predict_logits, token_log_likelihood
from harness.training import train

VOCAB = TINY_VOCAB  # the vocabulary of the `tiny_imdb` fixture
KERNELS = ("cudnn", "onednn", "generic")
SLOW = pytest.mark.slow


def quick_gru(architectures: tuple[str, ...]) -> list:
    """`architectures` as parameters: the GRU in the quick set, the others marked slow."""
    return [pytest.param(a, marks=() if a == "gru" else SLOW) for a in architectures]


@pytest.fixture(scope="module")
def batch(tiny_imdb) -> tuple[np.ndarray, np.ndarray]:
    return tiny_imdb.train.x[:16], tiny_imdb.train.y[:16]


def assert_initial_weights(model: TrainableModel, spec: ModelSpec) -> None:
    initial = initial_weights(spec, WEIGHTS_SEED)
    for name, value in model.get_weights().items():
        np.testing.assert_array_equal(value, initial[name], err_msg=f"{name} moved")


def optional(call, *args):
    """The optional hook's answer, or a skip that names the hook the backend leaves out."""
    try:
        return call(*args)
    except NotImplementedError as error:
        pytest.skip(f"optional hook not implemented: {error}")


def assert_scores_are_the_logits(model: TrainableModel, x, y, atol: float):
    """`score_batch` is the log-softmax of the logits at each target, and their argmax."""
    logits = model.predict_batch(x).astype(np.float64)
    assert logits.shape == (*x.shape, VOCAB)
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    log_probs, predicted = model.score_batch(x, y)
    assert log_probs.shape == predicted.shape == x.shape
    expected = np.take_along_axis(log_softmax, y[..., None].astype(np.int64), -1)[..., 0]
    np.testing.assert_allclose(log_probs, expected, rtol=0, atol=atol)
    np.testing.assert_array_equal(predicted, logits.argmax(-1))
    return log_probs, predicted


# -- Backend: the core -------------------------------------------------------------------------


def test_registry_entry_and_device_describe_the_backend(backend_name, backend):
    info = BACKENDS[backend_name]
    framework, version = backend.framework()
    assert backend.name == backend_name and framework in info.packages and version
    assert info.display_name and not info.missing_packages()
    accelerator = backend.accelerator()
    assert accelerator is None or (isinstance(accelerator, str) and accelerator)
    expected_tags = {"keras_backend": info.keras_backend} if info.keras_backend else {}
    assert backend.runtime_tags() == expected_tags
    backend.reset_peak_device_memory()
    assert (backend.peak_device_memory() is None) == (accelerator is None)


def test_build_refuses_fp16_without_a_gpu(backend):
    if backend.accelerator() is not None:
        pytest.skip("fp16 runs on this machine's GPU")
    with pytest.raises(BenchError, match="fp16 needs one"):
        backend.build(tiny_spec("lstm"), OptimizerSpec(), ExecutionOptions("fp16"))


# The GRU alone: every architecture has the same Dropout layers after its recurrent layers, and
# what a seed fixes is the backend's random numbers, not the cell's.
@pytest.mark.parametrize("arch", ["gru"])
def test_seed_fixes_the_dropout_masks(backend, arch, batch):
    def weights_after_training(seed: int) -> Weights:
        backend.seed(seed)
        model = built(backend, tiny_spec(arch, dropout_rate=0.3), learning_rate=1e-2)
        for _ in range(2):
            model.train_step(*batch)
        return model.get_weights()

    first, again, other = (weights_after_training(seed) for seed in (5, 5, 6))
    for name in first:
        np.testing.assert_array_equal(first[name], again[name], err_msg=name)
    assert any(not np.array_equal(first[n], other[n]) for n in first), "the seed changed nothing"


def test_dropout_draws_new_masks_at_every_step(backend, batch):
    """At a learning rate of 1e-9 the weights barely move (a step changes the loss by about
    1e-8), so two steps on the same batch differ by their dropout masks: a backend that reused
    one mask would report the same loss twice."""
    model = built(backend, tiny_spec("gru", dropout_rate=0.5), learning_rate=1e-9)
    losses = []
    for _ in range(2):
        model.train_step(*batch)
        losses.append(model.take_train_metrics()[0])
    assert abs(losses[0] - losses[1]) > 1e-5, losses


# -- TrainableModel: the core ------------------------------------------------------------------


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_weights_round_trip_and_the_model_describes_itself(backend, arch, layers):
    spec = tiny_spec(arch, layers)
    weights = initial_weights(spec, 3)
    model = built(backend, spec)
    read = model.get_weights()
    assert {name: value.shape for name, value in read.items()} == weight_shapes(spec)
    for name, value in read.items():
        assert value.dtype == np.float32, name
        np.testing.assert_array_equal(value, weights[name], err_msg=name)
    assert model.count_trainable_parameters() == count_parameters(spec)
    assert isinstance(model.summary(), str) and model.summary()
    assert model.denormal_mode().split()[0] in ("flush", "keep")


TRAIN_CASES = [("classification", arch) for arch in ARCHITECTURES]
TRAIN_CASES += [("language_model", arch) for arch in CAUSAL_ARCHITECTURES]


@pytest.mark.parametrize(("task", "arch"), TRAIN_CASES)
def test_train_step_learns_and_take_train_metrics_resets(backend, task, arch, batch, windows):
    spec = tiny_spec(arch, task=task)
    x, y = batch if task == "classification" else windows
    model = built(backend, spec, learning_rate=1e-2)
    before = model.get_weights()
    model.train_step(x, y)
    first_loss, accuracy = model.take_train_metrics()
    chance = np.log(2) if task == "classification" else np.log(VOCAB)
    assert first_loss == pytest.approx(chance, rel=0.1) and 0 <= accuracy <= 1
    assert model.take_train_metrics() == (0.0, 0.0), "take_train_metrics must reset"
    for _ in range(5):
        model.train_step(x, y)
    assert model.take_train_metrics()[0] < first_loss, "five more steps on one batch did not learn"
    after = model.get_weights()
    assert all(not np.array_equal(before[name], after[name]) for name in before)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_predict_batch_is_inference_mode_and_chunks_alike(backend, arch, batch):
    model = built(backend, tiny_spec(arch, dropout_rate=0.5))
    x = batch[0]
    logits = model.predict_batch(x)
    assert logits.shape == (len(x),) and logits.dtype == np.float32
    np.testing.assert_array_equal(model.predict_batch(x), logits, err_msg="dropout at inference")
    np.testing.assert_allclose(predict_logits(model, x, batch_size=5), logits, rtol=0, atol=1e-6)
    assert predict_logits(model, x[:0]).shape == (0,)


@pytest.mark.parametrize("arch", CAUSAL_ARCHITECTURES)
def test_score_batch_is_the_log_softmax_of_the_logits(backend, arch, windows):
    model = built(backend, tiny_spec(arch, task="language_model"))
    x, y = windows
    log_probs, predicted = assert_scores_are_the_logits(model, x, y, atol=1e-5)
    chunked = token_log_likelihood(model, x, y, batch_size=3)
    np.testing.assert_allclose(chunked[0], log_probs, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(chunked[1], predicted)


@pytest.mark.parametrize("arch", quick_gru(CAUSAL_ARCHITECTURES))
def test_language_model_scoring_runs_at_the_training_precision(backend, arch, windows):
    """Validation perplexity (`score_batch`) and `predict_batch` are one computation: under bf16
    both run the bf16 network, so the backends' perplexities are comparable."""
    spec = tiny_spec(arch, task="language_model")
    try:
        model = backend.build(spec, OptimizerSpec(), ExecutionOptions(precision="bf16"))
    except BenchError as error:  # e.g. a CPU without a bf16 kernel for this cell
        pytest.skip(f"bf16 refused on this machine: {error}")
    model.set_weights(initial_weights(spec, 3))
    assert_scores_are_the_logits(model, *windows, atol=1e-4)


# The loop is the same for every cell (the cells are held to the reference and to each other
# elsewhere): the GRU, and the BiLSTM with its two directions in the slow set.
@pytest.mark.parametrize("arch", quick_gru(("gru", "bilstm")))
def test_training_reports_every_epoch_the_test_metrics_and_the_run_tags(
    backend_name, backend, arch, tiny_imdb
):
    """The harness's training loop (`harness.training.train`) on each backend."""
    seen, started = [], []
    sizes = {"hidden_size": 8, "embedding_dim": 8, "num_words": VOCAB, "sequence_length": 32}
    sizes["batch_size"] = 32
    config = RunConfig(backend=backend_name, architecture=arch, epochs=2, seed=5, **sizes)
    result = train(config, tiny_imdb, on_epoch=seen.append, on_start=started.append)
    assert started == [result]
    assert [e.epoch for e in result.epochs] == [1, 2] == [e.epoch for e in seen]
    for epoch in result.epochs:
        assert 0 < epoch.train_loss < 5 and 0 <= epoch.val_accuracy <= 1
        assert epoch.epoch_seconds > 0 and epoch.samples_per_second > 0
        assert epoch.val_perplexity == pytest.approx(np.exp(epoch.val_loss))
    expected = {"accuracy", "precision", "recall", "f1", "roc_auc", "loss", "perplexity"}
    assert set(result.test) >= expected
    assert result.test["perplexity"] == pytest.approx(np.exp(result.test["loss"]))
    assert result.confusion.sum() == len(tiny_imdb.test)
    assert result.time_to_first_epoch >= result.epochs[0].epoch_seconds
    assert result.parameter_count == count_parameters(config.model_spec())
    assert result.memory["peak_rss_bytes"] > 50 * 2**20
    on_gpu = backend.accelerator() is not None
    assert ("peak_gpu_memory_bytes" in result.memory) == on_gpu
    tags = result.execution_tags()
    assert tags["kernel"] in (*KERNELS, "unknown") and tags["denormal_mode"].startswith("flush")


# -- optional hooks ----------------------------------------------------------------------------

# Two layers in the slow set: the equivalence tests compare 2-layer gradients pair by pair.
GRADIENT_CASES = [("classification", arch, 1) for arch in ARCHITECTURES]
GRADIENT_CASES += [pytest.param("classification", a, 2, marks=SLOW) for a in ARCHITECTURES]
GRADIENT_CASES += [("language_model", arch, 1) for arch in CAUSAL_ARCHITECTURES]


@pytest.mark.parametrize(("task", "arch", "layers"), GRADIENT_CASES)
def test_loss_and_gradients_are_the_training_loss_and_change_nothing(
    backend, task, arch, layers, batch, windows
):
    spec = tiny_spec(arch, layers, task=task)
    x, y = batch if task == "classification" else windows
    model = built(backend, spec)
    loss, gradients = optional(model.loss_and_gradients, x, y)
    assert {name: value.shape for name, value in gradients.items()} == weight_shapes(spec)
    assert all(np.isfinite(g).all() and g.dtype == np.float32 for g in gradients.values())
    assert any(np.abs(g).max() > 0 for g in gradients.values())
    assert_initial_weights(model, spec)
    if task == "classification":  # the loss is the task's loss of the model's own logits
        expected = metrics.binary_cross_entropy(model.predict_batch(x), y)
    else:
        expected = -float(np.mean(model.score_batch(x, y)[0], dtype=np.float64))
    assert loss == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_kernel_is_a_known_name_and_changes_nothing(backend, arch):
    spec = tiny_spec(arch)
    model = built(backend, spec)
    kernel = optional(model.kernel)
    assert kernel in KERNELS and model.kernel() == kernel
    assert_initial_weights(model, spec)


def test_synchronize_returns_once_the_device_is_idle(backend):
    built(backend, tiny_spec("gru")).predict_batch(np.ones((2, 4), np.int32))
    assert optional(backend.synchronize) is None


@pytest.mark.slow  # a fresh process per framework
def test_limit_threads_caps_the_framework(backend_name):
    """In a fresh process: a framework fixes its thread pools at its first parallel work."""
    code = (
        f"import sys, importlib; sys.path.insert(0, {os.path.dirname(__file__)!r}); "
        f"print(importlib.import_module({BACKENDS[backend_name].module!r}).BACKEND.limit_threads(1))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if "NotImplementedError" in done.stderr:
        pytest.skip("optional hook not implemented: limit_threads")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "1"


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_plain_network_starts_from_the_harness_weights(backend, arch):
    """`bench perf`'s ratio compares equal arithmetic only if both paths start alike: PyTorch's
    default init put the plain loop's backward pass into denormals, 4-7x slower."""
    spec = tiny_spec(arch)
    weights = initial_weights(spec, 11)
    plain = optional(
        backend.plain_network_weights, spec, optional(backend.plain_network, spec, weights)
    )
    assert plain.keys() == weights.keys()
    for name, value in weights.items():
        np.testing.assert_array_equal(plain[name], value, err_msg=name)


# The GRU, and the LSTM (a fused kernel in PyTorch's plain loop on a CPU) in the slow set; every
# architecture's plain network starts from the harness's weights (the test above).
@pytest.mark.parametrize("arch", quick_gru(("gru", "lstm")))
def test_plain_training_alternates_with_the_caller_between_its_epochs(backend, arch, tiny_imdb):
    """`bench perf` times a harness pass between the plain loop's epochs: one call per epoch."""
    spec = tiny_spec(arch)
    x, y = tiny_imdb.train.x[:64], tiny_imdb.train.y[:64]
    order: list[str] = []

    def after_epoch() -> None:
        order.append(f"after {len(order)}")

    arguments = (spec, OptimizerSpec(), initial_weights(spec, 0), x, y, 32, 3)
    seconds = optional(backend.plain_training_seconds, *arguments, after_epoch)
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    assert order == ["after 0", "after 1", "after 2"]
