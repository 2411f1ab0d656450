"""`bench doctor`: run each backend's probe, judge what it found, print one table.

Exit code 0 when every installed backend is well; 1 with one line per problem (a probe that
failed, logits off the reference, a backend asked for by name or of the core install whose
framework is missing). Backends of an extra that is not installed, and not asked for, are
listed with the extra that installs them.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from backends import BACKENDS, check_backend
from harness.doctor.probe import ProbeJob
from harness.run.events import Diagnosis, Event
from harness.run.jobs import run_child, write_job

# Largest |logit gap| to the float32 numpy reference that counts as agreement. On a CPU every
# backend agrees to about 1e-7. On a GPU both frameworks use TF32 for float32 matmuls by
# default, which moved logits by 1e-4 to 1e-3 on the H200 (docs/benchmarks.md); more than that
# is a kernel, a driver or a setting to look at before a study starts.
TOLERANCE = {False: 1e-5, True: 5e-3}  # keyed by "runs on a GPU"


@dataclass
class Findings:
    diagnoses: list[Diagnosis] = field(default_factory=list)
    not_installed: list[str] = field(default_factory=list)  # not asked for: listed, no problem
    problems: list[str] = field(default_factory=list)


def probe_backend(name: str, folder: Path) -> tuple[Diagnosis | None, str | None]:
    """The backend's diagnosis from its own process, or why there is none."""
    found: list[Diagnosis] = []

    def keep(event: Event) -> None:
        if isinstance(event, Diagnosis):
            found.append(event)

    job_path = write_job(ProbeJob(name, BACKENDS[name].module), folder / f"{name}.json")
    log_path = folder / f"{name}.log"
    returncode = run_child("harness.doctor.probe", job_path, log_path, keep)
    if returncode == 0 and found:
        return found[0], None
    lines = log_path.read_text().strip().splitlines() or ["no output"]
    return None, f"{name}: the probe failed (exit code {returncode}): {lines[-1][:300]}"


def judge(diagnosis: Diagnosis) -> list[str]:
    tolerance = TOLERANCE[diagnosis.gpu]
    return [
        f"{diagnosis.backend}: {arch} logits differ from the float32 numpy reference by "
        f"{gap:.1e} on {diagnosis.device} (tolerance {tolerance:.0e})"
        for arch, gap in diagnosis.parity.items()
        if not gap <= tolerance  # NaN is a problem too
    ]


def diagnose(names: list[str] | None = None) -> Findings:
    """Every installed backend, or the ones named (each must then be installed)."""
    findings = Findings()
    for name in names or []:
        if name not in BACKENDS:
            check_backend(name)  # an unknown name: the one-line error, before any probe
    with tempfile.TemporaryDirectory(prefix="bench-doctor-") as tmp:
        for name in names or list(BACKENDS):
            info = BACKENDS[name]
            if info.missing_packages():
                # A core dependency missing is a broken install; an extra is the user's choice.
                note = f"{name}: not installed ({info.install_hint()})"
                wanted = names or info.extra is None
                (findings.problems if wanted else findings.not_installed).append(note)
                continue
            diagnosis, failure = probe_backend(name, Path(tmp))
            if diagnosis is None:
                findings.problems.append(failure or f"{name}: no diagnosis")
                continue
            findings.diagnoses.append(diagnosis)
            findings.problems += judge(diagnosis)
    return findings


def render(findings: Findings) -> list[Table]:
    """One table of backend facts, one of architectures: the kernel each backend runs and its
    largest logit gap to the reference."""
    facts = Table(title="backends", title_justify="left")
    for column in ("backend", "framework", "device", "threads", "denormals"):
        facts.add_column(column)
    for d in findings.diagnoses:
        threads = ", ".join(f"{k}={v}" for k, v in d.threads.items()) or "framework default"
        framework = f"{d.framework} {d.version}"
        facts.add_row(d.backend, framework, d.device, f"{d.cpus} cpus; {threads}", d.denormal_mode)
    kernels = Table(
        title="recurrent kernel; largest |logit gap| to the float32 numpy reference",
        title_justify="left",
    )
    kernels.add_column("architecture")
    for d in findings.diagnoses:
        kernels.add_column(d.backend)
    for arch in findings.diagnoses[0].kernels if findings.diagnoses else ():
        cells = []
        for d in findings.diagnoses:
            verdict = "ok" if d.parity[arch] <= TOLERANCE[d.gpu] else "OFF"
            cells.append(f"{d.kernels[arch]}; {d.parity[arch]:.1e} {verdict}")
        kernels.add_row(arch, *cells)
    return [facts, kernels]


def run_doctor(console: Console, names: list[str] | None = None) -> int:
    """`bench doctor`: the table, the not-installed backends, one line per problem; the exit
    code."""
    findings = diagnose(names)
    for table in render(findings):
        console.print(table)
    for note in findings.not_installed:
        console.print(note, highlight=False, markup=False, soft_wrap=True)
    errors = Console(stderr=True)
    for problem in findings.problems:
        errors.print(f"problem: {problem}", highlight=False, markup=False, soft_wrap=True)
    if not findings.problems:
        console.print(
            f"all well: logits within {TOLERANCE[False]:.0e} of the reference on a CPU, "
            f"{TOLERANCE[True]:.0e} on a GPU"
        )
    return 1 if findings.problems else 0
