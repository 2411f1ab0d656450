"""The PyTorch model the harness trains: `RecurrentNetwork` with Keras's optimiser formulas.

A training step is the eager autograd step of PyTorch's tutorials, with the execution options
applied to this model only: autocast for mixed precision (with a gradient scaler for fp16),
`torch.compile` around the network, cuDNN switched off on request.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import numpy as np
import torch
from torch.nn import functional as F

from backends.base import TrainableModel, Weights
from backends.torch_network import RecurrentNetwork, load_weights, read_weights
from backends.torch_optimizers import KerasAdam, KerasRMSprop
from harness.errors import BenchError
from harness.execution import PLAIN, ExecutionOptions
from harness.model_spec import ModelSpec, OptimizerSpec

OPTIMIZERS = {"rmsprop": KerasRMSprop, "adam": KerasAdam}
HALF_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


# `ModelSpec.loss` -> the mean cross-entropy per prediction, from logits.
LOSSES = {
    "binary_crossentropy": F.binary_cross_entropy_with_logits,
    "sparse_categorical_crossentropy": _token_cross_entropy,
}
# `ModelSpec.loss` -> how many predictions of a batch were right, counted on the device.
CORRECT_PREDICTIONS = {
    "binary_crossentropy": lambda logits, targets: ((logits > 0) == (targets > 0.5)).sum(),
    "sparse_categorical_crossentropy": lambda logits, targets: (logits.argmax(-1) == targets).sum(),
}


def _cpu_lstm_has_bf16(spec: ModelSpec) -> bool:
    """PyTorch runs a CPU LSTM under bf16 autocast on oneDNN, which fails mid-step on a CPU
    without bf16 instructions; SimpleRNN and GRU have a fallback. Asked up front, so the user
    gets one line instead of a traceback from the first batch."""
    if spec.architecture not in ("lstm", "bilstm"):
        return True
    # Private, and read defensively: PyTorch has no public probe for oneDNN's bf16 support.
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
        self.loss_fn = LOSSES[spec.loss]
        self._correct_predictions = CORRECT_PREDICTIONS[spec.loss]
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

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        ys = self._to_device(y)
        return self._to_device(x), ys.long() if self.language_model else ys

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
    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        self.module.eval()
        with self._kernels(), self._autocast():
            return self.network(self._to_device(x)).float().cpu().numpy()

    @torch.no_grad()
    def score_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.module.eval()
        xs, ys = self._tensors(x, y)
        # The same precision, kernels and compiled network as `predict_batch` and as the other
        # backends' scoring, so all frameworks' perplexities are computed alike.
        with self._kernels(), self._autocast():
            logits = self.network(xs).float()
        log_probs = logits.log_softmax(-1).gather(-1, ys.unsqueeze(-1)).squeeze(-1)
        return log_probs.cpu().numpy(), logits.argmax(-1).int().cpu().numpy()

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
        xs, ys = self._tensors(x, y)
        self.module.train()
        self.module.zero_grad(set_to_none=False)
        loss = self.loss_fn(self.module(xs), ys)
        loss.backward()
        gradients = read_weights(self.module, lambda p: p.grad)
        self.module.zero_grad(set_to_none=True)
        return float(loss.detach()), gradients

    def get_weights(self) -> Weights:
        return read_weights(self.module)

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


class TorchDevice:
    """The device side of a backend that runs on torch (`torch`, and `keras-torch`, whose Keras
    tensors are torch's): the GPU when there is one, its queue, its memory, the CPU threads."""

    def __init__(self) -> None:
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def accelerator(self) -> str | None:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def limit_threads(self, threads: int) -> int:
        torch.set_num_threads(threads)
        with contextlib.suppress(RuntimeError):  # allowed only before the first parallel work
            torch.set_num_interop_threads(threads)
        return torch.get_num_threads()

    def clear_state(self) -> None:
        """After the framework's own clearing (`Backend.clear_state`): torch.compile's caches,
        whose per-function recompile limit would otherwise turn a warm worker's later
        compiled runs eager, and the GPU memory the caching allocator keeps."""
        super().clear_state()  # type: ignore[misc]  # the Backend this is mixed into
        torch.compiler.reset()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def reset_peak_device_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_device_memory(self) -> int | None:
        if self.device.type != "cuda":
            return None
        return int(torch.cuda.max_memory_allocated(self.device))


def set_denormal_mode(flush: bool) -> str:
    """Flush denormals to zero on this CPU, or keep them (PyTorch's default); the mode in force.

    The flag is per process (each run has its own), set before the model's first operation so
    that the thread pool's workers inherit it.
    """
    if not flush:
        torch.set_flush_denormal(False)
        return "keep"
    return "flush" if torch.set_flush_denormal(True) else "keep (this CPU cannot flush)"
