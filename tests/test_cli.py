"""The `bench` command as a user runs it: a real subprocess on real reviews."""

from __future__ import annotations

import dataclasses
import inspect
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, SHIPPED_STUDIES, bench

from backends import BACKENDS
from harness.config import RunConfig
from harness.model_spec import ARCHITECTURES, ModelSpec

CHATTER = ("absl::InitializeLog", "oneDNN custom operations", "cuda drivers", "cuInit", "I0000")


def chatter(line: str) -> bool:
    """A line of TensorFlow's (absl) start-up logging, not rnnbench's own output."""
    return any(text in line for text in CHATTER)


# Each cell type on one backend, the backends taken in turn: every backend and every cell type
# go through `bench train` once (the conformance suite trains every architecture on every
# backend through the same `train`); a process start costs seconds.
CELL_SMOKE = [(arch, list(BACKENDS)[i % len(BACKENDS)]) for i, arch in enumerate(ARCHITECTURES)]


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "backend"), CELL_SMOKE)
def test_train_prints_epochs_and_test_metrics(arch, backend, imdb_slice, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))  # its own train.log: others train too
    done = bench(
        "train",
        *("--backend", backend, "--arch", arch, "--epochs", "2", "--hidden-size", "4"),
        *("--embedding-dim", "8", "--sequence-length", "16", "--num-words", "500"),
        *("--data", str(imdb_slice)),
    )
    assert done.returncode == 0, done.stderr
    assert "epoch 2/2" in done.stderr  # live progress goes to stderr
    for expected in ("val acc", "roc_auc", "perplexity", "time to first epoch", "peak_rss"):
        assert expected in done.stdout
    assert f"{backend}/{arch}" in done.stdout
    # A quiet terminal: the framework's own start-up lines went to the log it names.
    assert not [line for line in done.stdout.splitlines() if chatter(line)]
    assert not [line for line in done.stderr.splitlines() if chatter(line)]
    (named,) = [line for line in done.stderr.splitlines() if line.startswith("framework log: ")]
    log = Path(named.removeprefix("framework log: "))
    assert log.is_relative_to(tmp_path)
    if backend == "keras":  # TensorFlow's C++ logging, below Python, was caught too
        assert [line for line in log.read_text().splitlines() if chatter(line)]


@pytest.mark.slow
def test_verbose_lets_the_frameworks_own_output_through(imdb_slice):
    done = bench(
        "train",
        "-v",
        *("--backend", "keras", "--arch", "simple_rnn", "--epochs", "1", "--hidden-size", "4"),
        *("--sequence-length", "16", "--num-words", "500", "--data", str(imdb_slice)),
    )
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if chatter(line)]
    assert "framework log:" not in done.stderr


def error_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/no/such/aclImdb_v1.tar.gz"], "/no/such/aclImdb_v1.tar.gz"),
        (["--arch", "transformer"], "received 'transformer'"),
        (["--backend", "jax"], "received 'jax'"),
        (["--optimizer", "sgd"], "received 'sgd'"),
        (["--epochs", "0"], "--epochs:"),
        (["--dropout-rate", "1.5"], "--dropout-rate:"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, imdb_slice):
    data = [] if "--data" in args else ["--data", str(imdb_slice)]
    done = bench("train", *data, *args)
    assert done.returncode == 2
    assert len(error_lines(done)) == 1 and message in error_lines(done)[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("tables", "key"),
    [
        ({"study": {"colour": "red"}}, "study.colour"),
        ({"study": {"epochs": "two"}}, "study.epochs"),
        ({"study": {"architectures": ["transformer"]}}, "study.architectures"),
        ({"study": {"backends": ["jax"]}}, "study.backends"),
        (
            {"search": {"hidden_size": {"low": 64, "high": 16, "default": 32}}},
            "search.hidden_size",
        ),
        (
            {"study": {"task": "language_model", "architectures": ["lstm", "bilstm"]}},
            "study.architectures[1]",
        ),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "unknown-architecture",
        "unknown-backend",
        "low-above-high",
        "bilstm-language-model",
    ],
)
def test_broken_study_file_is_one_line_naming_file_and_key(
    tables, key, tmp_path, imdb_slice, study_file
):
    study = study_file(tmp_path, **tables)
    done = bench(
        "run", "--study", str(study), "--out", str(tmp_path / "out"), "--data", str(imdb_slice)
    )
    assert done.returncode == 2
    (line,) = error_lines(done)
    assert str(study) in line and key in line and "expected" in line
    assert not (tmp_path / "out").exists()  # nothing started


def test_studies_lists_the_shipped_studies():
    done = bench("studies")
    assert done.returncode == 0
    names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    assert names == SHIPPED_STUDIES


def test_unreachable_tracking_server_fails_before_any_training(tmp_path, imdb_slice):
    with socket.socket() as probe:  # a loopback port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = bench(
        "run",
        "--study",
        "imdb-quick",
        "--out",
        str(tmp_path / "out"),
        "--tracking-uri",
        f"http://127.0.0.1:{port}",
        "--data",
        str(imdb_slice),
    )
    assert done.returncode == 2
    (line,) = error_lines(done)
    assert "--tracking-uri" in line and "did not answer" in line
    assert not (tmp_path / "out" / "jobs").exists()  # no trial was started


@pytest.mark.parametrize("command", ["run", "worker"])
def test_an_output_folder_that_cannot_be_written_is_one_line(command, tmp_path, imdb_slice):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("")
    storage = ["--storage", f"sqlite:///{tmp_path / 'optuna.db'}"] if command == "worker" else []
    out = in_the_way / "out"  # cannot be created, even by root
    done = bench(
        command, "--study", "imdb-quick", "--out", str(out), "--data", str(imdb_slice), *storage
    )
    assert done.returncode == 2
    (line,) = error_lines(done)
    assert "--out" in line and ("writable" in line or "is a file" in line)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--study", "imdb-quick", "--workers", "0"], "--workers"),
        (["worker", "--study", "imdb-quick"], "--storage"),
    ],
)
def test_bad_worker_flags_are_one_line(args, message):
    done = bench(*args)
    assert done.returncode == 2
    (line,) = error_lines(done)
    assert message in line


def test_train_flags_are_the_run_config_fields():
    from harness.cli import train
    from harness.flags import TRAIN_DEFAULTS

    flags = inspect.signature(train).parameters
    for field in dataclasses.fields(RunConfig):
        accepts = RunConfig.accepts(field.name)
        if accepts.flag is None:  # a study's [data] sets it, or it is always on
            assert field.name not in flags
            continue
        flag = flags[accepts.flag or field.name]
        assert flag.default == TRAIN_DEFAULTS.get(field.name, field.default)
    done = bench("train", "--help")
    assert done.returncode == 0
    for name in ("--arch", "--hidden-size", "--dropout-rate", "--subset", "--no-cudnn", "--data"):
        assert name in done.stdout


def test_run_config_defaults_rule_over_model_spec_ones():
    """A run passes every ModelSpec field from RunConfig: ModelSpec's own defaults never apply."""
    config = RunConfig(backend="torch", architecture="gru")
    spec = config.model_spec()
    names = [field.name for field in dataclasses.fields(ModelSpec)]
    expected = {
        name: getattr(config, "num_words" if name == "vocab_size" else name) for name in names
    }
    assert {name: getattr(spec, name) for name in names} == expected
    assert spec.hidden_size == 64  # RunConfig's default


def test_an_unknown_backend_is_refused_before_any_data_is_read(tmp_path):
    done = bench("train", "--backend", "jax", "--data", str(tmp_path / "missing.tar.gz"))
    assert done.returncode == 2
    (line,) = error_lines(done)
    assert "--backend:" in line and "received 'jax'" in line and "missing" not in line


def test_a_study_backend_whose_framework_is_missing_stops_the_run_before_any_work(tmp_path):
    """In a process where jax cannot be imported (as without the extra): one line naming the
    extra, exit code 2, and no store and no data touched."""
    code = "import sys; sys.modules['jax'] = None; from harness.cli import main; main()"
    out, data = tmp_path / "out", tmp_path / "missing.tar.gz"
    done = subprocess.run(
        [sys.executable, "-c", code, "run", "--study", "imdb-quick", "--out", str(out)]
        + ["--data", str(data)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 2
    assert error_lines(done) == [
        "error: backend keras-jax: expected jax to be installed; it is not (pip install "
        '"rnnbench[jax]")'
    ]
    assert not out.exists()


def test_dry_run_prints_the_plan_and_opens_no_store(tmp_path, fresh_cache):
    out = tmp_path / "out"
    done = bench("run", "--study", "imdb-quick", "--dry-run", "--out", str(out))
    assert done.returncode == 0, done.stderr
    plan = done.stdout
    assert "searches: 16, one per (architecture, backend), each stopping at 1 trial or" in plan
    assert "re-trainings: the best of each search on 2 seeds (32 runs)" in plan
    assert "cross runs: none" in plan and "baseline of the report: torch" in plan
    assert f"Optuna storage: sqlite:///{out / 'optuna.db'}" in plan and "MLflow tracking: " in plan
    assert "on first use" in plan  # no --data: the download is planned, not made
    assert "estimate: none yet" in plan  # no earlier run to take a pace from
    assert not out.exists()  # checked as the run would check it, nothing created
    assert not fresh_cache.exists() or not any(fresh_cache.iterdir())
