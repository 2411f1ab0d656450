"""A deliberately broken backend, to show that the conformance and equivalence suites catch one.

Registered as ``broken`` only when ``BENCH_TEST_BROKEN_BACKEND=1``; the suites then run every
test against it as well, and against every pair it forms. It is the PyTorch backend with three
realistic mistakes:

- ``torch.optim``'s own RMSprop and Adam, whose epsilon is not where Keras puts it
  (docs/equivalence.md): one optimiser step and lockstep training drift apart;
- ``take_train_metrics`` that does not reset its running sums;
- ``predict_batch`` left in training mode, so dropout stays on at inference.

Run by hand:

    BENCH_TEST_BROKEN_BACKEND=1 pytest -n 0 tests/test_conformance.py tests/test_equivalence.py
"""

from __future__ import annotations

import os

import numpy as np
import torch

from backends import BACKENDS, BackendInfo
from backends.torch_backend import TorchBackend
from backends.torch_model import TorchModel
from harness.execution import ExecutionOptions
from harness.model_spec import EPSILON, RMSPROP_RHO, ModelSpec, OptimizerSpec

ENABLED = os.environ.get("BENCH_TEST_BROKEN_BACKEND") == "1"
INFO = BackendInfo(
    name="broken",
    module="broken_backend",
    display_name="Broken PyTorch (test only)",
    packages=("torch",),
)


class BrokenModel(TorchModel):
    def __init__(self, spec: ModelSpec, optimizer: OptimizerSpec, *args, **kwargs) -> None:
        super().__init__(spec, optimizer, *args, **kwargs)
        parameters = [p for p in self.module.parameters() if p.requires_grad]
        if optimizer.name == "adam":
            self.optimizer = torch.optim.Adam(parameters, lr=optimizer.learning_rate, eps=EPSILON)
        else:
            self.optimizer = torch.optim.RMSprop(
                parameters, lr=optimizer.learning_rate, alpha=RMSPROP_RHO, eps=EPSILON
            )

    def take_train_metrics(self) -> tuple[float, float]:
        seen = max(self._seen, 1)
        return float(self._loss_sum) / seen, float(self._correct) / seen

    @torch.no_grad()
    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        self.module.train()  # the mistake: dropout stays on
        with self._kernels(), self._autocast():
            return self.network(self._to_device(x)).float().cpu().numpy()


class BrokenBackend(TorchBackend):
    name = INFO.name

    def build_model(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions
    ) -> BrokenModel:
        return BrokenModel(spec, optimizer, self.device, options)


BACKEND = BrokenBackend()

if ENABLED:
    BACKENDS.setdefault(INFO.name, INFO)
