"""The one child-process protocol: a job file in, typed events out, an exit code back.

Work that must not share a process (a trial, a re-training, one backend's `bench perf`
measurements) runs as ``python -m <module> JOB.json``. A crash, an out-of-memory kill or a
framework's allocator then cannot take the parent down, TensorFlow and PyTorch never share a
process, and each process's peak memory is its own. The child writes its events
(`harness.run.events`) as JSON lines on stdout with `emit`; its stderr goes to a log file; what
it leaves in files (an outcome, artifacts) is the caller's business.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO, TypeVar

from harness.run.events import CHILD_EVENTS, Event, EventHandler
from harness.stores import child_environment

J = TypeVar("J")
E = TypeVar("E", bound=Event)


def emit(event: Event) -> None:
    """In a child process: send one event to the parent."""
    print(json.dumps(event.as_json()), flush=True)


def event_writer(stream: TextIO) -> EventHandler:
    """In a child process whose events go to `stream` rather than stdout (a warm worker keeps
    stdout for them alone: `harness.run.serve`)."""

    def write(event: Event) -> None:
        stream.write(json.dumps(event.as_json()) + "\n")
        stream.flush()

    return write


def parse_event(line: str) -> Event | None:
    """The event on one stdout line; None for anything else a framework printed."""
    if not line.startswith("{"):
        return None
    try:
        fields = json.loads(line)
    except json.JSONDecodeError:
        return None  # a framework printed something brace-shaped; not ours
    kind = CHILD_EVENTS.get(fields.pop("event", None)) if isinstance(fields, dict) else None
    if kind is None:
        return None
    try:
        return kind(**fields)
    except TypeError:
        return None  # JSON that looks like ours but is not


def write_job(job: Any, path: Path) -> Path:
    """Write a job (a dataclass) where its child process will read it, readable by its owner
    alone: a job names the stores it reports to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a file of an earlier try keeps its mode when rewritten
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(json.dumps(asdict(job), indent=1))
    return path


def read_job(kind: type[J], path: str | Path) -> J:
    """In a child process: the job its parent wrote."""
    return kind(**json.loads(Path(path).read_text()))


class ChildProcesses:
    """The child processes running now, so that an interrupt can end every one of them."""

    def __init__(self) -> None:
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def start(self, command: list[str], **options: Any) -> subprocess.Popen:
        with self._lock:
            child = subprocess.Popen(command, **options)
            self._running.add(child)
            return child

    def done(self, child: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(child)

    def terminate_all(self) -> None:
        with self._lock:
            for child in self._running:
                if child.poll() is None:
                    child.terminate()


def relay(lines: Iterable[str], on_event: EventHandler, until: type[E] | None = None) -> E | None:
    """Hand each event on a child's stdout to `on_event`, up to the first one of type `until`,
    which is returned instead; None when the lines end first (the child has exited, or died).

    The one reading loop of the child-process protocol: fresh processes and warm workers alike.
    """
    for line in lines:
        event = parse_event(line)
        if until is not None and isinstance(event, until):
            return event
        if event is not None:
            on_event(event)
    return None


def run_child(
    module: str,
    job_path: Path,
    log_path: Path,
    on_event: EventHandler,
    children: ChildProcesses | None = None,
    environment: dict[str, str] | None = None,
) -> int:
    """Run ``python -m module job_path``, relay its events as they come, wait for it.

    `environment` overrides this process's variables for the child (set before any framework
    starts in it). Returns the exit code, negative when a signal ended the child.
    """
    children = children or ChildProcesses()
    with log_path.open("w") as log:
        child = children.start(
            [sys.executable, "-m", module, str(job_path)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
            env=child_environment(environment),
        )
        try:
            assert child.stdout is not None
            relay(child.stdout, on_event)
            return child.wait()
        finally:
            if child.poll() is None:  # `on_event` raised: the child must not outlive its job
                child.kill()
                child.wait()
            children.done(child)
