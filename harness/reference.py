"""The forward pass of a `ModelSpec` in plain numpy, float32: the reference every backend's
logits are checked against (`bench doctor`, and the conformance suite on the CPU).

Written from Keras's cell formulas and the canonical weight layout (`harness.model_spec`), with
no framework at all, so a fused kernel, a driver or a TF32 default that changes the numbers on
a device shows up as a gap to it. Inference only: dropout is off, as in `predict_batch`.
"""

from __future__ import annotations

import numpy as np

from harness.model_spec import ModelSpec, direction_prefixes


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _run_cell(cell: str, w: dict[str, np.ndarray], inputs: np.ndarray) -> np.ndarray:
    """One direction of one layer over ``inputs`` (batch, time, features): every step's output.

    Gate orders are Keras's: LSTM i, f, c, o; GRU z, r, h with `reset_after` (separate input
    and recurrent biases, the reset gate applied to the recurrent part).
    """
    kernel, recurrent, bias = w["kernel"], w["recurrent_kernel"], w["bias"]
    units = recurrent.shape[0]
    batch, time = inputs.shape[:2]
    h = np.zeros((batch, units), np.float32)
    c = np.zeros((batch, units), np.float32)
    outputs = np.empty((batch, time, units), np.float32)
    for t in range(time):
        x = inputs[:, t] @ kernel
        if cell == "simple_rnn":
            h = np.tanh(x + h @ recurrent + bias)
        elif cell == "lstm":
            z = x + h @ recurrent + bias
            i, f, g, o = np.split(z, 4, axis=1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:  # gru
            x_z, x_r, x_h = np.split(x + bias[0], 3, axis=1)
            r_z, r_r, r_h = np.split(h @ recurrent + bias[1], 3, axis=1)
            z = _sigmoid(x_z + r_z)
            candidate = np.tanh(x_h + _sigmoid(x_r + r_r) * r_h)
            h = z * h + (1.0 - z) * candidate
        outputs[:, t] = h
    return outputs


def reference_logits(spec: ModelSpec, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The logits `TrainableModel.predict_batch` must return for the int token ids ``x``:
    ``(batch,)`` for classification, ``(batch, time, vocab)`` for a language model."""
    w = {name: np.asarray(value, np.float32) for name, value in weights.items()}
    sequence = w["embedding"][x]
    for layer in range(spec.num_layers):
        outputs = []
        for prefix in direction_prefixes(spec, layer):
            own = {k.rsplit("/", 1)[1]: v for k, v in w.items() if k.startswith(prefix + "/")}
            if prefix.endswith("/backward"):  # runs from the end; its outputs put back in order
                outputs.append(_run_cell(spec.cell, own, sequence[:, ::-1])[:, ::-1])
            else:
                outputs.append(_run_cell(spec.cell, own, sequence))
        sequence = np.concatenate(outputs, axis=-1)
    if spec.sequence_output:
        return sequence @ w["dense/kernel"] + w["dense/bias"]
    if spec.directions == 2:
        # Keras's Bidirectional reads the forward direction's last step and the backward
        # direction's last step, which is the first position once put back in order.
        units = spec.hidden_size
        last = np.concatenate([sequence[:, -1, :units], sequence[:, 0, units:]], axis=-1)
    else:
        last = sequence[:, -1]
    return (last @ w["dense/kernel"] + w["dense/bias"])[:, 0]
