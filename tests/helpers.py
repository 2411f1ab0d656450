"""What several test modules share: running `bench` as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bench(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`bench ARGS` in a subprocess (via `python -m harness`), from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout,
    )
