"""The one exception type the command line turns into a single line on stderr."""

from __future__ import annotations


class BenchError(Exception):
    """A problem the user can fix (bad path, bad value, unwritable folder).

    The message is one line that says what was expected, what was received and where; the CLI
    prints it without a traceback and exits with code 2.
    """
