"""Keras 3 on JAX (`keras-jax`): the same Keras model, trained by a jitted stateless step.

This is the training loop of Keras's own JAX guide and of `model.fit` on JAX: the model's
variables become arrays that a pure function takes and returns (`stateless_call`, then the
optimiser's `stateless_apply`), and `jax.jit` compiles that function once per batch shape.
The arrays live in `self.state`, not in the Keras variables, between steps; weights are read
from and written to that state, so the variables are never stale where the harness looks.
"""

from __future__ import annotations

import functools
import os

from backends.keras_loading import select_keras_backend

select_keras_backend("keras-jax", "jax")
# Allocate GPU memory as needed, not 75% of the card up front: workers may share a GPU, and
# TensorFlow's backend grows on demand too.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from keras import StatelessScope, layers  # noqa: E402

from backends.base import Weights  # noqa: E402
from backends.keras_common import (  # noqa: E402
    KerasBackendBase,
    KerasTrainable,
    correct_predictions,
    refuse_kept_denormals,
    token_scores,
)
from backends.keras_model import fused_kernel_eligible, recurrent_directions  # noqa: E402
from harness.errors import BenchError  # noqa: E402
from harness.execution import PLAIN, ExecutionOptions  # noqa: E402
from harness.model_spec import ModelSpec, OptimizerSpec  # noqa: E402
from harness.system import keep_to_cores  # noqa: E402

State = tuple[list[jax.Array], list[jax.Array], list[jax.Array]]  # trainable, other, optimiser


class KerasJaxModel(KerasTrainable):
    def __init__(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions = PLAIN
    ) -> None:
        refuse_kept_denormals(options, "XLA")
        if options.jit_compile:
            raise BenchError(
                "jit_compile: expected false for keras-jax (its step is always compiled by XLA, "
                "with jax.jit; the option adds a compiler to keras and torch); received true"
            )
        super().__init__(spec, optimizer, options)
        trainable = self.model.trainable_variables
        self._position = {
            name: next(i for i, v in enumerate(trainable) if v is variable)
            for name, variable in self.variables.items()
        }
        self.state: State = (
            [jnp.array(v.value) for v in trainable],
            [jnp.array(v.value) for v in self.model.non_trainable_variables],
            [jnp.array(v.value) for v in self.optimizer.variables],
        )
        self._sums = jnp.zeros(3)  # loss x count, right predictions, count, on the device
        # The state and the sums are donated: XLA updates them in place on the device.
        self._train = jax.jit(self._train_pure, donate_argnums=(0, 1))
        self._gradients = jax.jit(self._loss_and_gradients_pure)
        self._predict = jax.jit(lambda state, x: self._logits(state, x, False)[0])
        self._score = jax.jit(lambda state, x, y: token_scores(self._logits(state, x, False)[0], y))

    def _logits(self, state: State, x, training: bool):
        trainable, non_trainable, _ = state
        logits, non_trainable = self.model.stateless_call(
            trainable, non_trainable, x, training=training
        )
        return self.head(logits), non_trainable

    def _loss(self, trainable, state: State, x, y, scaled: bool):
        """The loss to differentiate, and (unscaled loss, logits, new non-trainable state)."""
        logits, non_trainable = self._logits((trainable, state[1], state[2]), x, True)
        loss = self.loss_fn(y, logits)
        target = loss
        if scaled:  # fp16: the loss scale is an optimiser variable, read from the state
            mapping = list(zip(self.optimizer.variables, state[2], strict=True))
            with StatelessScope(state_mapping=mapping):
                target = self.optimizer.scale_loss(loss)
        return target, (loss, logits, non_trainable)

    def _train_pure(self, state: State, sums, x, y):
        gradient_of = jax.grad(self._loss, has_aux=True)
        gradients, (loss, logits, non_trainable) = gradient_of(state[0], state, x, y, True)
        trainable, optimizer_state = self.optimizer.stateless_apply(state[2], gradients, state[0])
        count = jnp.float32(y.size)  # reviews, or tokens for a language model
        right = correct_predictions(self.spec.loss, logits, y)
        return (trainable, non_trainable, optimizer_state), sums + jnp.stack(
            [loss * count, right, count]
        )

    def _loss_and_gradients_pure(self, state: State, x, y):
        gradient_of = jax.grad(self._loss, has_aux=True)
        gradients, (loss, _, _) = gradient_of(state[0], state, x, y, False)
        return loss, gradients

    def train_step(self, x: np.ndarray, y: np.ndarray) -> None:
        self.state, self._sums = self._train(self.state, self._sums, x, y)

    def take_train_metrics(self) -> tuple[float, float]:
        loss_sum, right, seen = (float(value) for value in np.asarray(self._sums))
        self._sums = jnp.zeros(3)
        seen = max(seen, 1.0)
        return loss_sum / seen, right / seen

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._predict(self.state, x), np.float32)

    def score_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_probs, predicted = self._score(self.state, x, y)
        return np.asarray(log_probs), np.asarray(predicted)

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
        loss, gradients = self._gradients(self.state, x, y)
        return float(loss), {
            name: np.asarray(gradients[index]) for name, index in self._position.items()
        }

    def get_weights(self) -> Weights:
        return {
            name: np.array(self.state[0][index], np.float32)  # a copy: the next step donates
            for name, index in self._position.items()
        }

    def set_weights(self, weights: Weights) -> None:
        super().set_weights(weights)  # the variables too, so a summary or save sees them
        trainable = list(self.state[0])
        for name, index in self._position.items():
            trainable[index] = jnp.array(weights[name], dtype=trainable[index].dtype)
        self.state = (trainable, self.state[1], self.state[2])

    def kernel(self) -> str:
        # Keras on JAX has a cuDNN path for the LSTM only (jax.experimental.rnn); its GRU and
        # SimpleRNN are `lax.scan` loops on every device.
        directions = recurrent_directions(self.model)
        fused = all(
            isinstance(layer, layers.LSTM) and fused_kernel_eligible(layer) for layer in directions
        )
        return "cudnn" if fused else "generic"

    def denormal_mode(self) -> str:
        return "flush"  # XLA's CPU kernels, always (measured: docs/benchmarks.md)

    def synchronize(self) -> None:
        jax.block_until_ready((self.state, self._sums))


class KerasJaxBackend(KerasBackendBase):
    name = "keras-jax"

    def __init__(self) -> None:
        self._models: list[KerasJaxModel] = []  # the last model built: what `synchronize` waits on

    @functools.cached_property
    def device(self) -> jax.Device:
        """Looked up on first use: that starts XLA, which `limit_threads` must come before."""
        return jax.devices()[0]

    def framework_version(self) -> str:
        return jax.__version__

    def accelerator(self) -> str | None:
        return self.device.device_kind if self.device.platform == "gpu" else None

    def build_model(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions
    ) -> KerasJaxModel:
        model = KerasJaxModel(spec, optimizer, options)
        self._models = [model]
        return model

    def clear_state(self) -> None:
        """The last model too (kept for `synchronize`), with its compiled functions and state."""
        self._models = []
        super().clear_state()

    def synchronize(self) -> None:
        """JAX dispatches asynchronously and has no device-wide barrier: wait for the arrays of
        the model in use, then for a computation queued after them on the same device."""
        for model in self._models:
            model.synchronize()
        jax.block_until_ready(jax.device_put(0.0, self.device) + 0)

    def limit_threads(self, threads: int) -> int:
        """XLA sizes its CPU thread pool once, from the cores the process may run on, and has
        no call to change it; so the process is confined to `threads` cores before XLA starts."""
        cores = sorted(os.sched_getaffinity(0))
        return keep_to_cores(cores[:threads]) if threads < len(cores) else len(cores)

    resets_peak_device_memory = False  # a warm worker on a GPU starts afresh after each run

    def reset_peak_device_memory(self) -> None:
        """JAX keeps one peak per process and cannot reset it: on a GPU each run gets a process
        of its own (`resets_peak_device_memory`), so the process's peak is the run's."""

    def peak_device_memory(self) -> int | None:
        if self.accelerator() is None:
            return None
        return int((self.device.memory_stats() or {}).get("peak_bytes_in_use", 0))


BACKEND = KerasJaxBackend()
