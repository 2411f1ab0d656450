"""What the three Keras backends share beyond the model itself (`backends.keras_model`).

The model, its canonical weights, its optimiser and loss, the on-device counting of right
predictions, and `model.fit` as the plain path of `bench perf` are the same code on TensorFlow,
JAX and torch. Each backend module adds only what Keras leaves to the backend: the compiled
training step (a `tf.function`, a jitted stateless JAX function, a torch autograd step), the
device, and the synchronisation and memory figures of its framework.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import keras
import numpy as np
from keras import ops

from backends.base import Backend, TrainableModel, Weights
from backends.keras_model import (
    ACCURACIES,
    LOSSES,
    build_keras_model,
    canonical_variables,
    fused_kernel_eligible,
    keras_optimizer,
    recurrent_directions,
)
from harness.errors import BenchError
from harness.execution import ExecutionOptions
from harness.model_spec import ModelSpec, OptimizerSpec


def correct_predictions(loss: str, logits, y):
    """How many predictions of a batch were right, counted on the device (`ModelSpec.loss`)."""
    if loss == "binary_crossentropy":
        return ops.sum(ops.cast(ops.cast(logits > 0, "float32") == y, "float32"))
    return ops.sum(ops.cast(ops.cast(ops.argmax(logits, -1), "int32") == y, "float32"))


def token_scores(logits, y):
    """The log-probability of each target token and the top-1 prediction (`score_batch`)."""
    log_probs = ops.take_along_axis(ops.log_softmax(logits), ops.expand_dims(y, -1), axis=-1)
    return log_probs[..., 0], ops.cast(ops.argmax(logits, -1), "int32")


def refuse_kept_denormals(options: ExecutionOptions, framework: str) -> None:
    """TensorFlow's and XLA's CPU kernels flush denormals to zero and have no switch."""
    if not options.flush_denormal:
        raise BenchError(
            f"flush_denormal: expected true for Keras on {framework} ({framework} flushes "
            "denormals to zero in its CPU kernels and has no switch); received false"
        )


class KerasTrainable(TrainableModel):
    """A Keras model with its optimiser and loss; subclasses add the backend's training step."""

    def __init__(self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions):
        self.spec = spec
        self.model = build_keras_model(spec, options)
        self.variables = canonical_variables(spec, self.model)
        self.optimizer = keras_optimizer(optimizer)
        if options.precision == "fp16":  # fp16's narrow exponent underflows small gradients
            self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
        self.optimizer.build(self.model.trainable_variables)
        self.language_model = spec.sequence_output
        self.loss_fn = LOSSES[spec.loss]()

    def head(self, logits):
        """Classification: Dense(1) gives ``(batch, 1)``, the harness takes ``(batch,)``."""
        return logits if self.language_model else logits[:, 0]

    def get_weights(self) -> Weights:
        return {
            name: np.asarray(ops.convert_to_numpy(variable.value), np.float32)
            for name, variable in self.variables.items()
        }

    def set_weights(self, weights: Weights) -> None:
        for name, variable in self.variables.items():
            variable.assign(weights[name])

    def count_trainable_parameters(self) -> int:
        return int(sum(np.prod(v.shape) for v in self.model.trainable_variables))

    def summary(self) -> str:
        lines: list[str] = []
        self.model.summary(print_fn=lambda line, **_: lines.append(line))
        return "\n".join(lines)

    def kernel(self) -> str:
        directions = recurrent_directions(self.model)
        return "cudnn" if all(fused_kernel_eligible(layer) for layer in directions) else "generic"


class _EpochTimer(keras.callbacks.Callback):
    """Seconds per epoch of `model.fit`, ended by reading the epoch's loss (a forced value)."""

    def __init__(self, synchronize: Callable[[], None]) -> None:
        super().__init__()
        self.synchronize = synchronize
        self.seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        float((logs or {}).get("loss", 0.0))
        self.synchronize()
        self.seconds.append(time.perf_counter() - self._started)


class KerasBackendBase(Backend):
    """The Keras parts of a backend: seeding, the version line and `model.fit` as plain path."""

    def framework(self) -> tuple[str, str]:
        backend = keras.backend.backend()
        return "keras", f"{keras.__version__} ({backend} {self.framework_version()})"

    def framework_version(self) -> str:
        raise NotImplementedError

    def clear_state(self) -> None:
        """Keras's global state: layer-name counters, TensorFlow's graph, cached functions."""
        keras.backend.clear_session()

    def runtime_tags(self) -> dict[str, str]:
        return {"keras_backend": keras.backend.backend()}  # what this process really loaded

    def seed(self, seed: int) -> None:
        """Python's and numpy's generators: Keras draws each layer's dropout seed from Python's.

        Not `keras.utils.set_random_seed`, which imports TensorFlow to seed it wherever it is
        installed, and would load it into every JAX and torch process (memory, GPU libraries).
        """
        random.seed(seed)
        np.random.seed(seed)

    def plain_network(self, spec: ModelSpec, weights: Weights) -> keras.Model:
        """The Keras model `fit` trains, from the harness's initial weights."""
        model = build_keras_model(spec)
        for name, variable in canonical_variables(spec, model).items():
            variable.assign(weights[name])
        return model

    def plain_network_weights(self, spec: ModelSpec, network: object) -> Weights:
        variables = canonical_variables(spec, network).items()  # type: ignore[arg-type]
        return {name: np.asarray(ops.convert_to_numpy(v.value)) for name, v in variables}

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
        """Keras's tutorial path: compile, then `fit` on the numpy arrays, in their order.

        `compile`'s defaults are kept, so `fit` compiles its step the backend's way where Keras
        chooses to (jit_compile="auto": XLA on a TensorFlow GPU and always on JAX, eager on
        torch).
        """
        model = self.plain_network(spec, weights)
        model.compile(
            optimizer=keras_optimizer(optimizer),
            loss=LOSSES[spec.loss](),
            metrics=[ACCURACIES[spec.loss]()],
        )
        # One `fit` for all epochs, as a tutorial calls it; `after_epoch` runs from a callback
        # after the timer's, so it is outside the clock.
        callbacks: list[keras.callbacks.Callback] = [_EpochTimer(self.synchronize)]
        if after_epoch is not None:
            callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: after_epoch()))
        model.fit(x, y, batch_size, epochs, verbose=0, callbacks=callbacks, shuffle=False)
        return callbacks[0].seconds
