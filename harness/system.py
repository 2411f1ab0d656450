"""Facts about the machine a run executes on, read without any framework."""

from __future__ import annotations

import os
import platform
import resource
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from harness.errors import BenchError


def keep_to_cores(cores: Iterable[int]) -> int:
    """Keep this process (and the threads and processes it starts from now on) to `cores`; the
    count in effect. Every framework sizes its CPU thread pools by the cores it may run on, and
    XLA reads nothing else. A no-op where the OS has no affinity call."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def peak_resident_memory() -> int:
    """Peak resident set size of this process in bytes (the CPU counterpart of GPU peak)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports kilobytes


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def writable_folder(folder: Path, what: str) -> Path:
    """Create `folder` and prove it takes files, before any work could fail to save; `what`
    names it in the one-line error (e.g. "--out")."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise BenchError(
            f"{what}: expected a writable folder; received {str(folder)!r} ({reason})"
        ) from None
    return folder
