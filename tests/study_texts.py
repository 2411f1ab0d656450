"""The study texts the study-file tests write, built on conftest's small study."""

from __future__ import annotations

import tomli_w
from conftest import study_document

# conftest's small study with a text knob added; each broken case in test_study_errors.py
# changes one thing in it.
OPTIMIZER = {"choices": ["rmsprop", "adam"], "default": "adam"}
DROP = object()  # a key to leave out of a table


def document(**tables: object) -> dict[str, object]:
    """conftest's study document with `tables` changed: a dict updates that table's keys (DROP
    leaves one out), None leaves the table out, anything else replaces it."""
    changes = {"search": {"optimizer": OPTIMIZER}, **tables}
    if isinstance(tables.get("search"), dict):
        changes["search"] = {"optimizer": OPTIMIZER, **tables["search"]}
    plain = {
        name: value for name, value in changes.items() if value is None or isinstance(value, dict)
    }
    doc: dict[str, object] = study_document(**plain)  # type: ignore[arg-type]
    for name, value in changes.items():
        if name not in plain:
            doc[name] = value
        elif isinstance(value, dict):
            doc[name] = {key: item for key, item in doc[name].items() if item is not DROP}
    return doc


def toml(**tables: object) -> str:
    """The TOML text of `document(**tables)`."""
    return tomli_w.dumps(document(**tables))


def knob(name: str, **changes: object) -> dict[str, object]:
    """A searched knob of the base study with some keys changed (DROP leaves one out)."""
    entry = {**document()["search"][name], **changes}  # type: ignore[index]
    return {key: value for key, value in entry.items() if value is not DROP}
