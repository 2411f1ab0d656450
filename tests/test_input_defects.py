"""The defects a new user found by typing (issue 25), one test each: a report before any run,
a password in a URL's query string, waits without end, tracebacks, study names that are paths,
failed starts that leave things behind, and help that hides its defaults.

Every command is the real `bench` in a subprocess, from a folder of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import write_study
from filelock import FileLock
from helpers import bench
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow
SECRET = "Qx7-secret-Pw9"


def bench_in(folder: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """`bench ARGS` run from `folder`, as a user in that folder would."""
    environment = {**os.environ, "COLUMNS": "200", **(env or {})}
    environment.pop("MLFLOW_TRACKING_URI", None)
    return bench(*args, timeout=timeout, cwd=folder, env=environment)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output[-2000:]
    assert len(output.splitlines()) == 1 and output.startswith("error: "), output[-2000:]
    assert "Traceback" not in output
    return output


# 1. `bench report` before any run ------------------------------------------------------------
def test_a_report_before_any_run_writes_nothing_and_the_run_after_keeps_its_artifacts_home(
    tmp_path, imdb_slice
):
    study = write_study(tmp_path / "studies", study={"name": "early"})
    plan = bench_in(tmp_path, "run", "--study", str(study), "--dry-run", "--data", str(imdb_slice))
    assert plan.returncode == 0, plan.stderr
    assert not (tmp_path / "bench-runs").exists()  # a dry run creates nothing, not even --out
    refused = one_line(bench_in(tmp_path, "report", "--study", str(study)))
    assert "bench run --study early" in refused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["studies"]  # no stores, no mlruns
    ran = bench_in(tmp_path, "run", "--study", str(study), "--data", str(imdb_slice))
    assert ran.returncode == 0, ran.stderr[-2000:]
    out = tmp_path / "bench-runs" / "early"
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    location = client.get_experiment_by_name("early").artifact_location
    assert location == (out / "artifacts").as_uri()
    assert not (tmp_path / "mlruns").exists()
    report = bench_in(tmp_path, "report", "--study", str(study))
    assert report.returncode == 0, report.stderr[-2000:]
    assert not (tmp_path / "mlruns").exists()


def test_an_experiment_with_mlflows_default_artifact_location_is_named_in_one_line(
    tmp_path, imdb_slice, monkeypatch
):
    """As an older rnnbench's `bench report` before any run left it: made with MLflow's default
    artifact root, `mlruns/<id>` under the folder that command ran in."""
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # MLflow roots a new experiment's artifacts in the cwd
    MlflowClient(f"sqlite:///{out / 'mlflow.db'}").create_experiment("old")
    study = write_study(tmp_path / "studies", study={"name": "old"})
    done = bench_in(
        tmp_path, "run", "--study", str(study), "--out", str(out), "--data", str(imdb_slice)
    )
    line = one_line(done)
    assert "MLflow's default folder" in line and str(elsewhere / "mlruns" / "1") in line
    assert not (elsewhere / "mlruns").exists() and not (tmp_path / "mlruns").exists()


# 2. a password in the query string -------------------------------------------------------------
@pytest.mark.parametrize("key", ["password", "token", "secret", "api_key"])
def test_a_secret_in_the_query_string_is_never_shown(tmp_path, key):
    study = write_study(tmp_path, study={"name": "q"})
    url = f"postgresql://bob@127.0.0.1:1/optuna?{key}={SECRET}&sslmode=disable"
    for args in (["--dry-run"], []):
        done = bench_in(tmp_path, "run", "--study", str(study), "--storage", url, *args)
        output = one_line(done)
        assert SECRET not in output and "***" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.toml"]


def test_the_one_redaction_covers_every_url_shape():
    from harness.stores import child_url, password_environment, without_password

    shapes = [
        f"postgresql://bob:{SECRET}@host:5432/db",
        f"postgresql+psycopg://bob:{SECRET}@host/db?sslmode=require",
        f"postgresql://bob@host/db?password={SECRET}",
        f"postgresql://host/db?user=bob&password={SECRET}&application_name=x",
        f"https://server:5000/?token={SECRET}",
        f"http://user:{SECRET}@server:5000",
        f"mysql://bob:{SECRET}@host/db?ssl_key=/k&api_key={SECRET}",
    ]
    for url in shapes:
        assert SECRET not in without_password(url), url
    assert password_environment(shapes[2]) == {"PGPASSWORD": SECRET}
    assert SECRET not in child_url(shapes[2]) and "password" not in child_url(shapes[2])
    assert without_password("sqlite:///x/optuna.db") == "sqlite:///x/optuna.db"


# 3. no wait without end --------------------------------------------------------------------------
def test_a_store_under_proc_is_refused_at_once(tmp_path):
    study = write_study(tmp_path, study={"name": "proc"})
    for flag in ("--storage", "--tracking-uri"):
        done = bench_in(
            tmp_path, "run", "--study", str(study), flag, "sqlite:////proc/x.db", timeout=60
        )
        assert "proc filesystem" in one_line(done)


def test_a_held_store_lock_ends_in_one_line_naming_the_lock_and_its_holder(tmp_path, imdb_slice):
    study = write_study(tmp_path, study={"name": "held"})
    out = tmp_path / "out"
    out.mkdir()
    lock = FileLock(str(out / "optuna.db.lock"))
    with lock:
        done = bench_in(
            tmp_path,
            "run",
            "--study",
            str(study),
            "--out",
            str(out),
            "--data",
            str(imdb_slice),
            env={"BENCH_LOCK_SECONDS": "2"},
            timeout=120,
        )
    line = one_line(done)
    assert str(out / "optuna.db.lock") in line and f"pid {os.getpid()}" in line


# 4. tracebacks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--learning-rate", "inf", "--learning-rate: expected a finite number > 0; received inf"),
        ("--learning-rate", "nan", "--learning-rate: expected a finite number > 0; received nan"),
        ("--seed", "-1", "--seed: expected >= 0 and < 4294967296; received -1"),
        ("--seed", str(2**64), "--seed: expected >= 0 and < 4294967296"),
    ],
)
def test_bad_train_numbers_are_one_line(tmp_path, flag, value, words):
    assert words in one_line(bench_in(tmp_path, "train", flag, value))


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_store_is_refused_and_leaves_nothing(tmp_path, url):
    study = write_study(tmp_path, study={"name": "memory"})
    line = one_line(bench_in(tmp_path, "run", "--study", str(study), "--storage", url))
    assert "in-memory" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["memory.toml"]


# 5. names that are paths -----------------------------------------------------------------------
@pytest.mark.parametrize("name", [".", "..", "../up", "a/b"])
def test_a_study_named_like_a_path_is_refused(tmp_path, name):
    study = write_study(tmp_path / "s", study={"name": "x"})
    study.write_text(study.read_text().replace('name = "x"', f'name = "{name}"'))
    line = one_line(bench_in(tmp_path, "run", "--study", str(study), "--dry-run"))
    assert "study.name" in line and "starting with a letter or digit" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


# 6. failed starts leave nothing behind -----------------------------------------------------------
def test_a_refused_tracking_uri_leaves_no_optuna_db(tmp_path, imdb_slice):
    study = write_study(tmp_path, study={"name": "refused"})
    out = tmp_path / "out"
    done = bench_in(
        tmp_path,
        "run",
        "--study",
        str(study),
        "--out",
        str(out),
        "--data",
        str(imdb_slice),
        "--tracking-uri",
        f"http://bob:{SECRET}@127.0.0.1:1",
    )
    assert SECRET not in one_line(done)
    assert not out.exists()


def test_a_corrupt_archive_is_found_before_any_store(tmp_path):
    study = write_study(tmp_path, study={"name": "corrupt"})
    archive = tmp_path / "aclImdb_v1.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    out = tmp_path / "out"
    one_line(
        bench_in(tmp_path, "run", "--study", str(study), "--out", str(out), "--data", str(archive))
    )
    assert not out.exists()


def test_a_dry_run_checks_the_urls_as_the_run_would(tmp_path):
    study = write_study(tmp_path, study={"name": "dry"})
    line = one_line(
        bench_in(tmp_path, "run", "--study", str(study), "--dry-run", "--storage", "not a url")
    )
    assert line.startswith("error: --storage: expected a database URL")


# 7. help and messages --------------------------------------------------------------------------
def test_help_names_four_backends_shows_defaults_and_no_type_labels(tmp_path):
    top = bench_in(tmp_path, "--help")
    assert "Keras on TensorFlow, JAX and PyTorch" in top.stdout and "native" in top.stdout
    run_help = bench_in(tmp_path, "run", "--help").stdout
    assert "[default: bench-runs/<study name>]" in run_help
    assert "[default: sqlite:///<out>/optuna.db]" in run_help
    train_help = bench_in(tmp_path, "train", "--help").stdout
    for text in (run_help, train_help):
        assert not re.search(r"<(str|path|int|float|bool)[^>]*>", text.replace("<bool>", "")), text


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["run", "--study", "imdb-quick", "--workers", "0"], "error: --workers: expected"),
        (["run", "--study", "imdb-quick", "--workers", "abc"], "error: --workers: expected"),
        (["run", "--study", "imdb-quick", "--isolation", "foo"], "error: --isolation: expected"),
        (["train", "--hidden-size", "0"], "error: --hidden-size: expected"),
        (["train", "--epochs", "x"], "error: --epochs: expected"),
    ],
)
def test_bad_flag_values_have_one_wording(tmp_path, args, start):
    assert one_line(bench_in(tmp_path, *args)).startswith(start)


def test_a_missing_driver_is_named_not_taken_for_an_unreachable_server(tmp_path):
    study = write_study(tmp_path, study={"name": "driver"})
    line = one_line(
        bench_in(
            tmp_path,
            "run",
            "--study",
            str(study),
            "--dry-run",
            "--storage",
            f"mysql://bob:{SECRET}@127.0.0.1/optuna",
        )
    )
    assert "driver for mysql is not installed" in line and SECRET not in line
