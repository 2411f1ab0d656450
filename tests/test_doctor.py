"""`bench doctor`: every installed backend probed in its own process, judged against the numpy
reference; exit code 0 when all is well, 1 with one line per problem."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import bench

from backends import BACKENDS, BackendInfo
from harness.doctor.check import TOLERANCE, diagnose, judge
from harness.model_spec import ARCHITECTURES
from harness.run.events import Diagnosis

TESTS = Path(__file__).resolve().parent


def diagnosis(gaps: dict[str, float], gpu: bool = False) -> Diagnosis:
    return Diagnosis(
        backend="b", framework="f", version="1", device="dev", gpu=gpu, cpus=2, threads={},
        denormal_mode="flush", kernels=dict.fromkeys(gaps, "generic"), parity=gaps,
    )  # fmt: skip


def test_a_gap_past_the_tolerance_or_nan_is_one_line_each():
    cpu = TOLERANCE[False]
    gaps = {"lstm": cpu / 2, "gru": cpu * 2, "bilstm": math.nan}
    problems = judge(diagnosis(gaps))
    assert len(problems) == 2
    assert problems[0].startswith(
        "b: gru logits differ from the float32 numpy reference by 2.0e-05"
    )
    assert "bilstm" in problems[1] and "nan" in problems[1]
    assert judge(diagnosis({"gru": cpu * 2}, gpu=True)) == []  # TF32's gaps are allowed on a GPU


@pytest.fixture
def registered(monkeypatch):
    """Register a test backend module from tests/ (its probe process imports it by name)."""
    monkeypatch.setenv("PYTHONPATH", str(TESTS))

    def register(name: str, module: str) -> None:
        info = BackendInfo(name=name, module=module, display_name=name, packages=())
        monkeypatch.setitem(BACKENDS, name, info)

    return register


def test_logits_off_the_reference_are_a_problem_per_architecture(registered):
    registered("skewed", "skewed_backend")
    findings = diagnose(["skewed"])
    assert [d.backend for d in findings.diagnoses] == ["skewed"]
    assert len(findings.problems) == len(ARCHITECTURES)
    for arch, problem in zip(ARCHITECTURES, findings.problems, strict=True):
        assert problem.startswith(f"skewed: {arch} logits differ") and "by 1.0e-02" in problem


def test_a_probe_that_fails_is_a_problem_with_its_reason(registered):
    registered("absent", "backends.no_such_module")
    findings = diagnose(["absent"])
    assert findings.diagnoses == []
    (problem,) = findings.problems
    assert problem.startswith("absent: the probe failed (exit code 1)")
    assert "No module named 'backends.no_such_module'" in problem


@pytest.mark.slow
def test_bench_doctor_checks_every_installed_backend_and_exits_0():
    done = bench("doctor")
    assert done.returncode == 0, done.stderr[-2000:]
    for name in BACKENDS:
        assert f"│ {name} " in done.stdout
    for arch in ARCHITECTURES:
        assert f"│ {arch} " in done.stdout
    assert "all well" in done.stdout and "OFF" not in done.stdout


def test_a_missing_core_framework_is_a_problem_and_a_missing_extra_a_note(monkeypatch):
    core = BackendInfo("core", "backends.core", "Core", ("no_such_framework",))
    extra = BackendInfo("extra", "backends.extra", "Extra", ("no_such_framework",), "jax")
    monkeypatch.setattr("harness.doctor.check.BACKENDS", {"core": core, "extra": extra})
    findings = diagnose()
    assert findings.problems == ["core: not installed (pip install no_such_framework)"]
    assert findings.not_installed == ['extra: not installed (pip install "rnnbench[jax]")']
    assert findings.diagnoses == []


def test_a_backend_asked_for_whose_framework_is_missing_fails_in_one_line():
    """In a process where jax cannot be imported (as without the extra), nothing is probed."""
    code = "import sys; sys.modules['jax'] = None; from harness.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "doctor", "--backend", "keras-jax"],
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        'problem: keras-jax: not installed (pip install "rnnbench[jax]")'
    ]


def test_an_unknown_backend_is_one_line_and_exit_code_2():
    done = bench("doctor", "--backend", "jax")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: unknown backend: expected one of {', '.join(BACKENDS)}; received 'jax'"
    ]
