"""The Keras model of a `ModelSpec`, written once for every Keras backend (TensorFlow, JAX, torch).

Nothing here imports a framework beyond Keras itself, so the same layers, canonical weight
mapping and optimiser constants serve `keras` (TensorFlow), `keras-jax` and `keras-torch`: what
differs between those backends is only the compiled training step around this model.
Layers keep their default activations and no recurrent dropout, so that the fused (cuDNN) kernel
stays eligible where the backend has one.
"""

from __future__ import annotations

import keras
from keras import layers

from harness.execution import PLAIN, ExecutionOptions
from harness.model_spec import (
    ADAM_BETA_1,
    ADAM_BETA_2,
    EPSILON,
    RMSPROP_RHO,
    ModelSpec,
    OptimizerSpec,
    direction_prefixes,
)

POLICIES = {"float32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
# `ModelSpec.loss` -> Keras's loss from logits, and the accuracy metric `model.fit` reports with it.
LOSSES = {
    "binary_crossentropy": lambda: keras.losses.BinaryCrossentropy(from_logits=True),
    "sparse_categorical_crossentropy": (
        lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    ),
}
ACCURACIES = {
    "binary_crossentropy": lambda: keras.metrics.BinaryAccuracy(threshold=0.0),
    "sparse_categorical_crossentropy": keras.metrics.SparseCategoricalAccuracy,
}


def _recurrent_layer(
    spec: ModelSpec, return_sequences: bool, options: ExecutionOptions = PLAIN
) -> layers.Layer:
    units, dtype = spec.hidden_size, POLICIES[options.precision]
    # XLA cannot compile TensorFlow's cuDNN op, so a compiled TensorFlow step takes the generic
    # kernel; JAX compiles its cuDNN LSTM inside `jax.jit`.
    compiled_tf = options.jit_compile and keras.backend.backend() == "tensorflow"
    fused = {"use_cudnn": "auto" if options.cudnn and not compiled_tf else False}
    match spec.architecture:
        case "simple_rnn":
            return layers.SimpleRNN(units, return_sequences=return_sequences, dtype=dtype)
        case "lstm":
            return layers.LSTM(units, return_sequences=return_sequences, dtype=dtype, **fused)
        case "gru":  # reset_after=True
            return layers.GRU(units, return_sequences=return_sequences, dtype=dtype, **fused)
        case "bilstm":
            return layers.Bidirectional(
                layers.LSTM(units, return_sequences=return_sequences, dtype=dtype, **fused),
                dtype=dtype,
            )
    raise AssertionError(spec.architecture)  # ModelSpec validated the name


def keras_optimizer(spec: OptimizerSpec) -> keras.optimizers.Optimizer:
    if spec.name == "adam":
        return keras.optimizers.Adam(
            spec.learning_rate, beta_1=ADAM_BETA_1, beta_2=ADAM_BETA_2, epsilon=EPSILON
        )
    return keras.optimizers.RMSprop(spec.learning_rate, rho=RMSPROP_RHO, epsilon=EPSILON)


def build_keras_model(spec: ModelSpec, options: ExecutionOptions = PLAIN) -> keras.Model:
    dtype = POLICIES[options.precision]
    stack: list[layers.Layer] = [
        keras.Input(shape=(None,), dtype="int32"),
        layers.Embedding(spec.vocab_size, spec.embedding_dim, dtype=dtype),
    ]
    for layer in range(spec.num_layers):
        last = layer == spec.num_layers - 1
        sequences = spec.sequence_output or not last
        stack.append(_recurrent_layer(spec, return_sequences=sequences, options=options))
        stack.append(layers.Dropout(spec.dropout_rate, dtype=dtype))
    # The head stays float32 under mixed precision, as Keras's guide advises, so the logits
    # and the loss keep float32's range. Applied at every time step for a language model.
    stack.append(layers.Dense(spec.output_size, dtype="float32"))
    return keras.Sequential(stack, name=spec.architecture)


def recurrent_directions(model: keras.Model) -> list[layers.Layer]:
    """Every one-direction recurrent layer of the model, a Bidirectional's two included."""
    directions: list[layers.Layer] = []
    for layer in model.layers[1:]:
        if isinstance(layer, layers.Bidirectional):
            directions += [layer.forward_layer, layer.backward_layer]
        elif isinstance(layer, layers.RNN):
            directions.append(layer)
    return directions


def canonical_variables(spec: ModelSpec, model: keras.Model) -> dict[str, keras.Variable]:
    """Canonical name -> Keras variable, found by structure rather than by generated names."""
    recurrent = [
        layer for layer in model.layers[1:] if isinstance(layer, layers.Bidirectional | layers.RNN)
    ]
    variables = {"embedding": model.layers[0].embeddings}
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


def fused_kernel_eligible(layer: layers.Layer) -> bool:
    """Whether the active Keras backend's own test passes for this layer's fused kernel.

    `cudnn_ok` is the test every Keras backend runs before it takes its cuDNN path; it is not
    public API, so it is read through `keras.src`, in this one place. TensorFlow's variant also
    checks the GRU's `reset_after`.
    """
    from keras.src import backend as keras_backend

    if not isinstance(layer, layers.LSTM | layers.GRU) or layer.use_cudnn not in ("auto", True):
        return False
    cell = layer.cell
    extra = {}
    if keras.backend.backend() == "tensorflow" and isinstance(layer, layers.GRU):
        extra = {"reset_after": cell.reset_after}
    return bool(
        keras_backend.cudnn_ok(
            cell.activation, cell.recurrent_activation, layer.unroll, cell.use_bias, **extra
        )
    )
