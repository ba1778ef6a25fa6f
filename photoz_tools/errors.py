"""The one exception type a user ever sees: its message is the whole error line."""

from __future__ import annotations


class PzError(Exception):
    """A failure the user can fix; the CLI prints ``pz-CMD: error: <message>`` and exits 1.

    Messages name the file, row, column or option at fault and say what to do, on one line.
    """


class PzUsageError(PzError):
    """A bad option value or combination: exit status 2, like a usage error from the parser."""
