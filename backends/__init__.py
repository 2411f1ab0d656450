"""Framework backends behind one interface (`backends.base`), looked up by name.

Modules are imported only when asked for, so `--backend torch` never pays for TensorFlow.
"""

from __future__ import annotations

import importlib

from backends.base import Backend, TrainableModel, Weights
from harness.errors import BenchError

BACKENDS = {"keras": "backends.keras_backend", "torch": "backends.torch_backend"}

__all__ = ["BACKENDS", "Backend", "TrainableModel", "Weights", "get_backend"]


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise BenchError(
            f"unknown backend: expected one of {', '.join(BACKENDS)}; received {name!r}"
        )
    return importlib.import_module(BACKENDS[name]).BACKEND
