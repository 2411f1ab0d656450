"""Turning a study file's validation errors into the one line a user reads.

Pydantic reports a list of structured errors; rnnbench shows the first as
`<dotted key>: expected <what>; received <value>`, printable and on one line whatever the file
held, so that every mistake in a study file reads the same way.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic_core import PydanticCustomError

from harness.errors import BenchError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def show(value: object) -> str:
    """A value as the error's "received" part: its repr, cut to about 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problem(loc: tuple[str | int, ...], phrase: str, received: str) -> PydanticCustomError:
    """A validation error whose key (relative to where it is raised) and wording we choose."""
    return PydanticCustomError(
        "study", "{phrase}", {"phrase": phrase, "loc": loc, "received": received}
    )


def dotted(loc: tuple[str | int, ...]) -> str:
    """`("study", "architectures", 1)` -> `study.architectures[1]`; odd keys quoted as in TOML."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            key = key if len(key) <= 40 else key[:37] + "..."
            text += f".{key}" if text else key
    return text


_PHRASES = {
    "int_type": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "finite_number": "expected a finite number",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "list_type": "expected an array",
    "dict_type": "expected a table",
    "model_type": "expected a table",
    "model_attributes_type": "expected a table",
    "too_short": "expected a non-empty array",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
}


def describe(error: Any, tables: set[str]) -> str:
    """One pydantic error as `key: expected ...; received ...`."""
    ctx = error.get("ctx") or {}
    loc = tuple(error["loc"]) + tuple(ctx.get("loc", ()))
    kind = error["type"]
    received = show(error.get("input"))
    if kind == "study":
        phrase, received = ctx["phrase"], ctx["received"]
    elif kind == "missing":
        table = len(loc) == 1 and loc[0] in tables
        phrase = f"expected a [{loc[0]}] table" if table else "expected a value"
        received = "nothing"
    elif kind == "literal_error":
        phrase = f"expected {ctx['expected']}"
    elif kind in _BOUNDS:
        bound = next(iter(value for key, value in ctx.items() if key in ("gt", "ge", "lt", "le")))
        phrase = f"expected {_BOUNDS[kind]} {bound}"
    else:
        phrase = _PHRASES.get(kind, f"expected a valid value ({error['msg']})")
    return f"{dotted(loc) or '(file)'}: {phrase}; received {received}"


def one_line(message: str) -> BenchError:
    """A BenchError whose message cannot break the line, whatever the file held."""
    safe = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in message)
    return BenchError(safe)
