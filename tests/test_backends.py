"""One conformance suite, run against every backend through the shared training loop."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from backends import BACKENDS, get_backend
from harness.config import RunConfig
from harness.data.classification import load_imdb
from harness.errors import BenchError
from harness.execution import ExecutionOptions
from harness.initialization import initial_weights
from harness.model_spec import count_parameters
from harness.training import epoch_batches, train


@pytest.fixture(params=sorted(BACKENDS))
def backend_name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def tiny_imdb(imdb_slice):
    return load_imdb(imdb_slice, num_words=1000, sequence_length=32)


def tiny_config(backend: str, **overrides) -> RunConfig:
    fields = {
        "architecture": "gru",
        "epochs": 2,
        "hidden_size": 8,
        "embedding_dim": 8,
        "num_words": 1000,
        "sequence_length": 32,
        "batch_size": 32,
        "seed": 5,
    }
    return RunConfig(backend=backend, **{**fields, **overrides})


def test_training_reports_every_epoch_and_the_test_metrics(backend_name, tiny_imdb):
    seen = []
    result = train(tiny_config(backend_name), tiny_imdb, on_epoch=seen.append)
    assert [e.epoch for e in result.epochs] == [1, 2] == [e.epoch for e in seen]
    for epoch in result.epochs:
        assert 0 < epoch.train_loss < 5 and 0 <= epoch.val_accuracy <= 1
        assert epoch.epoch_seconds > 0 and epoch.samples_per_second > 0
        assert epoch.val_perplexity == pytest.approx(np.exp(epoch.val_loss))
    assert set(result.test) >= {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "loss",
        "perplexity",
    }
    assert result.test["perplexity"] == pytest.approx(np.exp(result.test["loss"]))
    assert result.confusion.sum() == len(tiny_imdb.test)
    assert result.time_to_first_epoch >= result.epochs[0].epoch_seconds
    assert result.parameter_count == count_parameters(result.config.model_spec())


def test_memory_figures_that_do_not_apply_are_absent(backend_name, tiny_imdb):
    result = train(tiny_config(backend_name, epochs=1), tiny_imdb)
    assert result.memory["peak_rss_bytes"] > 50 * 2**20
    on_gpu = get_backend(backend_name).accelerator() is not None
    assert ("peak_gpu_memory_bytes" in result.memory) == on_gpu


def test_same_seed_gives_identical_metrics(backend_name, tiny_imdb):
    """With dropout on, so the framework's own random numbers are covered as well."""
    config = tiny_config(backend_name, dropout_rate=0.3)
    first, second = train(config, tiny_imdb), train(config, tiny_imdb)
    assert [e.train_loss for e in first.epochs] == [e.train_loss for e in second.epochs]
    assert [e.val_loss for e in first.epochs] == [e.val_loss for e in second.epochs]
    assert first.test == second.test
    other = train(tiny_config(backend_name, dropout_rate=0.3, seed=6), tiny_imdb)
    assert other.epochs[0].train_loss != first.epochs[0].train_loss


def test_batch_order_is_the_harness_own_seeded_permutation():
    first = list(epoch_batches(100, 32, seed=1, epoch=1))
    assert [len(b) for b in first] == [32, 32, 32, 4]
    assert sorted(np.concatenate(first).tolist()) == list(range(100))
    assert all(
        np.array_equal(a, b) for a, b in zip(first, epoch_batches(100, 32, 1, 1), strict=True)
    )
    assert not np.array_equal(
        np.concatenate(first), np.concatenate(list(epoch_batches(100, 32, 1, 2)))
    )


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(BenchError, match="expected one of keras, torch; received 'jax'"):
        get_backend("jax")
    with pytest.raises(BenchError, match="simple_rnn, lstm, gru, bilstm; received 'transformer'"):
        tiny_config("torch", architecture="transformer")
    with pytest.raises(BenchError, match="rmsprop, adam; received 'sgd'"):
        tiny_config("torch", optimizer="sgd")


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("harness.cli", ("tensorflow", "keras", "torch")),
        ("harness.training", ("tensorflow", "keras", "torch")),
        ("backends.torch_backend", ("tensorflow", "keras")),
    ],
)
def test_frameworks_are_imported_only_by_their_backend(module, forbidden):
    code = f"import sys, {module}; print(' '.join(m for m in {forbidden!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_plain_baseline_alternates_with_the_caller_between_its_epochs(backend_name, tiny_imdb):
    """`bench perf` times a harness pass between the plain loop's epochs: one call per epoch."""
    from harness.model_spec import ModelSpec, OptimizerSpec

    backend = get_backend(backend_name)
    spec = ModelSpec("gru", vocab_size=1000, embedding_dim=8, hidden_size=8)
    x, y = tiny_imdb.train.x[:64], tiny_imdb.train.y[:64]
    order: list[str] = []
    seconds = backend.plain_training_seconds(
        spec,
        OptimizerSpec(),
        initial_weights(spec, 0),
        x,
        y,
        32,
        3,
        after_epoch=lambda: order.append(f"after {len(order)}"),
    )
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    assert order == ["after 0", "after 1", "after 2"]


@pytest.mark.parametrize("architecture", ["simple_rnn", "lstm", "gru", "bilstm"])
def test_plain_and_harness_paths_start_from_the_same_weights(backend_name, architecture):
    """`bench perf`'s ratio compares equal arithmetic only if both paths start alike: PyTorch's
    default init put the plain loop's backward pass into denormals, 4-7x slower."""
    from harness.model_spec import ModelSpec, OptimizerSpec

    backend = get_backend(backend_name)
    spec = ModelSpec(architecture, vocab_size=300, embedding_dim=6, hidden_size=5)
    weights = initial_weights(spec, 11)
    harness_model = backend.build(spec, OptimizerSpec())
    harness_model.set_weights(weights)
    plain = backend.plain_network(spec, weights)
    plain_weights = read_native_weights(backend_name, spec, plain)
    expected = harness_model.get_weights()
    assert plain_weights.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(plain_weights[name], value, err_msg=name)


def read_native_weights(backend_name: str, spec, network) -> dict[str, np.ndarray]:
    """Canonical weights of a framework-native model, read through the backend's own mapping."""
    if backend_name == "torch":
        from backends.torch_backend import TorchModel
        from harness.model_spec import OptimizerSpec

        holder = TorchModel(spec, OptimizerSpec(), network.embedding.weight.device)
        holder.module = network
        return holder.get_weights()
    from backends.keras_model import canonical_variables

    return {k: np.asarray(v.numpy()) for k, v in canonical_variables(spec, network).items()}


def test_every_run_names_its_kernel_and_denormal_mode(backend_name, tiny_imdb):
    """As the framework reports it: PyTorch's CPU LSTM runs oneDNN's fused kernel, its GRU and
    every TensorFlow recurrent layer on a CPU a loop of ordinary ops."""
    started = []
    lstm = train(
        tiny_config(backend_name, architecture="lstm", epochs=1),
        tiny_imdb,
        evaluate_test=False,
        on_start=started.append,
    )
    gru = train(tiny_config(backend_name, epochs=1), tiny_imdb, evaluate_test=False)
    assert started == [lstm]
    assert lstm.execution_tags() == {
        "kernel": "onednn" if backend_name == "torch" else "generic",
        "denormal_mode": "flush",
    }
    assert gru.kernel == "generic"


def test_flush_denormal_switches_pytorch_and_is_refused_where_it_cannot_be_off(backend_name):
    from harness.model_spec import ModelSpec, OptimizerSpec

    backend = get_backend(backend_name)
    spec = ModelSpec("gru", vocab_size=50, embedding_dim=4, hidden_size=4)
    keep = ExecutionOptions(flush_denormal=False)
    if backend_name == "keras":
        with pytest.raises(BenchError, match="flush_denormal: expected true for the keras"):
            backend.build(spec, OptimizerSpec(), keep)
        return
    import torch

    def denormal_product() -> float:
        return (torch.full((4,), 1e-39) * 1.0001).min().item()

    assert backend.build(spec, OptimizerSpec(), keep).denormal_mode() == "keep"
    assert denormal_product() > 0  # the denormal survives
    assert backend.build(spec, OptimizerSpec()).denormal_mode() == "flush"
    assert denormal_product() == 0  # flushed to zero


def test_language_model_scoring_runs_at_the_training_precision(backend_name, tiny_imdb):
    """Validation perplexity (`token_log_likelihood`) and `predict_logits` are one computation:
    under bf16 both run the bf16 network, so the two frameworks' perplexities are comparable."""
    from harness.model_spec import ModelSpec, OptimizerSpec

    backend = get_backend(backend_name)
    spec = ModelSpec("gru", vocab_size=1000, embedding_dim=8, hidden_size=8, task="language_model")
    model = backend.build(spec, OptimizerSpec(), ExecutionOptions(precision="bf16"))
    model.set_weights(initial_weights(spec, 3))
    x = tiny_imdb.train.x[:4, :-1]
    y = tiny_imdb.train.x[:4, 1:]
    logits = model.predict_logits(x).astype(np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected = np.take_along_axis(log_softmax, y[..., None].astype(np.int64), -1)[..., 0]
    log_probs, predicted = model.token_log_likelihood(x, y)
    np.testing.assert_allclose(log_probs, expected, atol=1e-4)
    np.testing.assert_array_equal(predicted, logits.argmax(-1))
