"""How a model is executed, as opposed to what it computes: precision, compilation, kernels.

Kept apart from `ModelSpec` on purpose: two runs with the same spec and different execution
options train the same function, only faster or slower (and, for reduced precision, with
rounding of their own). The default is the plain path every equivalence test runs on: float32,
no compiler, the framework's default kernels, denormals flushed to zero on a CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from harness.errors import BenchError

PRECISIONS = ("float32", "bf16", "fp16")
# No framework here has a real CPU fp16 path (no kernel, or an emulated one): refused, not faked.
FP16_NEEDS_GPU = (
    "precision: expected float32 or bf16 without a GPU (fp16 needs one); received 'fp16'"
)


@dataclass(frozen=True)
class ExecutionOptions:
    precision: str = "float32"  # bf16/fp16: mixed precision (float32 weights, half-width math)
    jit_compile: bool = False  # torch.compile / TensorFlow XLA on the training step
    cudnn: bool = True  # cuDNN's fused RNN kernels where the device has them (GPU only)
    # Denormal floats flushed to zero on the CPU. TensorFlow always does so in its kernels;
    # PyTorch does not by default, and a backward pass full of denormals ran several times
    # slower there (docs/benchmarks.md). On by default, so both frameworks do the same work.
    flush_denormal: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise BenchError(
                f"precision: expected one of {', '.join(PRECISIONS)}; received {self.precision!r}"
            )
        for name in ("jit_compile", "cudnn", "flush_denormal"):
            if not isinstance(getattr(self, name), bool):
                raise BenchError(
                    f"{name}: expected true or false; received {getattr(self, name)!r}"
                )

    def as_params(self) -> dict[str, object]:
        return asdict(self)


PLAIN = ExecutionOptions()


def check_device(options: ExecutionOptions, accelerator: str | None) -> None:
    """Refuse, before a model is built, what no backend can run on this device; `accelerator`
    is the backend's GPU name (None on a CPU). Backend-specific refusals stay in the backend."""
    if options.precision == "fp16" and accelerator is None:
        raise BenchError(FP16_NEEDS_GPU)
