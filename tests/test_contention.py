"""A busy machine is seen: a CPU-burning process started by the test during one backend's
re-trainings only, on the same cores, gets exactly those runs tagged `contended`, and the
report's cost clause says it rests on a busy machine; the same study run quietly has no tag.

Real processes throughout: `bench run -v` in a subprocess, its "started"/"done" lines read as
they come to start and stop the burner (no sleeps), and the MLflow store read back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, bench
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

BURNED, QUIET = "keras-jax", "torch"  # the backend whose runs share their cores with a burner
BURNER = "while True: pass"  # one busy core; it inherits the test's cores (its affinity)


def write_study(folder: Path, study_file) -> Path:
    return study_file(
        folder,
        study={"name": "busy", "backends": [QUIET, BURNED], "architectures": ["lstm"]},
        budget={"trials": 1},
        data={"subset": 200},
        retrain={"seeds": 1, "cross_backend": False},
    )


def run_with_burner(study: Path, out: Path, data: Path) -> str:
    """`bench run -v`, with a burner alive from each BURNED re-training's "started" line to
    its "done" line; returns what the command printed."""
    command = [sys.executable, "-m", "harness", "run", "-v", "--study", str(study)]
    command += ["--out", str(out), "--data", str(data)]
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    burner: subprocess.Popen | None = None
    printed = []
    try:
        for line in process.stdout:  # type: ignore[union-attr]
            printed.append(line)
            retraining = f"/{BURNED} {BURNED} best config" in line
            if retraining and line.rstrip().endswith("started") and burner is None:
                burner = subprocess.Popen([sys.executable, "-c", BURNER])
            elif retraining and burner is not None and not line.rstrip().endswith("started"):
                burner.kill()
                burner.wait()
                burner = None
        assert process.wait(timeout=600) == 0, "".join(printed)[-3000:]
    finally:
        if burner is not None:
            burner.kill()
        process.kill()
    return "".join(printed)


def retrain_runs(out: Path) -> list:
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("busy")
    return client.search_runs([experiment.experiment_id], "tags.role = 'retrain'")


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs Linux's CPU affinity")
def test_runs_that_shared_their_cores_are_tagged_and_named_by_the_report(
    imdb_slice, tmp_path, study_file
):
    study = write_study(tmp_path, study_file)
    busy_out, quiet_out = tmp_path / "busy", tmp_path / "quiet"
    printed = run_with_burner(study, busy_out, imdb_slice)

    runs = retrain_runs(busy_out)
    assert len(runs) == 2
    for run in runs:
        tags, metrics = run.data.tags, run.data.metrics
        burned = tags["backend"] == BURNED
        # Other work is what the burner is; the hypervisor's steal is a guard of its own.
        assert ("other work took" in tags.get("contended", "")) == burned, (tags, metrics)
        assert (metrics["host_other_cpu_share"] > 0.2) == burned, metrics
        assert 0 < metrics["process_cpu_per_wall"]
        assert {"load_average_start", "load_average_end", "host_steal_share"} <= set(metrics)
        assert any(key.startswith("system/cpu_utilization") for key in metrics)  # MLflow's own
        assert tags["energy"].startswith("not measured")  # no GPU here: said, not estimated
    # The report's cost clauses say so and name the runs; quality does not rest on the host.
    lstm = next(line for line in printed.splitlines() if line.strip().startswith("lstm ("))
    names = sorted(r.data.tags["mlflow.runName"] for r in runs if "contended" in r.data.tags)
    time_clause = lstm.split("; ")[1]
    assert "busy machine" in time_clause and all(name in time_clause for name in names)
    assert "busy machine" not in lstm.split("; ")[0]
    assert "mlflow runs delete --run-id" in printed

    quiet = bench("run", "--study", str(study), "--out", str(quiet_out), "--data", str(imdb_slice))
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    quiet_runs = retrain_runs(quiet_out)
    assert len(quiet_runs) == 2
    assert not [r.data.tags for r in quiet_runs if "contended" in r.data.tags]
    assert "busy machine" not in quiet.stdout
