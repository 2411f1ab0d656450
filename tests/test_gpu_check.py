"""docs/scripts/gpu_check.sh, the one prepared command for a lent GPU machine, in its reduced form
(GPU_CHECK_REDUCED=1) on the test slice: every command, flag and path it uses is run here, so
that the script cannot rot between the rare sessions that have a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow  # the whole script: doctor, a study, its report, perf

SCRIPT = REPO / "docs" / "scripts" / "gpu_check.sh"
FILES = {
    "environment.txt",
    "doctor.txt",
    "study.log",
    "study.tar.gz",
    "stores.tar.gz",
    "perf.log",
    "perf.tar.gz",
}


def member(archive, name: str) -> str:
    with tarfile.open(archive) as tar:
        return tar.extractfile(name).read().decode()  # type: ignore[union-attr]


def test_the_gpu_check_runs_reduced_on_a_cpu_and_keeps_at_most_8_files(tmp_path, imdb_slice):
    out = tmp_path / "out"
    environment = {
        **os.environ,
        "GPU_CHECK_REDUCED": "1",
        "OUT": str(out),
        "BENCH_DATA": str(imdb_slice),
        "PYTHON": sys.executable,
        "TMPDIR": str(tmp_path),
        "CUDA_VISIBLE_DEVICES": "",  # the reduced form is a CPU's, on any machine
    }
    environment.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, env=environment, timeout=900
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert {p.name for p in out.iterdir()} == FILES  # the machine returns at most 8 files
    assert "done: 7 files in" in done.stdout
    for piece in ("doctor.txt", "study.log", "study.tar.gz", "perf.tar.gz"):
        assert f"{out / piece}" in done.stdout  # each piece says where it went
    assert "all well" in (out / "doctor.txt").read_text()
    report = member(out / "study.tar.gz", "study/report/report.md")
    assert "## Verdict" in report and "\n- lstm (keras-torch vs torch): accuracy: " in report
    with tarfile.open(out / "stores.tar.gz") as tar:
        assert {"study/optuna.db", "study/mlflow.db"} <= set(tar.getnames())
    assert '"records"' in member(out / "perf.tar.gz", "perf/perf.json")
    assert not list(tmp_path.glob("gpu-check.*"))  # the scratch folder is gone
