"""The `bench` command as a user runs it: a real subprocess on real reviews."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=600,
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["keras", "torch"])
def test_train_prints_epochs_and_test_metrics(backend, imdb_slice):
    done = bench(
        "train",
        "--backend",
        backend,
        "--arch",
        "bilstm",
        "--epochs",
        "2",
        "--hidden-size",
        "8",
        "--sequence-length",
        "40",
        "--num-words",
        "1000",
        "--data",
        str(imdb_slice),
    )
    assert done.returncode == 0, done.stderr
    assert "epoch 2/2" in done.stderr  # live progress goes to stderr
    for expected in ("val acc", "roc_auc", "perplexity", "time to first epoch", "peak_rss"):
        assert expected in done.stdout
    assert f"{backend}/bilstm" in done.stdout


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/no/such/aclImdb_v1.tar.gz"], "/no/such/aclImdb_v1.tar.gz"),
        (["--arch", "transformer"], "received 'transformer'"),
        (["--backend", "jax"], "received 'jax'"),
        (["--optimizer", "sgd"], "received 'sgd'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, imdb_slice):
    data = [] if "--data" in args else ["--data", str(imdb_slice)]
    done = bench("train", *data, *args)
    assert done.returncode == 2
    assert len(error_lines(done)) == 1 and message in error_lines(done)[0]
    assert "Traceback" not in done.stderr


def test_readme_test_command_is_what_ci_runs():
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    command = next(line for line in ci_lines if "pytest" in line and not line.startswith("#"))
    assert command in (REPO / "README.md").read_text()
