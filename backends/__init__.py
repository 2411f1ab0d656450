"""Framework backends behind one interface (`backends.base`), and the registry of their facts.

The registry holds what the harness may know about a backend without importing its framework:
the module to import, the name reports print, the packages it needs and how to install them,
and the thread-count variables its framework reads. Modules are imported only when asked for,
so `--backend torch` never pays for TensorFlow, and `check_backend` answers for a bad name or a
missing framework in one line, before any data is loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from backends.base import Backend, TrainableModel, Weights
from backends.keras_loading import select_keras_backend
from harness.errors import BenchError


@dataclass(frozen=True)
class BackendInfo:
    """One registered backend, as the harness sees it before its framework is imported."""

    name: str  # the key of studies, flags, tags and reports
    module: str  # defines BACKEND, a `backends.base.Backend`
    display_name: str  # reports and the terminal
    packages: tuple[str, ...]  # top-level imports the framework needs
    extra: str | None = None  # the pip extra that installs `packages`; None: core dependencies
    # Thread-pool sizes the framework reads from the environment at start-up, beyond the OpenMP
    # and MKL ones every framework shares: set to a worker's share of the cores, and to 1 for
    # the pool that runs independent ops side by side (workers already run side by side).
    thread_variables: tuple[str, ...] = ()
    interop_thread_variables: tuple[str, ...] = ()
    # The Keras backend (`KERAS_BACKEND`) it runs Keras on; None for a backend without Keras.
    keras_backend: str | None = None

    def missing_packages(self) -> list[str]:
        """The packages that cannot be found; nothing is imported to find out."""
        return [name for name in self.packages if importlib.util.find_spec(name) is None]

    def install_hint(self) -> str:
        if self.extra is not None:
            return f'pip install "rnnbench[{self.extra}]"'
        return f"pip install {' '.join(self.packages)}"


BACKENDS: dict[str, BackendInfo] = {
    info.name: info
    for info in (
        BackendInfo(
            name="keras",
            module="backends.keras_backend",
            display_name="Keras (TensorFlow)",
            packages=("keras", "tensorflow"),
            thread_variables=("TF_NUM_INTRAOP_THREADS",),
            interop_thread_variables=("TF_NUM_INTEROP_THREADS",),
            keras_backend="tensorflow",
        ),
        BackendInfo(
            name="torch",
            module="backends.torch_backend",
            display_name="PyTorch",
            packages=("torch",),  # its pools follow OMP_NUM_THREADS, which the harness sets
        ),
        BackendInfo(
            name="keras-jax",
            module="backends.keras_jax_backend",
            display_name="Keras (JAX)",
            packages=("keras", "jax"),
            extra="jax",
            keras_backend="jax",
        ),
        BackendInfo(
            name="keras-torch",
            module="backends.keras_torch_backend",
            display_name="Keras (PyTorch)",
            packages=("keras", "torch"),
            keras_backend="torch",
        ),
    )
}
# `bench train` without --backend: the one that starts quickest and needs no TensorFlow.
DEFAULT_BACKEND = "torch"

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "Backend",
    "BackendInfo",
    "TrainableModel",
    "Weights",
    "check_backend",
    "get_backend",
]


def check_backend(name: str) -> BackendInfo:
    """The registry entry of `name`, or a one-line `BenchError` if it is unknown or its framework
    is not installed. Imports no framework, so a command can check its flags before any work."""
    info = BACKENDS.get(name)
    if info is None:
        raise BenchError(
            f"unknown backend: expected one of {', '.join(BACKENDS)}; received {name!r}"
        )
    missing = info.missing_packages()
    if missing:
        raise BenchError(
            f"backend {name}: expected {', '.join(missing)} to be installed; it is not "
            f"({info.install_hint()})"
        )
    return info


def get_backend(name: str) -> Backend:
    """The backend called `name`, its framework imported now (and only that framework).

    A Keras backend sets `KERAS_BACKEND` first; a process that already loaded Keras on another
    backend gets a one-line error (`backends.keras_loading`).
    """
    info = check_backend(name)
    if info.keras_backend is not None:
        select_keras_backend(name, info.keras_backend)
    return importlib.import_module(info.module).BACKEND
