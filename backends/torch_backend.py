"""The PyTorch backend: the device, the harness's model (`backends.torch_model`), and the plain
tutorial loop that `bench perf` measures the harness against.

The network and its canonical weight layout live in `backends.torch_network`, shared by both
paths so that they train the same function from the same numbers.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from backends.base import Backend, Weights
from backends.torch_model import LOSSES, TorchModel
from backends.torch_network import RecurrentNetwork, load_weights, read_weights
from harness.execution import ExecutionOptions
from harness.model_spec import EPSILON, RMSPROP_RHO, ModelSpec, OptimizerSpec

__all__ = ["BACKEND", "TorchBackend", "TorchModel"]


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

    def build_model(
        self, spec: ModelSpec, optimizer: OptimizerSpec, options: ExecutionOptions
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

    def reset_peak_device_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_device_memory(self) -> int | None:
        if self.device.type != "cuda":
            return None
        return int(torch.cuda.max_memory_allocated(self.device))


BACKEND = TorchBackend()
