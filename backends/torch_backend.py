"""The PyTorch backend: the model of `ModelSpec` written with torch.nn's cuDNN-capable layers.

Two details make it the same function as the Keras model:
- SimpleRNN and LSTM in PyTorch carry a second (hidden-to-hidden) bias that Keras does not have.
  It is held at zero and frozen, so the function and the trainable-parameter count match.
- PyTorch orders the GRU gates (reset, update, new) where Keras orders them (update, reset, new);
  weights are permuted on the way in and out. Keras's GRU uses ``reset_after=True``, which is
  PyTorch's formula.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from backends.base import Backend, TrainableModel, Weights
from backends.torch_optimizers import KerasAdam, KerasRMSprop
from harness.errors import BenchError
from harness.execution import FP16_NEEDS_GPU, PLAIN, ExecutionOptions
from harness.model_spec import (
    EPSILON,
    RMSPROP_RHO,
    ModelSpec,
    OptimizerSpec,
    direction_prefixes,
    layer_input_size,
)

RECURRENT_LAYERS = {"simple_rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU, "bilstm": nn.LSTM}
OPTIMIZERS = {"rmsprop": KerasRMSprop, "adam": KerasAdam}
DIRECTION_SUFFIXES = ("", "_reverse")  # PyTorch's names for the forward and backward weights
HALF_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def _cpu_lstm_has_bf16(spec: ModelSpec) -> bool:
    """PyTorch runs a CPU LSTM under bf16 autocast on oneDNN, which fails mid-step on a CPU
    without bf16 instructions; SimpleRNN and GRU have a fallback. Asked up front, so the user
    gets one line instead of a traceback from the first batch."""
    if spec.architecture not in ("lstm", "bilstm"):
        return True
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return probe is None or bool(probe())


class TorchModel(TrainableModel):
    def __init__(
        self,
        spec: ModelSpec,
        optimizer: OptimizerSpec,
        device: torch.device,
        options: ExecutionOptions = PLAIN,
    ) -> None:
        self.spec = spec
        self.device = device
        self.options = options
        if options.precision == "fp16" and device.type != "cuda":
            raise BenchError(FP16_NEEDS_GPU)
        if options.precision == "bf16" and device.type == "cpu" and not _cpu_lstm_has_bf16(spec):
            raise BenchError(
                "precision: expected float32 for a PyTorch LSTM on this CPU (its bf16 LSTM "
                "kernel, oneDNN's, needs AVX-512 BF16 or AMX); received 'bf16'"
            )
        self._denormal_mode = set_denormal_mode(options.flush_denormal)
        self._kernel: str | None = None
        self.module = RecurrentNetwork(spec).to(device)
        # The compiled wrapper shares the module's parameters; eager code keeps using `module`.
        self.network = torch.compile(self.module) if options.jit_compile else self.module
        trainable = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = OPTIMIZERS[optimizer.name](trainable, lr=optimizer.learning_rate)
        self.language_model = spec.sequence_output
        half = HALF_TYPES.get(options.precision)
        self._autocast = (
            (lambda: torch.autocast(device.type, dtype=half))
            if half is not None
            else contextlib.nullcontext
        )
        # fp16's narrow exponent underflows small gradients; bf16 has float32's range.
        self._scaler = torch.amp.GradScaler(device.type) if options.precision == "fp16" else None
        self._pinned = device.type == "cuda"  # page-locked copies overlap with the GPU's work
        self._reset_accumulators()

    def _kernels(self) -> contextlib.AbstractContextManager:
        """cuDNN switched off for this model only when its options say so."""
        if self.options.cudnn:
            return contextlib.nullcontext()
        return torch.backends.cudnn.flags(enabled=False)

    def _reset_accumulators(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._correct = torch.zeros((), device=self.device)
        self._seen = 0

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self._pinned:
            tensor = tensor.pin_memory()  # so that the copy below does not block the host
        return tensor.to(self.device, non_blocking=True)

    def _tensors(self, x: np.ndarray, y: np.ndarray | None = None) -> tuple[torch.Tensor, ...]:
        xs = self._to_device(x)
        if y is None:
            return (xs,)
        ys = self._to_device(y)
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
        with self._kernels():
            with self._autocast():
                logits = self.network(xs)
                loss = self.loss_fn(logits, ys)
            if self._scaler is None:
                loss.backward()
                self.optimizer.step()
            else:
                self._scaler.scale(loss).backward()
                self._scaler.step(self.optimizer)
                self._scaler.update()
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
        with self._kernels(), self._autocast():
            outputs = [
                self.network(*self._tensors(x[start : start + batch_size])).float().cpu()
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
            # The same precision, kernels and compiled network as `predict_logits` and as the
            # Keras backend's scoring, so both frameworks' perplexities are computed alike.
            with self._kernels(), self._autocast():
                logits = self.network(xs).float()
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

    def set_weights(self, weights: Weights) -> None:
        load_weights(self.module, weights)

    def count_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    def summary(self) -> str:
        return f"{self.module}\nTrainable params: {self.count_trainable_parameters():,}"

    def kernel(self) -> str:
        """The recurrent kernel PyTorch dispatches to, read from its profiler on a tiny batch:
        cuDNN's RNN op, oneDNN's (PyTorch's CPU LSTM), or neither (a loop of generic ops)."""
        if self._kernel is None:
            x = np.ones((2, 3), np.int32)
            y = np.zeros(
                (2, 3) if self.language_model else 2,
                np.int32 if self.language_model else np.float32,
            )
            xs, ys = self._tensors(x, y)
            activities = [torch.profiler.ProfilerActivity.CPU]
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                self.module.train()
                with _quiet_stderr(), torch.profiler.profile(activities=activities) as profile:
                    # The eager module: a compiled network would trace this tiny batch too.
                    with self._kernels(), self._autocast():
                        self.loss_fn(self.module(xs), ys).backward()
                self.optimizer.zero_grad(set_to_none=True)
            names = " ".join(event.name for event in profile.events())
            self._kernel = (
                "cudnn"
                if "cudnn_rnn" in names
                else "onednn"
                if "mkldnn_rnn" in names
                else "generic"
            )
        return self._kernel

    def denormal_mode(self) -> str:
        return self._denormal_mode


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: the profiler announces its start and stop there from C++."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def set_denormal_mode(flush: bool) -> str:
    """Flush denormals to zero on this CPU, or keep them (PyTorch's default); the mode in force.

    The flag is per process (each run has its own), set before the model's first operation so
    that the thread pool's workers inherit it.
    """
    if not flush:
        torch.set_flush_denormal(False)
        return "keep"
    return "flush" if torch.set_flush_denormal(True) else "keep (this CPU cannot flush)"


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

    def build(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions = PLAIN
    ) -> TorchModel:
        return TorchModel(spec, optimizer, self.device, options)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def limit_threads(self, threads: int) -> int:
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # allowed only before the first parallel work
            torch.set_num_interop_threads(threads)
        return torch.get_num_threads()

    def plain_network(self, spec: ModelSpec, weights: Weights) -> RecurrentNetwork:
        """The torch.nn network the plain loop trains, from the harness's initial weights."""
        network = RecurrentNetwork(spec)
        load_weights(network, weights)
        return network.to(self.device)

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
        """The loop of PyTorch's tutorials: DataLoader, zero_grad, forward, loss, backward, step.

        torch.optim's own RMSprop/Adam with Keras's constants, as a user would write it (its
        epsilon placement differs from Keras's, which changes the numbers, not the cost).
        """
        model = self.plain_network(spec, weights)
        if optimizer.name == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=optimizer.learning_rate, eps=EPSILON)
        else:
            opt = torch.optim.RMSprop(
                model.parameters(), lr=optimizer.learning_rate, alpha=RMSPROP_RHO, eps=EPSILON
            )
        targets = torch.from_numpy(y).long() if spec.sequence_output else torch.from_numpy(y)
        loader = DataLoader(
            TensorDataset(torch.from_numpy(x), targets),
            batch_size=batch_size,
            shuffle=False,
            pin_memory=self.device.type == "cuda",
        )
        loss_fn = nn.CrossEntropyLoss() if spec.sequence_output else nn.BCEWithLogitsLoss()
        seconds = []
        for _ in range(epochs):
            started = time.perf_counter()
            model.train()
            for xb, yb in loader:
                xb = xb.to(self.device, non_blocking=True)
                yb = yb.to(self.device, non_blocking=True)
                opt.zero_grad()
                logits = model(xb)
                if spec.sequence_output:
                    logits, yb = logits.flatten(0, 1), yb.flatten()
                loss = loss_fn(logits, yb)
                loss.backward()
                opt.step()
            self.synchronize()
            seconds.append(time.perf_counter() - started)
            if after_epoch is not None:
                after_epoch()
        return seconds

    def reset_peak_device_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_device_memory(self) -> int | None:
        if self.device.type != "cuda":
            return None
        return int(torch.cuda.max_memory_allocated(self.device))


BACKEND = TorchBackend()
