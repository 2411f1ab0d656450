"""The `bench` command as a user runs it: a real subprocess on real reviews."""

from __future__ import annotations

import socket
import subprocess

import pytest
from helpers import REPO, bench


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
        (["--epochs", "0"], "'--epochs'"),
        (["--dropout-rate", "1.5"], "'--dropout-rate'"),
        (["--no-such-flag"], "--no-such-flag"),
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


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[study]\nname = "x"\nepochs = 1\ncolour = "red"\n', "study.colour"),
        ('[study]\nname = "x"\nepochs = "two"\n', "study.epochs"),
        (
            '[study]\nname = "x"\nepochs = 1\narchitectures = ["transformer"]\n',
            "study.architectures",
        ),
        ('[study]\nname = "x"\nepochs = 1\nbackends = ["jax"]\n', "study.backends"),
        (
            '[study]\nname = "x"\nepochs = 1\n[budget]\ntrials = 1\n[objective]\n'
            'metric = "val_accuracy"\ndirection = "maximize"\n[search]\n'
            "hidden_size = { low = 64, high = 16, default = 32 }\n",
            "search.hidden_size",
        ),
        (
            '[study]\nname = "x"\ntask = "language_model"\nepochs = 1\n'
            'architectures = ["lstm", "bilstm"]\n',
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
def test_broken_study_file_is_one_line_naming_file_and_key(text, key, tmp_path, imdb_slice):
    study = tmp_path / "broken.toml"
    study.write_text(text)
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
    assert names == ["imdb", "imdb-cpu", "imdb-lm", "imdb-lm-quick", "imdb-quick"]


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
    assert "--out" in line and "writable" in line


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
