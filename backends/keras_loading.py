"""Which Keras backend a process loads: Keras reads `KERAS_BACKEND` once, when it is imported.

A process therefore holds Keras on one backend only. The harness runs every backend's trials,
perf jobs and doctor probes in processes of their own, so `select_keras_backend` only has to set
the variable before the first import, and refuse, in one line, a second Keras backend in the
same process. Nothing here imports Keras unless it is already loaded.
"""

from __future__ import annotations

import os
import sys
import warnings

from harness.errors import BenchError


def loaded_keras_backend() -> str | None:
    """The backend of the Keras this process has imported, or None before the first import."""
    keras = sys.modules.get("keras")
    return None if keras is None else keras.backend.backend()


def select_keras_backend(backend: str, keras_backend: str) -> None:
    """Make the next `import keras` load `keras_backend`, for the harness backend `backend`."""
    loaded = loaded_keras_backend()
    if loaded is None:
        os.environ["KERAS_BACKEND"] = keras_backend
    elif loaded != keras_backend:
        raise BenchError(
            f"backend {backend}: expected Keras on {keras_backend}, but this process loaded "
            f"Keras on {loaded} first; each Keras backend runs in a process of its own"
        )


def switch_keras_backend(keras_backend: str) -> None:
    """Reload Keras on another backend, with Keras's own `keras.config.set_backend`.

    For the test suite and docs/scripts only, which hold several Keras backends' results in one
    process; a run never switches. Models built before the switch must not be used after it,
    so the harness's Keras modules, which hold the old Keras, are dropped too and re-imported
    on demand by `backends.get_backend`.
    """
    if loaded_keras_backend() in (None, keras_backend):
        os.environ["KERAS_BACKEND"] = keras_backend
        return
    import keras

    # First, so that a failed reload cannot leave them pointing at the old Keras.
    for name in [name for name in sys.modules if name.startswith("backends.keras_")]:
        if name != __name__:
            del sys.modules[name]
    with warnings.catch_warnings():  # its warning is the rule this function keeps: see above
        warnings.simplefilter("ignore", UserWarning)
        keras.config.set_backend(keras_backend)
