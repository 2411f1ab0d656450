"""The PyTorch backend: the device, the harness's model (`backends.torch_model`), and the plain
tutorial loop that `bench perf` measures the harness against.

The network and its canonical weight layout live in `backends.torch_network`, shared by both
paths so that they train the same function from the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from backends.base import Backend, Weights
from backends.torch_model import LOSSES, TorchDevice, TorchModel
from backends.torch_network import RecurrentNetwork, load_weights, read_weights
from harness.execution import ExecutionOptions
from harness.model_spec import EPSILON, RMSPROP_RHO, ModelSpec, OptimizerSpec

__all__ = ["BACKEND", "TorchBackend", "TorchModel"]


class TorchBackend(TorchDevice, Backend):
    name = "torch"

    def framework(self) -> tuple[str, str]:
        return "torch", torch.__version__

    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def build_model(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions
    ) -> TorchModel:
        return TorchModel(spec, optimizer, self.device, options)

    def plain_network(self, spec: ModelSpec, weights: Weights) -> RecurrentNetwork:
        """The torch.nn network the plain loop trains, from the harness's initial weights."""
        network = RecurrentNetwork(spec)
        load_weights(network, weights)
        return network.to(self.device)

    def plain_network_weights(self, spec: ModelSpec, network: object) -> Weights:
        return read_weights(network)  # type: ignore[arg-type]

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
        loss_fn = LOSSES[spec.loss]
        seconds = []
        for _ in range(epochs):
            started = time.perf_counter()
            model.train()
            for xb, yb in loader:
                xb = xb.to(self.device, non_blocking=True)
                yb = yb.to(self.device, non_blocking=True)
                opt.zero_grad()
                loss = loss_fn(model(xb), yb)
                loss.backward()
                opt.step()
            self.synchronize()
            seconds.append(time.perf_counter() - started)
            if after_epoch is not None:
                after_epoch()
        return seconds


BACKEND = TorchBackend()
