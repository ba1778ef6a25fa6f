"""The output rule every command and plain function shares (README, "Conventions"): the folder
that holds an output must exist, and nothing creates it. A folder output (a model bundle, a
mock survey, a resume folder, the partitions of a catalogue folder) is itself created, inside
an existing folder only.

One line of refusal for the command line (cli/checks.py) and for the plain functions
(imaging/cutouts.py, sdss/query.py) alike. It imports nothing of the package but errors.
"""

from __future__ import annotations

import os

from photoz_tools.errors import PzUsageError

__all__ = ["require_parent_folder"]


def require_parent_folder(path: str | os.PathLike | None, option: str) -> None:
    """PzUsageError naming `option` when the folder that would hold `path` does not exist.

    None, '' and '-' (stdout) pass; a trailing separator names a folder, whose own parent counts.
    """
    if path is None or str(path) in ("-", ""):
        return
    text = str(path)
    folder = os.path.dirname(os.path.abspath(text.rstrip(os.sep) or text))
    if not os.path.isdir(folder):
        raise PzUsageError(
            f"{option} {text}: folder {folder} does not exist (create it first: mkdir -p {folder})"
        )
