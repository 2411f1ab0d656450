"""What each worker slot may use: its own GPU when there are several, its share of the CPU cores.

The parent never imports a framework, so GPUs are found the way the driver reports them
(``CUDA_VISIBLE_DEVICES`` if the user set it, else ``nvidia-smi``), and the choice reaches the
trial process through its environment, before the framework starts. Which variables size a
framework's thread pools is a fact of its backend (`backends.BackendInfo`), read from the registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from backends import BACKENDS
from harness.system import keep_to_cores

# The OpenMP and MKL pools under every framework's CPU kernels; each backend may add its own.
SHARED_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
# The slot's cores, which the trial process pins itself to before a framework starts
# (`pin_to_slot_cores`): XLA (so Keras on JAX) reads no thread variable, only the cores it may use.
CORES_VARIABLE = "BENCH_CPU_CORES"


def visible_gpus() -> list[str]:
    """The GPU ids trial processes may use; empty on a machine without an NVIDIA GPU."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listed = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return listed.stdout.split() if listed.returncode == 0 else []


def slot_environment(slot: int, workers: int, gpus: list[str]) -> dict[str, str]:
    """Environment overrides for the trial processes of worker ``slot`` (0-based) of ``workers``.

    One worker keeps the machine as it is. Several share it: each gets its own GPU (round robin
    when there are more workers than GPUs), and on the CPU an equal share of the cores, since
    the frameworks' thread pools slow down badly when they oversubscribe the cores.
    A thread count the user set is left alone.
    """
    if workers <= 1:
        return {}
    environment: dict[str, str] = {}
    if gpus:
        environment["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for name, value in thread_settings(threads).items():
        if name not in os.environ:
            environment[name] = value
    if not gpus and hasattr(os, "sched_getaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        share = max(1, len(cores) // workers)
        first = (slot * share) % len(cores)
        environment[CORES_VARIABLE] = ",".join(str(c) for c in cores[first : first + share])
    return environment


def pin_to_slot_cores() -> None:
    """In a trial process, before any framework starts: keep to the slot's cores, if it has a
    share of them (`slot_environment`). Every framework sizes its CPU pools by those cores."""
    cores = os.environ.get(CORES_VARIABLE)
    if cores:
        keep_to_cores(int(core) for core in cores.split(","))


def thread_settings(threads: str) -> dict[str, str]:
    """Every registered backend's thread-pool variables: `threads` for the pools that run one
    op's work in parallel, 1 for those that run independent ops side by side."""
    settings = dict.fromkeys(SHARED_THREAD_VARIABLES, threads)
    for info in BACKENDS.values():
        settings.update(dict.fromkeys(info.thread_variables, threads))
    for info in BACKENDS.values():
        settings.update(dict.fromkeys(info.interop_thread_variables, "1"))
    return settings


def describe_slot(environment: dict[str, str]) -> str:
    """What a slot runs on, for the trial's tags: e.g. ``gpu 1`` or ``1 cpu thread``."""
    if "CUDA_VISIBLE_DEVICES" in environment:
        return f"gpu {environment['CUDA_VISIBLE_DEVICES']}"
    threads = environment.get("OMP_NUM_THREADS")
    return f"{threads} cpu threads" if threads else "whole machine"
