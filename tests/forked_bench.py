"""`bench` in a process of its own per call, without paying Python's start-up each time.

The bad-input suite runs hundreds of refused commands, and each fresh `python -m harness` spends
about a second importing before it refuses anything. Here one single-threaded driver process
imports `harness.cli` once and forks a child per command: the child gets the command's folder,
environment, arguments and its own stdout/stderr files, runs `bench`'s real entry point, and
exits with its exit code. Each command still runs in a process of its own that starts from the
same pristine state (nothing one command caches reaches the next), and a command that hangs is
killed at its timeout and fails its test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from helpers import REPO

DRIVER = r"""
import json, os, sys, time, traceback
from harness.cli import main

for line in sys.stdin:
    case = json.loads(line)
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.chdir(case["cwd"])
            os.environ.clear()
            os.environ.update(case["env"])
            for fd, path in ((1, case["stdout"]), (2, case["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
            sys.argv = ["bench", *case["args"]]
            try:
                main()
                code = 0
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
                if not isinstance(exit.code, (int, type(None))):
                    print(exit.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    deadline = time.monotonic() + case["timeout"]
    while True:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            os.kill(child, 9)
            os.waitpid(child, 0)
            code = "timeout"
            break
        time.sleep(0.01)
    print(json.dumps({"code": code}), flush=True)
"""


class ForkedBench:
    """A driver process that runs `bench` commands one at a time, each in a forked child."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.driver = subprocess.Popen(
            [sys.executable, "-c", DRIVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )

    def run(self, args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        """`bench ARGS` from `cwd`, as `subprocess.run` would report it; a hang raises."""
        with tempfile.TemporaryDirectory(prefix="forked-bench-") as scratch:
            out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
            case = {
                "args": args,
                "cwd": str(cwd),
                "env": self.env,
                "stdout": str(out),
                "stderr": str(err),
                "timeout": timeout,
            }
            assert self.driver.stdin is not None and self.driver.stdout is not None
            self.driver.stdin.write(json.dumps(case) + "\n")
            self.driver.stdin.flush()
            answer = self.driver.stdout.readline()
            if not answer:
                raise RuntimeError("the forking driver died")
            code = json.loads(answer)["code"]
            if code == "timeout":
                raise subprocess.TimeoutExpired(["bench", *args], timeout)
            return subprocess.CompletedProcess(
                ["bench", *args],
                code,
                out.read_text(errors="replace"),
                err.read_text(errors="replace"),
            )

    def close(self) -> None:
        if self.driver.stdin is not None:
            self.driver.stdin.close()
        self.driver.wait(timeout=60)

    def __enter__(self) -> ForkedBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def environment(**changes: str) -> dict[str, str]:
    """This process's environment with `changes`, and no tracking URI from the caller's shell."""
    env = {**os.environ, **changes}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env
