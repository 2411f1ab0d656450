"""RMSprop and Adam for PyTorch, computed with Keras's formulas.

PyTorch's built-in optimisers place epsilon differently from Keras: ``torch.optim.RMSprop``
divides by ``sqrt(v) + eps`` where Keras divides by ``sqrt(v + eps)``, and ``torch.optim.Adam``
adds eps after the bias correction where Keras adds it before. For gradients near 1e-3 those
differences change a step by tens of percent (see docs/equivalence.md), so no choice of
arguments maps one onto the other. These two classes follow Keras line for line instead; they
use PyTorch's foreach kernels, so they cost no more than the built-ins.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from harness.model_spec import ADAM_BETA_1, ADAM_BETA_2, EPSILON, RMSPROP_RHO


class KerasRMSprop(torch.optim.Optimizer):
    """v = rho v + (1 - rho) g^2;  w -= lr g / sqrt(v + eps)."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        rho: float = RMSPROP_RHO,
        epsilon: float = EPSILON,
    ) -> None:
        super().__init__(params, {"lr": lr, "rho": rho, "epsilon": epsilon})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            velocities = [self._state(p, "velocity") for p in params]
            torch._foreach_mul_(velocities, group["rho"])
            torch._foreach_addcmul_(velocities, grads, grads, value=1 - group["rho"])
            denominators = torch._foreach_add(velocities, group["epsilon"])
            torch._foreach_sqrt_(denominators)
            torch._foreach_addcdiv_(params, grads, denominators, value=-group["lr"])

    def _state(self, param: torch.Tensor, key: str) -> torch.Tensor:
        state = self.state[param]
        if key not in state:
            state[key] = torch.zeros_like(param)
        return state[key]


class KerasAdam(KerasRMSprop):
    """m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); w -= alpha m / (sqrt(v) + eps),
    with alpha = lr sqrt(1 - b2^t) / (1 - b1^t)."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float,
        beta_1: float = ADAM_BETA_1,
        beta_2: float = ADAM_BETA_2,
        epsilon: float = EPSILON,
    ) -> None:
        torch.optim.Optimizer.__init__(
            self, params, {"lr": lr, "beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon}
        )
        self.iterations = 0

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        self.iterations += 1
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            momentums = [self._state(p, "momentum") for p in params]
            velocities = [self._state(p, "velocity") for p in params]
            beta_1, beta_2 = group["beta_1"], group["beta_2"]
            # Keras computes the bias correction in float32; so do we, to match its rounding.
            t = torch.tensor(float(self.iterations), dtype=torch.float32)
            beta_1_power = torch.pow(torch.tensor(beta_1, dtype=torch.float32), t)
            beta_2_power = torch.pow(torch.tensor(beta_2, dtype=torch.float32), t)
            alpha = float(group["lr"] * torch.sqrt(1 - beta_2_power) / (1 - beta_1_power))
            torch._foreach_lerp_(momentums, grads, 1 - beta_1)
            squared = torch._foreach_mul(grads, grads)
            torch._foreach_lerp_(velocities, squared, 1 - beta_2)
            denominators = torch._foreach_sqrt(velocities)
            torch._foreach_add_(denominators, group["epsilon"])
            torch._foreach_addcdiv_(params, momentums, denominators, value=-alpha)
