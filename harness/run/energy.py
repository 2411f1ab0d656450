"""A run's energy on a GPU, from NVML's total-energy counter (Volta and later), never estimated.

The counter is the driver's own millijoules since it loaded; the parent reads it on the slot's
GPU before and after the job. Where there is no NVIDIA GPU, no NVML, or a GPU without the
counter, the run is tagged `energy` with the reason and no figure is logged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def _nvml() -> Iterator[object]:
    import pynvml  # nvidia-ml-py: a thin ctypes binding, importable without a GPU

    pynvml.nvmlInit()
    try:
        yield pynvml
    finally:
        pynvml.nvmlShutdown()


def _read_millijoules(gpu: str) -> float | str:
    """The counter of GPU `gpu` (its index as CUDA_VISIBLE_DEVICES names it), or why not."""
    try:
        with _nvml() as nvml:
            handle = nvml.nvmlDeviceGetHandleByIndex(int(gpu))  # type: ignore[attr-defined]
            return float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))  # type: ignore[attr-defined]
    except ImportError:
        return "not measured: nvidia-ml-py is not installed"
    except ValueError:
        return f"not measured: GPU id {gpu!r} is not an index NVML knows"
    except Exception as error:  # noqa: BLE001 - pynvml.NVMLError and its many subclasses
        return f"not measured: NVML: {error}"


class EnergyMeter:
    """One run's energy: made when the job starts, `stop()` when it ends."""

    def __init__(self, gpu: str | None) -> None:
        self.gpu = gpu
        self.start = _read_millijoules(gpu) if gpu is not None else "not measured: no GPU (CPU run)"

    def stop(self, samples: float | None) -> tuple[dict[str, float], dict[str, str]]:
        """(metrics, tags): `energy_joules` and `samples_per_joule`, or the tag saying why not."""
        if isinstance(self.start, str) or self.gpu is None:
            return {}, {"energy": str(self.start)}
        end = _read_millijoules(self.gpu)
        if isinstance(end, str):
            return {}, {"energy": end}
        joules = (end - self.start) / 1000.0
        metrics = {"energy_joules": joules}
        if samples and joules > 0:
            metrics["samples_per_joule"] = samples / joules
        return metrics, {"energy": f"NVML total-energy counter, GPU {self.gpu}"}
