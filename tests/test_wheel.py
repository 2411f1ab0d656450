"""A wheel of rnnbench, installed without `-e` into a fresh virtual environment, runs anywhere.

Installing TensorFlow and PyTorch into a fresh environment takes minutes and gigabytes, so the new
environment gets the wheel alone (`--no-deps`) and reaches the dependencies this interpreter has
through a `.pth` file that names this interpreter's site-packages folders. A folder named in a
`.pth` file is only put on sys.path, after the environment's own site-packages: the `.pth` files
inside it are not run, so an editable rnnbench installed there (a finder hook its own `.pth`
installs) stays inert. Every command runs from an empty folder outside the repository, and the
test asserts that `harness` and its studies are imported from the new environment.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import REPO, SHIPPED_STUDIES

import harness

pytestmark = pytest.mark.slow
SOURCES = ("pyproject.toml", "README.md", "harness", "backends", "studies")
SHIPPED = SHIPPED_STUDIES


def run(*command: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**env, "PYTHONNOUSERSITE": "1"},  # the user site, if used, is named in the .pth
        timeout=timeout,
    )
    assert done.returncode == 0, f"{command}: {done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built offline from a copy of the sources, so the build leaves the tree as it was."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    major, minor = (int(part) for part in version.split(".")[:2])
    assert (major, minor) >= (70, 1), f"setuptools>=70.1 builds the wheel; found {version}"
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, source / name)
    dist = tmp_path_factory.mktemp("dist")
    pip = (sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index")
    run(*pip, "--wheel-dir", dist, source, cwd=source)
    (built,) = dist.glob("rnnbench-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed (no `-e`, no dependencies)."""
    folder = tmp_path_factory.mktemp("venv")
    run(sys.executable, "-m", "venv", folder, cwd=folder)
    python = folder / "bin" / "python"
    purelib = run(
        python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=folder
    )
    ours = [*site.getsitepackages(), site.getusersitepackages()]
    found = [path for path in ours if Path(path).is_dir()]
    (Path(purelib.stdout.strip()) / "rnnbench_test_dependencies.pth").write_text("\n".join(found))
    run(python, "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=folder)
    return folder


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty folder outside the repository to run commands from."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    assert not folder.resolve().is_relative_to(REPO.resolve())
    return folder


def test_the_wheel_holds_every_package_and_the_studies(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {
        str(init.parent.relative_to(REPO))
        for top in ("harness", "backends")
        for init in (REPO / top).rglob("__init__.py")
    }
    for package in packages:
        assert f"{package}/__init__.py" in names, f"{package} is missing from the wheel"
    shipped = sorted(Path(name).stem for name in names if name.startswith("harness/studies/"))
    assert [name for name in shipped if name != "__init__"] == SHIPPED


def test_installed_package_is_the_wheel_not_the_source_tree(venv: Path, elsewhere: Path) -> None:
    code = (
        "import importlib.metadata, sys, harness, harness.studies; "
        "print(harness.__file__); print(harness.studies.__file__); "
        "print(importlib.metadata.version('rnnbench')); "
        "print(any('editable' in getattr(f, '__name__', '').lower() for f in sys.meta_path))"
    )
    done = run(venv / "bin" / "python", "-c", code, cwd=elsewhere)
    module, studies, version, editable_hook = done.stdout.split()
    for path in (module, studies):
        assert Path(path).resolve().is_relative_to(venv.resolve()), path
    assert version == harness.__version__  # the one place it is written
    assert editable_hook == "False"  # no editable install can reach the source tree


def test_bench_studies_lists_the_shipped_studies(venv: Path, elsewhere: Path) -> None:
    done = run(venv / "bin" / "bench", "studies", cwd=elsewhere)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == SHIPPED
    assert all(str(venv.resolve()) in line for line in lines)  # read from the installed package


def test_bench_run_dry_run_finds_a_shipped_study(venv: Path, elsewhere: Path) -> None:
    done = run(venv / "bin" / "bench", "run", "--study", "imdb-quick", "--dry-run", cwd=elsewhere)
    plan = done.stdout
    assert plan.startswith("study imdb-quick (") and str(venv.resolve()) in plan.splitlines()[0]
    assert "searches: 16" in plan and "dry run: nothing was trained" in plan
    out = elsewhere / "bench-runs" / "imdb-quick"
    assert f"sqlite:///{out.resolve() / 'optuna.db'}" in plan
    assert not out.exists()  # nothing created: no folder, no store
