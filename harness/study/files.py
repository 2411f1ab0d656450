"""Where study files are, and reading one: the studies shipped inside the package, or any path.

The repository's `studies/` folder is the package `harness.studies` (pyproject.toml maps one onto
the other), read through importlib.resources: an installed wheel finds its studies exactly as a
source checkout or an editable install does, instead of looking for a source tree that is not
there.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import BenchError
from harness.study.errors import one_line
from harness.study.tables import NAME


def _shipped_folder() -> Path:
    try:
        folder = resources.files("harness.studies")
    except ModuleNotFoundError:
        # A source checkout run without installing (`python -m harness` from the repository):
        # the mapping of studies/ onto harness.studies exists only in an installed package.
        return Path(__file__).resolve().parents[2] / "studies"
    if not isinstance(folder, Path):  # e.g. a zipped install: studies are read as plain files
        raise BenchError(f"expected the shipped study files in a folder; received {folder}")
    return folder


STUDIES_DIR = _shipped_folder()


def shipped_studies() -> list[Path]:
    """The study files shipped with rnnbench, sorted by file name."""
    return sorted(STUDIES_DIR.glob("*.toml"))


def locate(name_or_path: str | Path) -> tuple[Path, str]:
    """The file to read and how errors should name it: a path, or the name of a shipped study
    (`imdb` -> the shipped imdb.toml)."""
    text = str(name_or_path)
    given = Path(name_or_path)
    if given.is_file():
        return given, text
    is_bare_name = NAME.fullmatch(text) is not None and not text.endswith(".toml")
    if not is_bare_name:
        return given, text  # reading it reports the missing file
    candidate = STUDIES_DIR / f"{text}.toml"
    if candidate.is_file():
        return candidate, _shown(candidate)
    known = ", ".join(sorted(path.stem for path in shipped_studies())) or "(none)"
    raise one_line(
        f"unknown study {text!r}: expected a study file or one of {known} (in {STUDIES_DIR})"
    )


def read_toml(path: Path, shown: str) -> dict[str, Any]:
    """The parsed file, or one line naming it as `shown` when it is unreadable or not TOML."""
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as error:
        reason = (error.strerror or type(error).__name__).lower()
        raise one_line(f"{shown}: expected a readable study file; received {reason}") from None
    except UnicodeDecodeError as error:
        raise one_line(
            f"{shown}: not valid TOML: expected UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise one_line(f"{shown}: not valid TOML: {error}") from None


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
