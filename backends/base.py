"""The one interface every framework backend implements: a core, and optional hooks.

Lifecycle of a run, as the harness drives it (`harness.training.train`):

1. ``backend = get_backend("torch")`` imports the framework (and only that one).
2. ``backend.seed(seed)`` seeds the framework's own random numbers (dropout masks).
3. ``model = backend.build(spec, optimizer, options)`` checks the options against the device
   (`harness.execution.check_device`), then calls the backend's `build_model`;
   `ExecutionOptions` (precision, compilation, cuDNN) change the speed, never the function.
   The loss is the task's, named by the harness (`ModelSpec.loss`); a backend maps the name
   to its framework's function.
4. ``model.set_weights(initial_weights(spec, seed))`` loads the harness's initial weights, so all
   backends start from the same numbers.
5. Per epoch: ``model.train_step(x, y)`` for every batch the harness hands over (in the harness's
   order), then ``model.take_train_metrics()`` for the epoch's mean loss and accuracy.
6. Validation and test: the harness cuts the split into chunks (`harness.tasks.predict_logits`,
   `harness.tasks.token_log_likelihood`) and the model computes one chunk at a time
   (`predict_batch`, `score_batch`); the harness computes every metric.
7. ``backend.peak_device_memory()`` for the framework's own peak allocation on a GPU.

The core (abstract; training and evaluation need it): on `Backend` `framework`, `accelerator`,
`seed`, `build_model`, `reset_peak_device_memory`, `peak_device_memory`; on `TrainableModel`
`train_step`, `take_train_metrics`, `predict_batch`, `score_batch`, `get_weights`,
`set_weights`, `count_trainable_parameters`, `summary`, `denormal_mode`.

Optional hooks raise `NotImplementedError` until a backend implements them, as Keras 3's
``Layer.compute_output_shape`` does; a backend without them still trains and evaluates:

- for `bench perf` (`harness.perf.measure`): ``Backend.limit_threads`` before any work,
  ``Backend.synchronize`` before a clock is read, ``Backend.plain_training_seconds`` (with
  ``Backend.plain_network``), the framework's tutorial path that the harness's overhead is
  measured against, and ``TrainableModel.kernel``, the recurrent kernel in use (which `train`
  also records as a tag when the backend reports it);
- for the tests: ``TrainableModel.loss_and_gradients`` (equivalence) and
  ``Backend.plain_network_weights`` (conformance: both `bench perf` paths start alike).

Weights cross the interface in the canonical layout of `harness.model_spec.weight_shapes`
(Keras's layout), as float32 numpy arrays.
"""

from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from harness.execution import PLAIN, ExecutionOptions, check_device
from harness.model_spec import ModelSpec, OptimizerSpec

Weights = dict[str, np.ndarray]


def _optional(owner: object, method: str, needed_by: str) -> NotImplementedError:
    return NotImplementedError(
        f"{type(owner).__name__}.{method}: not implemented; this optional hook is needed by "
        f"{needed_by} (see backends/base.py)"
    )


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
    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        """Float32 logits of one chunk in inference mode (no dropout): ``(len(x),)`` for
        classification, ``(len(x), time, vocab)`` for a language model."""

    @abstractmethod
    def score_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Language models, one chunk: the log-probability of each target token and the top-1
        prediction, both ``(len(x), time)``. Full logits would be gigabytes; the harness's
        metrics need only these two."""

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
    def denormal_mode(self) -> str:
        """How this run treats denormal floats on the CPU: "flush" (to zero) or "keep"."""

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
        """Optional (tests): loss and canonical-layout gradients without updating anything."""
        raise _optional(self, "loss_and_gradients", "the equivalence tests")

    def kernel(self) -> str:
        """Optional (`bench perf`, run tags): the recurrent kernel the training step runs, as the
        framework reports it: "cudnn" (fused, GPU), "onednn" (fused, CPU) or "generic" (a loop
        of ordinary ops)."""
        raise _optional(self, "kernel", "`bench perf`")


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

    def build(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions = PLAIN
    ) -> TrainableModel:
        """The model every caller builds: options the device cannot run are refused here, in
        the harness's words, before the backend's `build_model` is asked."""
        check_device(options, self.accelerator())
        return self.build_model(spec, optimizer, options)

    @abstractmethod
    def build_model(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions
    ) -> TrainableModel:
        """The backend's own model of `spec`; callers use `build`."""

    # False where the framework keeps one GPU peak per process and cannot reset it (JAX): a
    # warm worker then starts afresh after each run on a GPU, so each peak stays the run's own.
    resets_peak_device_memory: bool = True

    @abstractmethod
    def reset_peak_device_memory(self) -> None: ...

    @abstractmethod
    def peak_device_memory(self) -> int | None:
        """Peak bytes the framework allocated on the GPU since the reset; None on CPU."""

    def clear_state(self) -> None:
        """Forget what earlier runs left in this process, before the next one starts: a warm
        worker (`harness.run.serve`) runs many. Global names and graphs, cached memory; each
        run still seeds and builds its own model. By default, collect the garbage."""
        gc.collect()

    def runtime_tags(self) -> dict[str, str]:
        """Facts of the framework's set-up in this process that a run records as tags, beyond
        framework, version and device: e.g. the backend Keras really loaded. None by default."""
        return {}

    def synchronize(self) -> None:
        """Optional (`bench perf`): wait for all work queued on the device, so that a clock read
        after it is honest."""
        raise _optional(self, "synchronize", "`bench perf`")

    def limit_threads(self, threads: int) -> int:
        """Optional (`bench perf`): cap the framework's CPU threads (call before any work);
        returns the count in effect."""
        raise _optional(self, "limit_threads", "`bench perf`")

    def plain_network(self, spec: ModelSpec, weights: Weights) -> object:
        """Optional (`bench perf`): the framework's own model that the plain path trains, loaded
        with `weights` (the harness's initial weights), so that both paths start alike."""
        raise _optional(self, "plain_network", "`bench perf`")

    def plain_network_weights(self, spec: ModelSpec, network: object) -> Weights:
        """Optional (tests): the canonical-layout weights of a `plain_network`, so that the
        conformance suite can check both paths start alike without knowing the framework."""
        raise _optional(self, "plain_network_weights", "the conformance tests")

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
        """Optional (`bench perf`): seconds per epoch of the same model trained the tutorial way
        on ``x``, ``y`` in order, from the same initial weights (`plain_network`).

        No harness code runs inside the clock: e.g. Keras's ``model.fit`` on the numpy arrays,
        PyTorch's ``DataLoader`` and a bare optimiser loop. The baseline of `bench perf`.
        ``after_epoch`` runs between epochs, outside the clock: `bench perf` times a harness
        pass there, so the two paths alternate and a drifting machine load hits both alike.
        """
        raise _optional(self, "plain_training_seconds", "`bench perf`")
