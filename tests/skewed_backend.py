"""A backend whose logits are off by 0.01: what a bad kernel or driver looks like to
`bench doctor`. Not registered; tests/test_doctor.py registers it for one test."""

from __future__ import annotations

import numpy as np

from backends.torch_backend import TorchBackend
from backends.torch_model import TorchModel
from harness.execution import ExecutionOptions
from harness.model_spec import ModelSpec, OptimizerSpec


class SkewedModel(TorchModel):
    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        return super().predict_batch(x) + np.float32(0.01)


class SkewedBackend(TorchBackend):
    def build_model(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions
    ) -> SkewedModel:
        return SkewedModel(spec, optimizer, self.device, options)


BACKEND = SkewedBackend()
