"""Keras 3 on TensorFlow (`keras`): the model of `ModelSpec` with Keras's own layers.

The training step is a compiled `tf.function` around Keras's optimiser and loss, fed the
harness's batches; `model.fit` would shuffle and batch by itself. Execution options apply to
this model only: a mixed-precision dtype policy on its layers (never the global policy), XLA on
its training step, cuDNN allowed or not on its recurrent layers. What every Keras backend
shares is in `backends.keras_common`.
"""

from __future__ import annotations

import os

from backends.keras_loading import select_keras_backend

select_keras_backend("keras", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter quiet

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from backends.base import Weights  # noqa: E402
from backends.keras_common import (  # noqa: E402
    KerasBackendBase,
    KerasTrainable,
    correct_predictions,
    refuse_kept_denormals,
    token_scores,
)
from harness.execution import PLAIN, ExecutionOptions  # noqa: E402
from harness.model_spec import ModelSpec, OptimizerSpec  # noqa: E402

tf.get_logger().setLevel("ERROR")  # retracing notices: every new model traces its own step

# Grow GPU memory on demand, so TensorFlow does not take the whole card and its peak is honest.
for _gpu in tf.config.list_physical_devices("GPU"):
    tf.config.experimental.set_memory_growth(_gpu, True)


class KerasModel(KerasTrainable):
    def __init__(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions = PLAIN
    ) -> None:
        refuse_kept_denormals(options, "tensorflow")
        super().__init__(spec, optimizer, options)
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
                function, signature = (
                    (lambda x, y: token_scores(self._logits(x, False), y)),
                    (
                        tokens,
                        tokens,
                    ),
                )
            jit = self._jit_compile if name == "train" else None
            self._graphs[key] = tf.function(function, input_signature=signature, jit_compile=jit)
        return self._graphs[key]

    def _logits(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        return self.head(self.model(x, training=training))

    def _loss_and_tape(
        self, x: tf.Tensor, y: tf.Tensor, scaled: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor, list]:
        with tf.GradientTape() as tape:
            logits = self._logits(x, True)
            loss = self.loss_fn(y, logits)
            # fp16: a LossScaleOptimizer scales here and unscales in apply_gradients.
            target = self.optimizer.scale_loss(loss) if scaled else loss
        gradients = tape.gradient(target, self.model.trainable_variables)
        # TensorFlow only: the embedding's gradient arrives as IndexedSlices with one slice per
        # token occurrence. Keras's RMSprop and Adam square those slices one by one, so a word
        # seen twice in a batch gets g1^2 + g2^2 instead of (g1 + g2)^2 in its second moment.
        # Summing them first gives the optimiser's textbook update, the one PyTorch, JAX and
        # Keras on them compute (docs/equivalence.md).
        return logits, loss, [tf.convert_to_tensor(gradient) for gradient in gradients]

    def _train_step_eager(self, x: tf.Tensor, y: tf.Tensor) -> None:
        logits, loss, gradients = self._loss_and_tape(x, y, scaled=True)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables, strict=True))
        count = tf.cast(tf.size(y), tf.float32)  # reviews, or tokens for a language model
        self._loss_sum.assign_add(loss * count)
        self._correct.assign_add(correct_predictions(self.spec.loss, logits, y))
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

    def denormal_mode(self) -> str:
        return "flush"  # TensorFlow's CPU kernels, always (measured: docs/benchmarks.md)


class KerasBackend(KerasBackendBase):
    name = "keras"

    def __init__(self) -> None:
        self.gpus = tf.config.list_physical_devices("GPU")

    def framework_version(self) -> str:
        return tf.__version__

    def accelerator(self) -> str | None:
        if not self.gpus:
            return None
        return tf.config.experimental.get_device_details(self.gpus[0]).get("device_name", "GPU")

    def seed(self, seed: int) -> None:
        keras.utils.set_random_seed(seed)  # Python, numpy and TensorFlow
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

    def reset_peak_device_memory(self) -> None:
        if self.gpus:
            tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_device_memory(self) -> int | None:
        if not self.gpus:
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


BACKEND = KerasBackend()
