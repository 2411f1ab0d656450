"""Facts about the machine a run executes on, read without any framework."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import resource
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from harness.errors import BenchError


def keep_to_cores(cores: Iterable[int]) -> int:
    """Keep this process (and the threads and processes it starts from now on) to `cores`; the
    count in effect. Every framework sizes its CPU thread pools by the cores it may run on, and
    XLA reads nothing else. A no-op where the OS has no affinity call."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_bytes(field: str) -> int | None:
    """A memory line of /proc/self/status (e.g. ``VmHWM``) in bytes; None off Linux."""
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        return None
    return None


def reset_peak_resident_memory() -> bool:
    """Start a new high-water mark of resident memory at the current size, so that a warm worker's
    next run reports its own peak, not the process's lifetime peak. Linux resets it when "5" is
    written to /proc/self/clear_refs; False where that is impossible (the peak then stays the
    process's)."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_resident_memory() -> int:
    """Peak resident set size in bytes since the last `reset_peak_resident_memory` (else since the
    process started): the CPU counterpart of GPU peak."""
    high_water = _status_bytes("VmHWM")
    if high_water is not None:
        return high_water
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports kilobytes


def release_free_memory() -> None:
    """Hand the memory freed by an earlier run back to the system (glibc keeps freed heap for
    reuse), so that a warm worker's resident size and its next run's peak are not inflated by
    what it no longer uses. A no-op without glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def resident_memory() -> int | None:
    """Resident set size now, in bytes (a warm worker's leak check); None off Linux."""
    return _status_bytes("VmRSS")


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


def leave(code: int) -> NoReturn:
    """Exit with `code`, leaving the objects alive now out of the interpreter's final garbage
    collection (`gc.freeze`). At exit that collection walks a framework's whole object graph
    only to free memory the process is about to give back: 4 s after a 14 s PyTorch job here
    (2-core EPYC), 5 s at the end of a small `bench run`; frozen, 0.2-0.3 s. The exit itself,
    its atexit handlers and flushed files included, is Python's usual one."""
    gc.freeze()
    sys.exit(code)
