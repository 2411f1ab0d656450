"""The Keras 3 backend (TensorFlow underneath): the model of `ModelSpec` with Keras's own layers.

Layers keep their default activations and no recurrent dropout, so on a GPU Keras runs the
LSTM and GRU layers on cuDNN. The training step is a compiled `tf.function` around Keras's
optimiser and loss, fed the harness's batches; `model.fit` would shuffle and batch by itself.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter quiet

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from backends.base import Backend, TrainableModel, Weights  # noqa: E402
from harness.model_spec import (  # noqa: E402
    ADAM_BETA_1,
    ADAM_BETA_2,
    EPSILON,
    RMSPROP_RHO,
    ModelSpec,
    OptimizerSpec,
    direction_prefixes,
)

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"the keras backend needs KERAS_BACKEND=tensorflow, not {keras.backend.backend()}"
    )

tf.get_logger().setLevel("ERROR")  # retracing notices: every new model traces its own step

# Grow GPU memory on demand, so TensorFlow does not take the whole card and its peak is honest.
for _gpu in tf.config.list_physical_devices("GPU"):
    tf.config.experimental.set_memory_growth(_gpu, True)


def _recurrent_layer(spec: ModelSpec, return_sequences: bool) -> layers.Layer:
    units = spec.hidden_size
    match spec.architecture:
        case "simple_rnn":
            return layers.SimpleRNN(units, return_sequences=return_sequences)
        case "lstm":
            return layers.LSTM(units, return_sequences=return_sequences)
        case "gru":
            return layers.GRU(units, return_sequences=return_sequences)  # reset_after=True
        case "bilstm":
            return layers.Bidirectional(layers.LSTM(units, return_sequences=return_sequences))
    raise AssertionError(spec.architecture)  # ModelSpec validated the name


def _optimizer(spec: OptimizerSpec) -> keras.optimizers.Optimizer:
    if spec.name == "adam":
        return keras.optimizers.Adam(
            spec.learning_rate, beta_1=ADAM_BETA_1, beta_2=ADAM_BETA_2, epsilon=EPSILON
        )
    return keras.optimizers.RMSprop(spec.learning_rate, rho=RMSPROP_RHO, epsilon=EPSILON)


def build_keras_model(spec: ModelSpec) -> keras.Model:
    stack: list[layers.Layer] = [
        keras.Input(shape=(None,), dtype="int32"),
        layers.Embedding(spec.vocab_size, spec.embedding_dim),
    ]
    for layer in range(spec.num_layers):
        last = layer == spec.num_layers - 1
        stack.append(_recurrent_layer(spec, return_sequences=spec.sequence_output or not last))
        stack.append(layers.Dropout(spec.dropout_rate))
    stack.append(layers.Dense(spec.output_size))  # applied at every time step for a language model
    return keras.Sequential(stack, name=spec.architecture)


def _canonical_variables(spec: ModelSpec, model: keras.Model) -> dict[str, keras.Variable]:
    """Canonical name -> Keras variable, found by structure rather than by generated names."""
    embedding, *rest = model.layers
    recurrent = [layer for layer in rest if not isinstance(layer, (layers.Dropout, layers.Dense))]
    variables = {"embedding": embedding.embeddings}
    for index, layer in enumerate(recurrent):
        directions = (
            [layer.forward_layer, layer.backward_layer]
            if isinstance(layer, layers.Bidirectional)
            else [layer]
        )
        for prefix, direction in zip(direction_prefixes(spec, index), directions, strict=True):
            cell = direction.cell
            variables[f"{prefix}/kernel"] = cell.kernel
            variables[f"{prefix}/recurrent_kernel"] = cell.recurrent_kernel
            variables[f"{prefix}/bias"] = cell.bias
    dense = model.layers[-1]
    variables["dense/kernel"] = dense.kernel
    variables["dense/bias"] = dense.bias
    return variables


class KerasModel(TrainableModel):
    def __init__(self, spec: ModelSpec, optimizer: OptimizerSpec) -> None:
        self.model = build_keras_model(spec)
        self.variables = _canonical_variables(spec, self.model)
        self.optimizer = _optimizer(optimizer)
        self.optimizer.build(self.model.trainable_variables)
        self.language_model = spec.sequence_output
        self.loss_fn = (
            keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            if self.language_model
            else keras.losses.BinaryCrossentropy(from_logits=True)
        )
        self._loss_sum = tf.Variable(0.0, trainable=False)
        self._correct = tf.Variable(0.0, trainable=False)
        self._seen = tf.Variable(0.0, trainable=False)
        tokens = tf.TensorSpec([None, None], tf.int32)
        targets = tokens if self.language_model else tf.TensorSpec([None], tf.float32)
        self._train_step = tf.function(self._train_step_eager, input_signature=(tokens, targets))
        self._predict = tf.function(lambda x: self._logits(x, False), input_signature=(tokens,))
        self._score = tf.function(self._score_eager, input_signature=(tokens, tokens))

    def _logits(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        logits = self.model(x, training=training)
        return logits if self.language_model else logits[:, 0]

    def _correct_predictions(self, logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        if self.language_model:
            return tf.reduce_sum(
                tf.cast(tf.argmax(logits, -1, output_type=tf.int32) == y, tf.float32)
            )
        return tf.reduce_sum(tf.cast(tf.cast(logits > 0, tf.float32) == y, tf.float32))

    def _score_eager(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        logits = self._logits(x, False)
        log_probs = tf.gather(tf.nn.log_softmax(logits), y, batch_dims=2)
        return log_probs, tf.argmax(logits, -1, output_type=tf.int32)

    def _loss_and_tape(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, list]:
        with tf.GradientTape() as tape:
            logits = self._logits(x, True)
            loss = self.loss_fn(y, logits)
        gradients = tape.gradient(loss, self.model.trainable_variables)
        # The embedding's gradient arrives as IndexedSlices with one slice per token occurrence.
        # Keras's RMSprop and Adam square those slices one by one, so a word seen twice in a
        # batch gets g1^2 + g2^2 instead of (g1 + g2)^2 in its second moment. Summing them first
        # gives the optimiser's textbook update, the one PyTorch computes (docs/equivalence.md).
        return logits, loss, [tf.convert_to_tensor(gradient) for gradient in gradients]

    def _train_step_eager(self, x: tf.Tensor, y: tf.Tensor) -> None:
        logits, loss, gradients = self._loss_and_tape(x, y)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables, strict=True))
        count = tf.cast(tf.size(y), tf.float32)  # reviews, or tokens for a language model
        self._loss_sum.assign_add(loss * count)
        self._correct.assign_add(self._correct_predictions(logits, y))
        self._seen.assign_add(count)

    def train_step(self, x: np.ndarray, y: np.ndarray) -> None:
        self._train_step(x, y)

    def take_train_metrics(self) -> tuple[float, float]:
        seen = max(float(self._seen.numpy()), 1.0)
        loss = float(self._loss_sum.numpy()) / seen
        accuracy = float(self._correct.numpy()) / seen
        for accumulator in (self._loss_sum, self._correct, self._seen):
            accumulator.assign(0.0)
        return loss, accuracy

    def predict_logits(self, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        outputs = [
            self._predict(x[start : start + batch_size]).numpy()
            for start in range(0, len(x), batch_size)
        ]
        return np.concatenate(outputs).astype(np.float32) if outputs else np.zeros(0, np.float32)

    def token_log_likelihood(
        self, x: np.ndarray, y: np.ndarray, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        scored = [
            self._score(x[start : start + batch_size], y[start : start + batch_size])
            for start in range(0, len(x), batch_size)
        ]
        return (
            np.concatenate([log_probs.numpy() for log_probs, _ in scored]),
            np.concatenate([predicted.numpy() for _, predicted in scored]),
        )

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

    def build(self, spec: ModelSpec, optimizer: OptimizerSpec) -> KerasModel:
        return KerasModel(spec, optimizer)

    def reset_peak_device_memory(self) -> None:
        if self.gpus:
            tf.config.experimental.reset_memory_stats("GPU:0")

    def peak_device_memory(self) -> int | None:
        if not self.gpus:
            return None
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


BACKEND = KerasBackend()
