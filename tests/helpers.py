"""What several test modules share: running `bench` as a user would, and the tiny models the
backend suites build."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from backends import Backend, TrainableModel
from harness.initialization import initial_weights
from harness.model_spec import ModelSpec, OptimizerSpec

REPO = Path(__file__).resolve().parent.parent
# The study files in studies/, by name, as `bench studies` lists them.
SHIPPED_STUDIES = [
    "imdb",
    "imdb-cpu",
    "imdb-cpu-search",
    "imdb-gpu-quick",
    "imdb-lm",
    "imdb-lm-quick",
    "imdb-quick",
]
TINY_VOCAB = 1000  # the vocabulary of conftest's `tiny_imdb`
WEIGHTS_SEED = 3  # the initial weights `built` loads


def bench(
    *args: str,
    timeout: float = 900,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`bench ARGS` in a subprocess (via `python -m harness`), from the repository root or
    `cwd`, in this environment or `env`."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env,
    )


def bench_in_terminal(
    *args: str, columns: int = 140, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """`bench ARGS` attached to a pseudo-terminal, as a person at a terminal sees it: its exit
    code, and everything it drew (escape codes and redraws included) as both stdout and
    stderr, which a terminal shows as one stream."""
    screen, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=REPO,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    os.close(terminal)
    drawn = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([screen], [], [], 1.0)
            if not ready:
                if process.poll() is not None:
                    break  # it ended, and drew nothing for a second: a leftover child holds on
                continue
            try:
                chunk = os.read(screen, 65536)
            except OSError:  # EIO: every process holding the terminal has closed it
                break
            if not chunk:
                break
            drawn += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        process.kill()
        os.close(screen)
    output = drawn.decode(errors="replace")
    return subprocess.CompletedProcess(process.args, code, output, output)


def tiny_spec(arch: str, layers: int = 1, **fields) -> ModelSpec:
    return ModelSpec(arch, TINY_VOCAB, embedding_dim=8, hidden_size=8, num_layers=layers, **fields)


def built(backend: Backend, spec: ModelSpec, **optimizer) -> TrainableModel:
    """A model of `spec` on `backend` with the harness's initial weights (`WEIGHTS_SEED`)."""
    model = backend.build(spec, OptimizerSpec(**optimizer))
    model.set_weights(initial_weights(spec, WEIGHTS_SEED))
    return model
