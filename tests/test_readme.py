"""The README's quick start and CI's test command are one: checked by reading them, never run."""

from __future__ import annotations

import re
import tomllib

from helpers import REPO

README = REPO / "README.md"
CI = REPO / ".ci" / "run"
SETUP = "python3 -m venv .venv && . .venv/bin/activate && pip install torch=="


def quick_start() -> list[str]:
    """The commands of the README's quick start: the lines that start from a fresh venv."""
    section = README.read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.strip().startswith(SETUP)]


def test_quick_start_is_two_commands_from_the_same_fresh_environment():
    study, tests = quick_start()
    pins = [re.findall(r"torch==(\S+)", command) for command in (study, tests)]
    assert pins[0] == pins[1] and len(pins[0]) == 1  # the same PyTorch build in both
    assert f"drop `torch=={pins[0][0]}`" in README.read_text()  # and in the words around them
    assert ' && pip install -e ".[jax]" && bench run --study ' in study
    assert tests.endswith(' && pip install -e ".[test,jax]" && pytest')
    name = re.search(r"--study (\S+)", study)
    assert name and (REPO / "studies" / f"{name.group(1)}.toml").is_file()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {"test", "jax"} <= set(project["optional-dependencies"]) and "bench" in project[
        "scripts"
    ]


def test_ci_runs_the_readme_test_command_verbatim():
    lines = [line for line in CI.read_text().splitlines() if line and not line.startswith("#")]
    assert [line for line in lines if line.startswith(SETUP)] == [quick_start()[1]]
    assert lines[-1] == quick_start()[1]  # the last thing CI does


def test_the_layout_section_names_every_module():
    """README's layout and the tree agree: each package and module of harness/ and backends/ is
    named there (and in docs/layout.md), so a new module cannot arrive unexplained."""
    layout = README.read_text().split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    diagram = (REPO / "docs" / "layout.md").read_text()
    for top in ("harness", "backends"):
        for path in sorted((REPO / top).rglob("*.py")):
            if path.name in ("__init__.py", "__main__.py"):
                continue
            stem = path.stem
            assert re.search(rf"\b{stem}\b", layout), (
                f"README's layout misses {path.relative_to(REPO)}"
            )
            assert re.search(rf"\b{stem}\b", diagram), (
                f"docs/layout.md misses {path.relative_to(REPO)}"
            )
        for package in sorted(p for p in (REPO / top).iterdir() if (p / "__init__.py").is_file()):
            assert f"{package.name}/" in layout, f"README's layout misses {package.name}/"
