"""Which process owns a piece of work, and whether that process is gone.

A trial or re-training run records its owner as ``host:pid``. When the owner ran on this machine
and its pid no longer exists, the work was orphaned (kill -9, a crash) and can be closed and
redone at once; another machine's work can only be judged by its heartbeats.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def owner_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(tag: str) -> bool:
    """True when ``tag`` names a process of this machine that no longer exists."""
    host, _, pid = tag.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's process: only its heartbeats can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, under another user
    return _is_zombie(int(pid))


def _is_zombie(pid: int) -> bool:
    """An exited process its parent has not reaped yet: gone, though its pid still answers."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux): trust the signal test
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
