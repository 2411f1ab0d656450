"""The one interface every framework backend implements.

Lifecycle of a run, as the harness drives it:

1. ``backend = get_backend("torch")`` imports the framework (and only that one).
2. ``backend.seed(seed)`` seeds the framework's own random numbers (dropout masks).
3. ``model = backend.build(spec, optimizer, options)`` builds the network and its optimiser;
   `ExecutionOptions` (precision, compilation, cuDNN) change the speed, never the function.
4. ``model.set_weights(initial_weights(spec, seed))`` loads the harness's initial weights, so both
   frameworks start from the same numbers.
5. Per epoch: ``model.train_step(x, y)`` for every batch the harness hands over (in the harness's
   order), then ``model.take_train_metrics()`` for the epoch's mean loss and accuracy.
6. ``model.predict_logits(x)`` for validation and test; the harness computes every metric.
7. ``backend.peak_device_memory()`` for the framework's own peak allocation on a GPU.

For `bench perf`: ``backend.limit_threads(n)`` before any work, ``backend.synchronize()`` before
a clock is read, ``model.kernel()`` for the recurrent kernel in use, and
``backend.plain_training_seconds(...)``: the same model trained the way the framework's tutorials
do it, the baseline the harness's overhead is measured against.

Weights cross the interface in the canonical layout of `harness.model_spec.weight_shapes`
(Keras's layout), as float32 numpy arrays.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from harness.execution import PLAIN, ExecutionOptions
from harness.model_spec import ModelSpec, OptimizerSpec

Weights = dict[str, np.ndarray]


class TrainableModel(ABC):
    """A built network with its optimiser, driven batch by batch by the harness."""

    @abstractmethod
    def train_step(self, x: np.ndarray, y: np.ndarray) -> None:
        """One forward/backward/update on an int32 batch ``x`` and its targets ``y``: float32 0/1
        labels (classification) or int32 next-token ids (language model).

        Loss and accuracy accumulate on the device, so a step needs no host synchronisation.
        """

    @abstractmethod
    def take_train_metrics(self) -> tuple[float, float]:
        """Mean loss and accuracy per prediction (review or token) since the last call; resets."""

    @abstractmethod
    def predict_logits(self, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Float32 logits in inference mode (no dropout): ``(len(x),)`` for classification,
        ``(len(x), time, vocab)`` for a language model (small inputs only: tests, examples)."""

    @abstractmethod
    def token_log_likelihood(
        self, x: np.ndarray, y: np.ndarray, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        """Language models: the log-probability of each target token and the top-1 prediction,
        both ``(len(x), time)``. Full logits would be gigabytes; the harness's metrics need only
        these two."""

    @abstractmethod
    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
        """Loss and canonical-layout gradients without updating anything (for equivalence)."""

    @abstractmethod
    def get_weights(self) -> Weights: ...

    @abstractmethod
    def set_weights(self, weights: Weights) -> None: ...

    @abstractmethod
    def count_trainable_parameters(self) -> int:
        """The parameter count as the framework itself reports it."""

    @abstractmethod
    def summary(self) -> str: ...

    @abstractmethod
    def kernel(self) -> str:
        """The recurrent kernel the training step runs, as the framework reports it: "cudnn"
        (fused, GPU), "onednn" (fused, CPU) or "generic" (a loop of ordinary ops)."""

    @abstractmethod
    def denormal_mode(self) -> str:
        """How this run treats denormal floats on the CPU: "flush" (to zero) or "keep"."""


class Backend(ABC):
    """A deep-learning framework: builds models and reports on the device it runs on."""

    name: str

    @abstractmethod
    def framework(self) -> tuple[str, str]:
        """Framework name and version, e.g. ``("torch", "2.13.0")``."""

    @abstractmethod
    def accelerator(self) -> str | None:
        """The GPU's name when the framework runs on one, else None."""

    @abstractmethod
    def seed(self, seed: int) -> None:
        """Seed the framework's random numbers and make its kernels deterministic."""

    @abstractmethod
    def build(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions = PLAIN
    ) -> TrainableModel: ...

    @abstractmethod
    def synchronize(self) -> None:
        """Wait for all work queued on the device, so that a clock read after it is honest."""

    @abstractmethod
    def limit_threads(self, threads: int) -> int:
        """Cap the framework's CPU threads (call before any work); returns the count in effect."""

    @abstractmethod
    def plain_network(self, spec: ModelSpec, weights: Weights) -> object:
        """The framework's own model that the plain path trains, loaded with `weights` (the
        harness's initial weights), so that both paths start from the same numbers."""

    @abstractmethod
    def plain_training_seconds(
        self,
        spec: ModelSpec,
        optimizer: OptimizerSpec,
        weights: Weights,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        epochs: int,
        after_epoch: Callable[[], None] | None = None,
    ) -> list[float]:
        """Seconds per epoch of the same model trained the tutorial way on ``x``, ``y`` in order,
        from the same initial weights (`plain_network`).

        No harness code runs inside the clock: Keras's ``model.fit`` on the numpy arrays,
        PyTorch's ``DataLoader`` and a bare optimiser loop. The baseline of `bench perf`.
        ``after_epoch`` runs between epochs, outside the clock: `bench perf` times a harness
        pass there, so the two paths alternate and a drifting machine load hits both alike.
        """

    @abstractmethod
    def reset_peak_device_memory(self) -> None: ...

    @abstractmethod
    def peak_device_memory(self) -> int | None:
        """Peak bytes the framework allocated on the GPU since the reset; None on CPU."""
