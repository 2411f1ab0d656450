"""The registry, the interface's shape, the harness's batch order, and facts of one framework.

What every backend must do is in tests/test_conformance.py, and how every pair of backends
agrees in tests/test_equivalence.py; this file holds what is particular to one backend (its
kernels on this machine, its denormal switch, the private Keras API it reads).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

from backends import BACKENDS, Backend, BackendInfo, TrainableModel, check_backend, get_backend
from backends.equivalence import comparable_backend
from harness.config import RunConfig
from harness.errors import BenchError
from harness.execution import ExecutionOptions
from harness.model_spec import ModelSpec, OptimizerSpec
from harness.run.devices import thread_settings
from harness.training import epoch_batches, reported_kernel


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
    valid = "keras, torch, keras-jax, keras-torch"
    with pytest.raises(BenchError, match=f"expected one of {valid}; received 'jax'"):
        get_backend("jax")
    with pytest.raises(BenchError, match="simple_rnn, lstm, gru, bilstm; received 'transformer'"):
        RunConfig(backend="torch", architecture="transformer")
    with pytest.raises(BenchError, match="rmsprop, adam; received 'sgd'"):
        RunConfig(backend="torch", architecture="gru", optimizer="sgd")


def test_check_backend_answers_in_one_line_without_importing_a_framework():
    code = (
        "import sys\nfrom backends import check_backend\nfrom harness.errors import BenchError\n"
        "assert check_backend('torch').display_name == 'PyTorch'\n"
        "try:\n    check_backend('jax')\nexcept BenchError as error:\n    print(error)\n"
        "print(' '.join(m for m in ('tensorflow', 'keras', 'torch', 'jax') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    message, loaded = done.stdout.split("\n")[:2]
    assert message == (
        "unknown backend: expected one of keras, torch, keras-jax, keras-torch; received 'jax'"
    )
    assert loaded == ""


def test_a_backend_whose_framework_is_missing_names_the_extra_to_install(monkeypatch):
    info = BackendInfo("nowhere", "backends.nowhere", "Nowhere", ("no_such_framework",), "jax")
    monkeypatch.setitem(BACKENDS, info.name, info)
    with pytest.raises(BenchError, match="no_such_framework"):
        get_backend("nowhere")  # never tries the import
    with pytest.raises(BenchError) as raised:
        check_backend("nowhere")
    assert str(raised.value) == (
        "backend nowhere: expected no_such_framework to be installed; it is not (pip install "
        '"rnnbench[jax]")'
    )


def test_registry_carries_display_names_and_thread_variables(monkeypatch):
    assert {name: info.display_name for name, info in BACKENDS.items()} == {
        "keras": "Keras (TensorFlow)",
        "torch": "PyTorch",
        "keras-jax": "Keras (JAX)",
        "keras-torch": "Keras (PyTorch)",
    }
    settings = thread_settings("4")
    assert settings["OMP_NUM_THREADS"] == settings["TF_NUM_INTRAOP_THREADS"] == "4"
    assert settings["TF_NUM_INTEROP_THREADS"] == "1"
    extra = BackendInfo("x", "x", "X", ("x",), thread_variables=("X_THREADS",))
    monkeypatch.setitem(BACKENDS, "x", extra)
    assert thread_settings("2")["X_THREADS"] == "2"  # a new backend's variables, no harness edit


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("harness.cli", ("tensorflow", "keras", "torch")),
        ("harness.training", ("tensorflow", "keras", "torch")),
        ("harness.run.devices", ("tensorflow", "keras", "torch")),
        ("backends.torch_backend", ("tensorflow", "keras")),
        ("backends.keras_jax_backend", ("tensorflow", "torch")),
        ("backends.keras_torch_backend", ("tensorflow",)),  # Keras itself loads jax if present
    ],
)
def test_frameworks_are_imported_only_by_their_backend(module, forbidden):
    """Importing the module, and for a backend seeding it (Keras's own seeding would load
    TensorFlow wherever it is installed), loads no other framework."""
    seed = f"{module}.BACKEND.seed(0); " if module.startswith("backends.") else ""
    code = f"import sys, {module}; {seed}"
    code += f"print(' '.join(m for m in {forbidden!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_the_core_is_what_training_and_evaluation_need():
    assert Backend.__abstractmethods__ == {
        "framework",
        "accelerator",
        "seed",
        "build_model",
        "reset_peak_device_memory",
        "peak_device_memory",
    }
    assert TrainableModel.__abstractmethods__ == {
        "train_step",
        "take_train_metrics",
        "predict_batch",
        "score_batch",
        "get_weights",
        "set_weights",
        "count_trainable_parameters",
        "summary",
        "denormal_mode",
    }


def test_optional_hooks_say_what_needs_them():
    class CoreOnly(TrainableModel):
        train_step = take_train_metrics = predict_batch = score_batch = lambda self, *a: None
        get_weights = set_weights = count_trainable_parameters = lambda self, *a: None
        summary = denormal_mode = lambda self: ""

    class CoreBackend(Backend):
        framework = accelerator = seed = build_model = lambda self, *a: None
        reset_peak_device_memory = peak_device_memory = lambda self: None

    model, backend = CoreOnly(), CoreBackend()
    with pytest.raises(NotImplementedError, match=r"^CoreOnly\.kernel: not implemented; this"):
        model.kernel()
    with pytest.raises(NotImplementedError, match="needed by the equivalence tests"):
        model.loss_and_gradients(None, None)
    assert reported_kernel(model) == "unknown"  # training goes on without it
    for hook, args in [
        ("synchronize", ()),
        ("limit_threads", (1,)),
        ("plain_network", (None, None)),
        ("plain_training_seconds", (None,) * 7),
    ]:
        with pytest.raises(NotImplementedError, match=rf"^CoreBackend\.{hook}: .*`bench perf`"):
            getattr(backend, hook)(*args)


# -- facts of one framework --------------------------------------------------------------------


def test_keras_counts_its_parameters_as_the_reference_does():
    spec = ModelSpec("lstm", 10_000, 32, 32)
    assert comparable_backend("keras").build(spec, OptimizerSpec()).model.count_params() == 328_353


KERAS_BACKENDS = [name for name, info in BACKENDS.items() if info.keras_backend]


@pytest.mark.parametrize("name", KERAS_BACKENDS)
def test_the_private_keras_api_we_read_is_still_there(name):
    """`fused_kernel_eligible` reads `keras.src.backend.cudnn_ok`, each Keras backend's own test
    for its cuDNN path (no public equivalent). A Keras that moves it fails here, not in a study;
    pyproject.toml pins keras below the next minor version for the same reason."""
    on_gpu = comparable_backend(name).accelerator() is not None
    from keras import layers
    from keras.src import backend as keras_backend

    from backends.keras_model import fused_kernel_eligible

    assert keras_backend.backend() == BACKENDS[name].keras_backend
    parameters = list(inspect.signature(keras_backend.cudnn_ok).parameters)
    assert parameters[:4] == ["activation", "recurrent_activation", "unroll", "use_bias"]
    for layer in (layers.LSTM(4), layers.GRU(4)):
        assert fused_kernel_eligible(layer) is on_gpu
    assert fused_kernel_eligible(layers.LSTM(4, activation="relu")) is False
    assert fused_kernel_eligible(layers.SimpleRNN(4)) is False


@pytest.mark.parametrize(
    ("name", "kernels"),
    [
        ("torch", {"lstm": "onednn", "gru": "generic"}),
        ("keras", {"lstm": "generic", "gru": "generic"}),
        ("keras-jax", {"lstm": "generic", "gru": "generic"}),
        ("keras-torch", {"lstm": "generic", "gru": "generic"}),
    ],
)
def test_each_framework_names_its_own_kernel_on_this_cpu(name, kernels):
    """As the framework reports it: PyTorch's CPU LSTM runs oneDNN's fused kernel; its GRU, and
    every Keras recurrent layer on a CPU (TensorFlow's, XLA's scan, Keras's torch loop), run a
    loop of ordinary ops."""
    backend = comparable_backend(name)
    if backend.accelerator() is not None:
        pytest.skip("this machine has a GPU")
    for arch, kernel in kernels.items():
        model = backend.build(ModelSpec(arch, 50, 4, 4), OptimizerSpec())
        assert model.kernel() == kernel, (name, arch)


@pytest.mark.parametrize(
    ("name", "why"), [("keras-jax", "always compiled by XLA"), ("keras-torch", "no compiled step")]
)
def test_jit_compile_is_refused_where_it_means_nothing(name, why):
    spec = ModelSpec("gru", vocab_size=50, embedding_dim=4, hidden_size=4)
    with pytest.raises(BenchError, match=f"jit_compile: expected false for {name} .*{why}"):
        comparable_backend(name).build(spec, OptimizerSpec(), ExecutionOptions(jit_compile=True))


@pytest.mark.parametrize("name", ["keras", "keras-jax"])
def test_kept_denormals_are_refused_where_the_framework_always_flushes(name):
    spec = ModelSpec("gru", vocab_size=50, embedding_dim=4, hidden_size=4)
    keep = ExecutionOptions(flush_denormal=False)
    with pytest.raises(BenchError, match="flush_denormal: expected true for Keras on"):
        comparable_backend(name).build(spec, OptimizerSpec(), keep)


@pytest.mark.parametrize("name", ["torch", "keras-torch"])
def test_flush_denormal_switches_pytorch(name):
    spec = ModelSpec("gru", vocab_size=50, embedding_dim=4, hidden_size=4)
    keep = ExecutionOptions(flush_denormal=False)
    import torch

    def denormal_product() -> float:
        return (torch.full((4,), 1e-39) * 1.0001).min().item()

    backend = comparable_backend(name)
    assert backend.build(spec, OptimizerSpec(), keep).denormal_mode() == "keep"
    assert denormal_product() > 0  # the denormal survives
    assert backend.build(spec, OptimizerSpec()).denormal_mode() == "flush"
    assert denormal_product() == 0  # flushed to zero


def test_each_keras_backend_sets_its_own_keras_backend_and_refuses_a_second(tmp_path):
    """The user's KERAS_BACKEND does not choose the backend; the backend's name does. One process
    holds one Keras backend, and a second is refused in one line."""
    code = (
        "from backends import get_backend\nfrom harness.errors import BenchError\n"
        "print(get_backend('keras-torch').framework()[1])\n"
        "try:\n    get_backend('keras-jax')\nexcept BenchError as error:\n    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "KERAS_BACKEND": "jax"},
    )
    version, refusal = done.stdout.splitlines()[-2:]
    assert "(torch " in version
    assert refusal == (
        "backend keras-jax: expected Keras on jax, but this process loaded Keras on torch first; "
        "each Keras backend runs in a process of its own"
    )
