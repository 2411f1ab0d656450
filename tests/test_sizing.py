"""A study sized for a GPU on a machine without one (issue 26): `bench run` stops before any work
in one line with an estimate of the hours from a probe of a few training steps, `--dry-run`
prints the same estimate, and `--on-cpu` runs it anyway.

The commands run as a user runs them, from a folder of their own, with no GPU visible
(CUDA_VISIBLE_DEVICES empty), so that the refusal is tested on a GPU machine too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import write_study
from helpers import bench

from harness.errors import BenchError
from harness.run.sizing import PROBE_TOKENS, Pace, about, study_seconds
from harness.study.schema import list_studies, load_study

GPU_STUDY = {"name": "big", "sized_for": "gpu", "cpu_study": "imdb-quick"}
ESTIMATE = re.compile(
    r"on this machine \(no GPU\) it would take (about \d[\d,]* (hours|minutes?)|less than a "
    r"minute)[^;]*\(an estimate from a probe of 3 training steps per architecture on torch"
)


def bench_without_gpu(folder: Path, *args: str):
    environment = {**os.environ, "COLUMNS": "300", "CUDA_VISIBLE_DEVICES": ""}
    environment.pop("MLFLOW_TRACKING_URI", None)
    return bench(*args, timeout=300, cwd=folder, env=environment)


# -- the estimate ------------------------------------------------------------------------------
def test_the_estimate_scales_the_probe_by_steps_epochs_trials_and_retrainings(tmp_path):
    study = load_study(
        write_study(
            tmp_path,
            study={"backends": ["torch", "keras"], "epochs": 3},
            budget={"trials": 4},
            data={"subset": 1000, "validation_fraction": 0.2},
            retrain={"seeds": 2, "cross_backend": True},
        )
    )
    # 0.5 s per step of 32 tokens; 800 training reviews in batches of 64: 13 steps per epoch.
    pace = Pace("torch", {"gru": 0.5 / 32}, None)
    run = 3 * 13 * 0.5
    assert study_seconds(study, pace) == pytest.approx(2 * (4 * run + 2 * 2 * run))
    capped = study.model_copy(update={"budget": study.budget.model_copy(update={"trials": 1000})})
    timeout = capped.model_copy(
        update={"budget": capped.budget.model_copy(update={"timeout_minutes": 1.0})}
    )
    assert study_seconds(timeout, pace) == pytest.approx(2 * (60 + 4 * run))


def test_an_estimate_is_rounded_as_an_estimate():
    assert about(20) == "less than a minute"
    assert about(70) == "about 1 minute"
    assert about(25 * 60) == "about 25 minutes"
    assert about(3.4 * 3600) == "about 3 hours"
    assert about(41 * 3600) == "about 40 hours"
    assert about(250 * 3600) == "about 250 hours (10 days)"


# -- the study files ---------------------------------------------------------------------------
def test_the_gpu_studies_say_so_and_name_a_study_for_a_cpu():
    studies = {study.name: study for study in list_studies()}
    assert {name for name, study in studies.items() if study.sized_for == "gpu"} == {
        "imdb",
        "imdb-gpu-quick",
        "imdb-lm",
    }
    for study in studies.values():
        assert study.cpu_study is None or studies[study.cpu_study].sized_for == "any"
    assert studies["imdb"].cpu_study == "imdb-cpu-search"


def test_the_gpu_smoke_is_imdb_shrunk_on_the_backends_a_gpu_machine_has():
    imdb, smoke = load_study("imdb"), load_study("imdb-gpu-quick")
    assert smoke.search == imdb.search and smoke.fixed == imdb.fixed
    assert smoke.architectures == imdb.architectures
    assert smoke.backends == ["torch", "keras-jax", "keras-torch"]  # no TensorFlow there
    assert smoke.data.subset is None  # every review of the archive given
    assert smoke.epochs == 2 and smoke.budget.trials in (2, 3)


@pytest.mark.parametrize(
    ("header", "key", "phrase"),
    [
        ({"sized_for": "tpu"}, "study.sized_for", "expected 'any' or 'gpu'; received 'tpu'"),
        ({"cpu_study": "imdb-cpu"}, "study.cpu_study", "expected only with sized_for = 'gpu'"),
    ],
)
def test_a_wrong_sizing_key_is_one_line(tmp_path, header, key, phrase):
    path = write_study(tmp_path, study=header)
    with pytest.raises(BenchError) as refused:
        load_study(path)
    assert f": {key}: " in str(refused.value) and phrase in str(refused.value)


# -- the command -------------------------------------------------------------------------------
@pytest.mark.slow  # the real `bench`, its probe included
def test_a_gpu_study_stops_in_one_line_with_an_estimate_and_creates_nothing(tmp_path, imdb_slice):
    study = write_study(tmp_path / "studies", study=GPU_STUDY)
    out = tmp_path / "out"
    done = bench_without_gpu(
        tmp_path, "run", "--study", str(study), "--out", str(out), "--data", str(imdb_slice)
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output[-2000:]
    assert len(output.splitlines()) == 1 and output.startswith("error: "), output
    assert "studies/big.toml is sized for a GPU" in output
    assert ESTIMATE.search(output), output
    assert f"cut to {PROBE_TOKENS} tokens" in output
    assert output.endswith("run --study imdb-quick instead, or add --on-cpu to run it anyway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["studies"]  # no --out, no stores


@pytest.mark.slow  # the real `bench`, its probe included
def test_a_dry_run_prints_the_same_estimate_and_exits_0(tmp_path, imdb_slice):
    study = write_study(tmp_path / "studies", study=GPU_STUDY)
    done = bench_without_gpu(
        tmp_path, "run", "--study", str(study), "--dry-run", "--data", str(imdb_slice)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("sized for a GPU: ")]
    assert len(lines) == 1 and ESTIMATE.search(lines[0]), done.stdout
    assert lines[0].endswith("or add --on-cpu to run it anyway")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["studies"]


@pytest.mark.slow  # the real `bench` (no probe: seconds)
def test_on_cpu_goes_past_the_check(tmp_path):
    """To the next check, the data's (a missing archive), in seconds: the whole run with
    --on-cpu is tests/test_gpu_check.py's, whose reduced study is sized for a GPU too."""
    study = write_study(tmp_path / "studies", study=GPU_STUDY)
    missing = tmp_path / "no-such-archive.tar.gz"
    done = bench_without_gpu(
        tmp_path, "run", "--study", str(study), "--data", str(missing), "--on-cpu"
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2 and "sized for a GPU" not in output
    assert output.startswith("error: ") and "a path that does not exist" in output
