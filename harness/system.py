"""Facts about the machine a run executes on, read without any framework."""

from __future__ import annotations

import platform
import resource
import sys
from pathlib import Path


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
