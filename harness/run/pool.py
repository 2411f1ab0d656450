"""Worker slots: threads that each keep one child process busy, and what stops them all.

``--workers N`` gives N slots on this machine, each with its own environment (its GPU, its share
of the cores: `harness.run.devices`). Ctrl-C, SIGTERM or an error in any slot stops every slot
and ends every running child process, whose work is then recorded as interrupted.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

from harness.errors import BenchError
from harness.run.devices import slot_environment, visible_gpus
from harness.run.jobs import ChildProcesses

STOP_SIGNALS = (-signal.SIGINT, -signal.SIGTERM)  # a child ended by Ctrl-C or by us
POLL_SECONDS = 0.2  # how often the main thread looks whether the slots are done
RECORD_SECONDS = 120  # after Ctrl-C, how long the slots get to record their interrupted work


class WorkerPool:
    """The worker slots of one `bench run` or `bench worker` process."""

    def __init__(self, workers: int, secrets: dict[str, str] | None = None) -> None:
        if workers < 1:
            raise BenchError(f"--workers: expected an integer >= 1; received {workers}")
        self.workers = workers
        self.gpus = visible_gpus()
        self.secrets = secrets or {}  # e.g. PGPASSWORD: in the environment, never in a job file
        self.children = ChildProcesses()
        self.stopping = threading.Event()  # set on Ctrl-C: no new work, running work closed

    def environment(self, slot: int) -> dict[str, str]:
        """Environment overrides for the child processes of `slot`."""
        return {**slot_environment(slot, self.workers, self.gpus), **self.secrets}

    def gpu_of(self, slot: int) -> str | None:
        """The GPU id the child processes of `slot` run on; None on a machine without one."""
        if not self.gpus:
            return None
        return self.environment(slot).get("CUDA_VISIBLE_DEVICES", self.gpus[0]).split(",")[0]

    def interrupted(self, returncode: int) -> bool:
        """True when a child ended because the user pressed Ctrl-C (or this run was stopped)."""
        if returncode in STOP_SIGNALS:
            self.stopping.set()
        return self.stopping.is_set()

    def in_parallel(self, work: Callable[[int], None]) -> None:
        """Run ``work(slot)`` on every worker slot at once; Ctrl-C and errors stop them all."""
        errors: list[BaseException] = []
        done = [threading.Event() for _ in range(self.workers)]

        def guarded(slot: int) -> None:
            try:
                work(slot)
            except BaseException as error:  # noqa: BLE001 - handed to the main thread below
                errors.append(error)
                self.stopping.set()
                self.children.terminate_all()
            finally:
                done[slot].set()

        for slot in range(self.workers):
            threading.Thread(
                target=guarded, args=(slot,), name=f"worker-{slot}", daemon=True
            ).start()
        # Polled with sleep, not Thread.join: on Python 3.11 a Ctrl-C inside join() marks the
        # thread as finished while it still runs (bpo-45274), and its trial would go unrecorded.
        try:
            while not all(event.is_set() for event in done):
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            self.stopping.set()
            self.children.terminate_all()
            deadline = time.monotonic() + RECORD_SECONDS
            while not all(event.is_set() for event in done) and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
            raise
        if self.stopping.is_set() and not errors:
            raise KeyboardInterrupt  # a child process saw Ctrl-C before this process did
        if errors:
            raise errors[0]
