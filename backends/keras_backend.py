"""The Keras 3 backend (TensorFlow underneath): the model of `ModelSpec` with Keras's own layers.

Layers keep their default activations and no recurrent dropout, so on a GPU Keras runs the
LSTM and GRU layers on cuDNN. The training step is a compiled `tf.function` around Keras's
optimiser and loss, fed the harness's batches; `model.fit` would shuffle and batch by itself.
Execution options apply to this model only: a mixed-precision dtype policy on its layers (never
the global policy), XLA on its training step, cuDNN allowed or not on its recurrent layers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter quiet

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from backends.base import Backend, TrainableModel, Weights  # noqa: E402
from backends.keras_model import (  # noqa: E402
    ACCURACIES,
    LOSSES,
    build_keras_model,
    canonical_variables,
    fused_kernel_eligible,
    keras_optimizer,
    recurrent_directions,
)
from harness.errors import BenchError  # noqa: E402
from harness.execution import PLAIN, ExecutionOptions  # noqa: E402
from harness.model_spec import ModelSpec, OptimizerSpec  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"the keras backend needs KERAS_BACKEND=tensorflow, not {keras.backend.backend()}"
    )

tf.get_logger().setLevel("ERROR")  # retracing notices: every new model traces its own step

# Grow GPU memory on demand, so TensorFlow does not take the whole card and its peak is honest.
for _gpu in tf.config.list_physical_devices("GPU"):
    tf.config.experimental.set_memory_growth(_gpu, True)


def _correct_labels(logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.cast(tf.cast(logits > 0, tf.float32) == y, tf.float32))


def _correct_tokens(logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == y, tf.float32))


# `ModelSpec.loss` -> how many predictions of a batch were right, counted on the device.
CORRECT_PREDICTIONS = {
    "binary_crossentropy": _correct_labels,
    "sparse_categorical_crossentropy": _correct_tokens,
}


class KerasModel(TrainableModel):
    def __init__(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions = PLAIN
    ) -> None:
        if not options.flush_denormal:
            raise BenchError(
                "flush_denormal: expected true for the keras backend (TensorFlow flushes "
                "denormals to zero in its CPU kernels and has no switch); received false"
            )
        self.model = build_keras_model(spec, options)
        self.variables = canonical_variables(spec, self.model)
        self.optimizer = keras_optimizer(optimizer)
        if options.precision == "fp16":  # fp16's narrow exponent underflows small gradients
            self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
        self.optimizer.build(self.model.trainable_variables)
        self.language_model = spec.sequence_output
        self.loss_fn = LOSSES[spec.loss]()
        self._correct_predictions = CORRECT_PREDICTIONS[spec.loss]
        self._loss_sum = tf.Variable(0.0, trainable=False)
        self._correct = tf.Variable(0.0, trainable=False)
        self._seen = tf.Variable(0.0, trainable=False)
        self._jit_compile = options.jit_compile or None  # None: TensorFlow's default, no XLA
        self._graphs: dict[tuple[str, tuple[int, ...]], tf.types.experimental.PolymorphicFunction]
        self._graphs = {}

    def _graph(
        self, name: str, shape: tuple[int, ...]
    ) -> tf.types.experimental.PolymorphicFunction:
        """The compiled step, prediction or scoring function for batches of this shape.

        Traced once per batch shape (an epoch has at most two: full batches and the remainder).
        With free dimensions TensorFlow's recurrent loop ran a GRU step 20-30% slower on a CPU
        than with the shape fixed (docs/benchmarks.md), and the harness must time the framework
        at its best, not at its most general.
        """
        key = (name, tuple(shape))
        if key not in self._graphs:
            tokens = tf.TensorSpec(shape, tf.int32)
            targets = tokens if self.language_model else tf.TensorSpec(shape[:1], tf.float32)
            if name == "train":
                function, signature = self._train_step_eager, (tokens, targets)
            elif name == "predict":
                function, signature = (lambda x: self._logits(x, False)), (tokens,)
            else:
                function, signature = self._score_eager, (tokens, tokens)
            jit = self._jit_compile if name == "train" else None
            self._graphs[key] = tf.function(function, input_signature=signature, jit_compile=jit)
        return self._graphs[key]

    def _logits(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        logits = self.model(x, training=training)
        return logits if self.language_model else logits[:, 0]

    def _score_eager(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        logits = self._logits(x, False)
        log_probs = tf.gather(tf.nn.log_softmax(logits), y, batch_dims=2)
        return log_probs, tf.argmax(logits, -1, output_type=tf.int32)

    def _loss_and_tape(
        self, x: tf.Tensor, y: tf.Tensor, scaled: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor, list]:
        with tf.GradientTape() as tape:
            logits = self._logits(x, True)
            loss = self.loss_fn(y, logits)
            # fp16: a LossScaleOptimizer scales here and unscales in apply_gradients.
            target = self.optimizer.scale_loss(loss) if scaled else loss
        gradients = tape.gradient(target, self.model.trainable_variables)
        # The embedding's gradient arrives as IndexedSlices with one slice per token occurrence.
        # Keras's RMSprop and Adam square those slices one by one, so a word seen twice in a
        # batch gets g1^2 + g2^2 instead of (g1 + g2)^2 in its second moment. Summing them first
        # gives the optimiser's textbook update, the one PyTorch computes (docs/equivalence.md).
        return logits, loss, [tf.convert_to_tensor(gradient) for gradient in gradients]

    def _train_step_eager(self, x: tf.Tensor, y: tf.Tensor) -> None:
        logits, loss, gradients = self._loss_and_tape(x, y, scaled=True)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables, strict=True))
        count = tf.cast(tf.size(y), tf.float32)  # reviews, or tokens for a language model
        self._loss_sum.assign_add(loss * count)
        self._correct.assign_add(self._correct_predictions(logits, y))
        self._seen.assign_add(count)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> None:
        self._graph("train", x.shape)(x, y)

    def take_train_metrics(self) -> tuple[float, float]:
        seen = max(float(self._seen.numpy()), 1.0)
        loss = float(self._loss_sum.numpy()) / seen
        accuracy = float(self._correct.numpy()) / seen
        for accumulator in (self._loss_sum, self._correct, self._seen):
            accumulator.assign(0.0)
        return loss, accuracy

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        return self._graph("predict", x.shape)(x).numpy().astype(np.float32)

    def score_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        log_probs, predicted = self._graph("score", x.shape)(x, y)
        return log_probs.numpy(), predicted.numpy()

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
        _, loss, gradients = self._loss_and_tape(tf.constant(x), tf.constant(y))
        by_variable = {
            id(variable): gradient.numpy()
            for variable, gradient in zip(self.model.trainable_variables, gradients, strict=True)
        }
        return float(loss), {name: by_variable[id(v)] for name, v in self.variables.items()}

    def get_weights(self) -> Weights:
        return {name: np.asarray(v.numpy(), np.float32) for name, v in self.variables.items()}

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

    def denormal_mode(self) -> str:
        return "flush"  # TensorFlow's CPU kernels, always (measured: docs/benchmarks.md)


class _EpochTimer(keras.callbacks.Callback):
    """Seconds per epoch of `model.fit`, ended by reading the epoch's loss (a forced value)."""

    def __init__(self, synchronize) -> None:
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


class KerasBackend(Backend):
    name = "keras"

    def __init__(self) -> None:
        self.gpus = tf.config.list_physical_devices("GPU")

    def framework(self) -> tuple[str, str]:
        return "keras", f"{keras.__version__} (tensorflow {tf.__version__})"

    def accelerator(self) -> str | None:
        if not self.gpus:
            return None
        return tf.config.experimental.get_device_details(self.gpus[0]).get("device_name", "GPU")

    def seed(self, seed: int) -> None:
        keras.utils.set_random_seed(seed)
        tf.config.experimental.enable_op_determinism()

    def build_model(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions
    ) -> KerasModel:
        return KerasModel(spec, optimizer, options)

    def synchronize(self) -> None:
        if self.gpus:  # TensorFlow runs CPU ops synchronously; a GPU's queue needs waiting for
            tf.test.experimental.sync_devices()

    def limit_threads(self, threads: int) -> int:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        return tf.config.threading.get_intra_op_parallelism_threads()

    def plain_network(self, spec: ModelSpec, weights: Weights) -> keras.Model:
        """The Keras model `fit` trains, from the harness's initial weights."""
        model = build_keras_model(spec)
        for name, variable in canonical_variables(spec, model).items():
            variable.assign(weights[name])
        return model

    def plain_network_weights(self, spec: ModelSpec, network: object) -> Weights:
        variables = canonical_variables(spec, network).items()  # type: ignore[arg-type]
        return {name: np.asarray(keras.ops.convert_to_numpy(v.value)) for name, v in variables}

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

        `compile`'s defaults are kept, so on a GPU `fit` uses XLA where Keras chooses to
        (jit_compile="auto"); on a CPU it does not.
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

    def reset_peak_device_memory(self) -> None:
        if self.gpus:
            tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_device_memory(self) -> int | None:
        if not self.gpus:
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


BACKEND = KerasBackend()
