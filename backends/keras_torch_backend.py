"""Keras 3 on PyTorch (`keras-torch`): the same Keras model, trained by torch's autograd.

The step is the one of Keras's own torch guide and of `model.fit` on torch: a forward pass
with the Keras layers (torch modules underneath), `loss.backward()`, and the Keras optimiser
applied to the gradients torch left on the variables, without building a graph. On a GPU Keras
runs its LSTM and GRU through torch's cuDNN ops; on a CPU through its own loop of torch ops.
"""

from __future__ import annotations

from backends.keras_loading import select_keras_backend

select_keras_backend("keras-torch", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from backends.base import Weights  # noqa: E402
from backends.keras_common import (  # noqa: E402
    KerasBackendBase,
    KerasTrainable,
    correct_predictions,
    token_scores,
)
from backends.torch_model import TorchDevice, set_denormal_mode  # noqa: E402
from harness.errors import BenchError  # noqa: E402
from harness.execution import PLAIN, ExecutionOptions  # noqa: E402
from harness.model_spec import ModelSpec, OptimizerSpec  # noqa: E402


def _device_tensor(array: np.ndarray) -> torch.Tensor:
    return keras.ops.convert_to_tensor(array)  # on Keras's device: the GPU when there is one


class KerasTorchModel(KerasTrainable):
    def __init__(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions = PLAIN
    ) -> None:
        if options.jit_compile:
            raise BenchError(
                "jit_compile: expected false for keras-torch (the harness has no compiled step "
                "for Keras layers on torch; keras-jax and keras are compiled); received true"
            )
        super().__init__(spec, optimizer, options)
        self._denormal_mode = set_denormal_mode(options.flush_denormal)
        self._trainable = self.model.trainable_variables
        self._sums = _device_tensor(np.zeros(3, np.float32))  # loss x count, right, count

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.zero_grad()
        logits = self.head(self.model(x, training=True))
        return self.loss_fn(y, logits), logits

    def train_step(self, x: np.ndarray, y: np.ndarray) -> None:
        x, y = _device_tensor(x), _device_tensor(y)
        loss, logits = self._loss(x, y)
        self.optimizer.scale_loss(loss).backward()  # fp16: unscaled again in `apply`
        gradients = [variable.value.grad for variable in self._trainable]
        with torch.no_grad():
            self.optimizer.apply(gradients, self._trainable)
            count = float(y.numel())  # reviews, or tokens for a language model
            right = correct_predictions(self.spec.loss, logits, y)
            self._sums += torch.stack([loss * count, right, right.new_tensor(count)])

    def take_train_metrics(self) -> tuple[float, float]:
        loss_sum, right, seen = (float(value) for value in self._sums.cpu())
        self._sums.zero_()
        seen = max(seen, 1.0)
        return loss_sum / seen, right / seen

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = self.head(self.model(_device_tensor(x), training=False))
        return logits.float().cpu().numpy()

    def score_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            logits = self.head(self.model(_device_tensor(x), training=False))
            log_probs, predicted = token_scores(logits, _device_tensor(y))
        return log_probs.float().cpu().numpy(), predicted.cpu().numpy()

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
        loss, _ = self._loss(_device_tensor(x), _device_tensor(y))
        loss.backward()
        by_variable = {
            id(variable): variable.value.grad.cpu().numpy().copy() for variable in self._trainable
        }
        self.model.zero_grad()
        return float(loss.detach()), {
            name: by_variable[id(v)] for name, v in self.variables.items()
        }

    def denormal_mode(self) -> str:
        return self._denormal_mode


class KerasTorchBackend(TorchDevice, KerasBackendBase):
    name = "keras-torch"

    def framework_version(self) -> str:
        return torch.__version__

    def seed(self, seed: int) -> None:
        super().seed(seed)
        torch.manual_seed(seed)

    def build_model(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions
    ) -> KerasTorchModel:
        return KerasTorchModel(spec, optimizer, options)


BACKEND = KerasTorchBackend()
