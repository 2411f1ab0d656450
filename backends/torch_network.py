"""The torch.nn network of a `ModelSpec`, and its weights in the canonical (Keras) layout.

Two details make it the same function as the Keras model:
- SimpleRNN and LSTM in PyTorch carry a second (hidden-to-hidden) bias that Keras does not have.
  It is held at zero and frozen, so the function and the trainable-parameter count match.
- PyTorch orders the GRU gates (reset, update, new) where Keras orders them (update, reset, new);
  weights are permuted on the way in and out. Keras's GRU uses ``reset_after=True``, which is
  PyTorch's formula.

Both the harness's model (`backends.torch_model`) and the plain tutorial loop
(`backends.torch_backend`) train this network, so both start from the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from backends.base import Weights
from harness.model_spec import ModelSpec, direction_prefixes, layer_input_size

RECURRENT_LAYERS = {"simple_rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU, "bilstm": nn.LSTM}
DIRECTION_SUFFIXES = ("", "_reverse")  # PyTorch's names for the forward and backward weights


class RecurrentNetwork(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.embedding = nn.Embedding(spec.vocab_size, spec.embedding_dim)
        self.recurrent = nn.ModuleList(
            RECURRENT_LAYERS[spec.architecture](
                layer_input_size(spec, layer),
                spec.hidden_size,
                batch_first=True,
                bidirectional=spec.directions == 2,
            )
            for layer in range(spec.num_layers)
        )
        self.dropout = nn.Dropout(spec.dropout_rate)
        self.dense = nn.Linear(spec.hidden_size * spec.directions, spec.output_size)
        if spec.cell != "gru":
            for layer in self.recurrent:
                for name, param in layer.named_parameters():
                    if name.startswith("bias_hh"):
                        param.requires_grad_(False)
                        nn.init.zeros_(param)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embedding(x)
        for layer in self.recurrent:
            h, _ = layer(h)
            h = self.dropout(h)
        if self.spec.sequence_output:
            return self.dense(h)  # (batch, time, vocab): next-word logits at every position
        return self.dense(self._last_output(h)).squeeze(-1)

    def _last_output(self, sequence: torch.Tensor) -> torch.Tensor:
        """What Keras returns with return_sequences=False: each direction's final output."""
        if self.spec.directions == 1:
            return sequence[:, -1]
        units = self.spec.hidden_size
        return torch.cat([sequence[:, -1, :units], sequence[:, 0, units:]], dim=-1)


def _keras_gate_order(spec: ModelSpec, matrix: np.ndarray) -> np.ndarray:
    """Swap GRU gate blocks between Keras (z, r, h) and PyTorch (r, z, n); its own inverse."""
    if spec.cell != "gru":
        return matrix
    z, r, h = np.split(matrix, 3, axis=-1)
    return np.concatenate([r, z, h], axis=-1)


@torch.no_grad()
def load_weights(m: RecurrentNetwork, weights: Weights) -> None:
    """Canonical-layout weights into a network (the frozen second biases stay at zero)."""
    spec = m.spec

    def put(param: torch.Tensor, value: np.ndarray) -> None:
        param.copy_(torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)))

    put(m.embedding.weight, weights["embedding"])
    for layer, rnn in enumerate(m.recurrent):
        for prefix, sfx in zip(direction_prefixes(spec, layer), DIRECTION_SUFFIXES, strict=False):
            put(
                getattr(rnn, f"weight_ih_l0{sfx}"),
                _keras_gate_order(spec, weights[f"{prefix}/kernel"]).T,
            )
            put(
                getattr(rnn, f"weight_hh_l0{sfx}"),
                _keras_gate_order(spec, weights[f"{prefix}/recurrent_kernel"]).T,
            )
            bias = _keras_gate_order(spec, weights[f"{prefix}/bias"])
            if spec.cell == "gru":
                put(getattr(rnn, f"bias_ih_l0{sfx}"), bias[0])
                put(getattr(rnn, f"bias_hh_l0{sfx}"), bias[1])
            else:
                put(getattr(rnn, f"bias_ih_l0{sfx}"), bias)
                put(getattr(rnn, f"bias_hh_l0{sfx}"), np.zeros_like(bias))
    put(m.dense.weight, weights["dense/kernel"].T)
    put(m.dense.bias, weights["dense/bias"])


def read_weights(
    m: RecurrentNetwork, read: Callable[[torch.Tensor], torch.Tensor] = lambda p: p
) -> Weights:
    """Canonical-layout arrays from each parameter: its value, or (``read=lambda p: p.grad``)
    its gradient."""
    spec = m.spec

    def get(p: torch.Tensor) -> np.ndarray:
        return read(p).detach().cpu().numpy().astype(np.float32)

    out: Weights = {"embedding": get(m.embedding.weight)}
    for layer, rnn in enumerate(m.recurrent):
        for prefix, sfx in zip(direction_prefixes(spec, layer), DIRECTION_SUFFIXES, strict=False):
            p = {
                name: getattr(rnn, f"{name}_l0{sfx}")
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            }
            out[f"{prefix}/kernel"] = _keras_gate_order(spec, get(p["weight_ih"]).T)
            out[f"{prefix}/recurrent_kernel"] = _keras_gate_order(spec, get(p["weight_hh"]).T)
            if spec.cell == "gru":
                out[f"{prefix}/bias"] = _keras_gate_order(
                    spec, np.stack([get(p["bias_ih"]), get(p["bias_hh"])])
                )
            else:
                out[f"{prefix}/bias"] = get(p["bias_ih"])
    out["dense/kernel"] = get(m.dense.weight).T
    out["dense/bias"] = get(m.dense.bias)
    return out
