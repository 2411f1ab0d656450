"""The PyTorch backend: the model of `ModelSpec` written with torch.nn's cuDNN-capable layers.

Two details make it the same function as the Keras model:
- SimpleRNN and LSTM in PyTorch carry a second (hidden-to-hidden) bias that Keras does not have.
  It is held at zero and frozen, so the function and the trainable-parameter count match.
- PyTorch orders the GRU gates (reset, update, new) where Keras orders them (update, reset, new);
  weights are permuted on the way in and out. Keras's GRU uses ``reset_after=True``, which is
  PyTorch's formula.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from backends.base import Backend, TrainableModel, Weights
from backends.torch_optimizers import KerasAdam, KerasRMSprop
from harness.model_spec import ModelSpec, OptimizerSpec, direction_prefixes, layer_input_size

RECURRENT_LAYERS = {"simple_rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU, "bilstm": nn.LSTM}
OPTIMIZERS = {"rmsprop": KerasRMSprop, "adam": KerasAdam}
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


class TorchModel(TrainableModel):
    def __init__(self, spec: ModelSpec, optimizer: OptimizerSpec, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        self.module = RecurrentNetwork(spec).to(device)
        trainable = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = OPTIMIZERS[optimizer.name](trainable, lr=optimizer.learning_rate)
        self.language_model = spec.sequence_output
        self._reset_accumulators()

    def _reset_accumulators(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._correct = torch.zeros((), device=self.device)
        self._seen = 0

    def _tensors(self, x: np.ndarray, y: np.ndarray | None = None) -> tuple[torch.Tensor, ...]:
        xs = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, non_blocking=True)
        if y is None:
            return (xs,)
        ys = torch.from_numpy(np.ascontiguousarray(y)).to(self.device, non_blocking=True)
        return xs, ys.long() if self.language_model else ys

    def loss_fn(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per prediction: per review (sigmoid) or per token (softmax)."""
        if self.language_model:
            return F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return F.binary_cross_entropy_with_logits(logits, targets)

    def _correct_predictions(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.language_model:
            return (logits.argmax(-1) == targets).sum()
        return ((logits > 0) == (targets > 0.5)).sum()

    def train_step(self, x: np.ndarray, y: np.ndarray) -> None:
        xs, ys = self._tensors(x, y)
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.module(xs)
        loss = self.loss_fn(logits, ys)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            self._loss_sum += loss.detach() * ys.numel()
            self._correct += self._correct_predictions(logits, ys)
        self._seen += ys.numel()

    def take_train_metrics(self) -> tuple[float, float]:
        seen = max(self._seen, 1)
        loss, accuracy = float(self._loss_sum) / seen, float(self._correct) / seen
        self._reset_accumulators()
        return loss, accuracy

    @torch.no_grad()
    def predict_logits(self, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        self.module.eval()
        outputs = [
            self.module(*self._tensors(x[start : start + batch_size])).float().cpu()
            for start in range(0, len(x), batch_size)
        ]
        return torch.cat(outputs).numpy() if outputs else np.zeros(0, np.float32)

    @torch.no_grad()
    def token_log_likelihood(
        self, x: np.ndarray, y: np.ndarray, batch_size: int = 64
    ) -> tuple[np.ndarray, np.ndarray]:
        self.module.eval()
        log_probs, predictions = [], []
        for start in range(0, len(x), batch_size):
            xs, ys = self._tensors(x[start : start + batch_size], y[start : start + batch_size])
            logits = self.module(xs).float()
            log_probs.append(logits.log_softmax(-1).gather(-1, ys.unsqueeze(-1)).squeeze(-1).cpu())
            predictions.append(logits.argmax(-1).int().cpu())
        return torch.cat(log_probs).numpy(), torch.cat(predictions).numpy()

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
        xs, ys = self._tensors(x, y)
        self.module.train()
        self.module.zero_grad(set_to_none=False)
        loss = self.loss_fn(self.module(xs), ys)
        loss.backward()
        gradients = self._to_canonical(lambda p: p.grad)
        self.module.zero_grad(set_to_none=True)
        return float(loss.detach()), gradients

    def get_weights(self) -> Weights:
        return self._to_canonical(lambda p: p.detach())

    def _to_canonical(self, read) -> Weights:
        """Canonical-layout arrays from each parameter (its value or its gradient)."""

        def get(p: torch.Tensor) -> np.ndarray:
            return read(p).detach().cpu().numpy().astype(np.float32)

        spec, m = self.spec, self.module
        out: Weights = {"embedding": get(m.embedding.weight)}
        for layer, rnn in enumerate(m.recurrent):
            for prefix, sfx in zip(
                direction_prefixes(spec, layer), DIRECTION_SUFFIXES, strict=False
            ):
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

    @torch.no_grad()
    def set_weights(self, weights: Weights) -> None:
        spec, m = self.spec, self.module

        def put(param: torch.Tensor, value: np.ndarray) -> None:
            param.copy_(torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)))

        put(m.embedding.weight, weights["embedding"])
        for layer, rnn in enumerate(m.recurrent):
            for prefix, sfx in zip(
                direction_prefixes(spec, layer), DIRECTION_SUFFIXES, strict=False
            ):
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

    def count_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    def summary(self) -> str:
        return f"{self.module}\nTrainable params: {self.count_trainable_parameters():,}"


class TorchBackend(Backend):
    name = "torch"

    def __init__(self) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def framework(self) -> tuple[str, str]:
        return "torch", torch.__version__

    def accelerator(self) -> str | None:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def build(self, spec: ModelSpec, optimizer: OptimizerSpec) -> TorchModel:
        return TorchModel(spec, optimizer, self.device)

    def reset_peak_device_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_device_memory(self) -> int | None:
        if self.device.type != "cuda":
            return None
        return int(torch.cuda.max_memory_allocated(self.device))


BACKEND = TorchBackend()
