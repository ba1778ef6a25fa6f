"""What every part of the table I/O shares: the error type, format names and detection,
metadata keys, temporary files, stdin spooling and decompression (no Arrow needed)."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from os import PathLike
from typing import Any

from photoz_tools.errors import PzError

Source = str | PathLike | None
_CHUNK = 1 << 20  # bytes per read when spooling or (de)compressing

# metadata keys written by the commands
BIN_EDGES_KEY = "pz_bin_edges"  # always a JSON list of floats (the 181 edges), never a formula
PROVENANCE_KEYS = ("pz_tool_version", "pz_command", "pz_inputs", "pz_model_hash", "pz_created")

# units for the column names the toolkit knows; used when writing FITS/Parquet
KNOWN_UNITS = {"ra": "deg", "dec": "deg", "image": "nanomaggy"}

FORMATS = ("fits", "parquet", "csv", "ecsv", "votable")
_FORMAT_ALIASES = {
    "fits": "fits",
    "fit": "fits",
    "fts": "fits",
    "parquet": "parquet",
    "pq": "parquet",
    "csv": "csv",
    "ecsv": "ecsv",
    "votable": "votable",
    "vot": "votable",
    "xml": "votable",
}
_COMPRESSED = {".gz": "gzip", ".bz2": "bzip2"}
_DROP_META = {"ARROW:schema", "pandas"}


class TableError(PzError):
    """Unreadable, malformed or inconsistent table input (message names file/column/row)."""


def _is_stdio(source: Source) -> bool:
    return source is None or str(source) == "-"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].strip()


def detect_format(path: str | PathLike) -> str | None:
    """Table format from a file name (.fits, .fit, .fits.gz, .parquet, .pq, .csv, ...) or None."""
    name = os.fspath(path).lower()
    for ext in _COMPRESSED:
        if name.endswith(ext):
            name = name[: -len(ext)]
    ext = os.path.splitext(name)[1].lstrip(".")
    return _FORMAT_ALIASES.get(ext)


def _normalise_format(format: str | None) -> str | None:
    if format is None:
        return None
    fmt = _FORMAT_ALIASES.get(format.lower().lstrip("."))
    if fmt is None:
        raise TableError(f"unknown table format '{format}' (use one of: {', '.join(FORMATS)})")
    return fmt


def _sniff(head: bytes) -> str | None:
    """Format (or compression) from the first bytes of a file."""
    if head.startswith(b"SIMPLE  ="):
        return "fits"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"# %ECSV"):
        return "ecsv"
    if text.startswith(b"<?xml") or text.startswith(b"<VOTABLE"):
        return "votable"
    if head and b"\x00" not in head:
        try:
            line = head.decode("utf-8", "ignore").splitlines()[0]
        except (UnicodeDecodeError, IndexError):
            return None
        if "," in line:
            return "csv"
    return None


def _describe_head(head: bytes) -> str:
    return repr(head[:16])[1:]


# A temporary file is named ``.STEM.PID@HOST.RANDOM.tmp`` (``.tmpz`` for a compressed copy):
# a run killed with SIGKILL cannot remove its own, so the next writer of STEM removes those of
# processes that are dead on this host. One from another host (a shared folder) is left alone
# unless untouched for STALE_FOREIGN_HOURS (a live writer appends to it far more often).
STALE_FOREIGN_HOURS = 24.0


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname().split(".")[0])[:32] or "host"


def _tempfile(folder: str | None, stem: str, suffix: str = ".tmp") -> str:
    """A new empty file ``.STEM.PID@HOST.RANDOM{suffix}`` in `folder` (None: the system's
    temporary folder), after removing the temporaries of STEM left there by dead processes."""
    _remove_stale_temps(folder, stem)
    fd, path = tempfile.mkstemp(
        dir=folder, prefix=f".{stem}.{os.getpid()}@{_host_tag()}.", suffix=suffix
    )
    os.close(fd)
    return path


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a pid we can judge: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # another user's process (EPERM), or cannot tell: keep the file
    return True


def _remove_stale_temps(folder: str | None, stem: str) -> list[str]:
    """Remove ``.STEM.PID@HOST.*.tmp``/``.tmpz`` files of dead processes from `folder`; return
    their paths. Never a live process's file; errors (a folder we cannot list) are ignored."""
    folder = folder or tempfile.gettempdir()
    pattern = re.compile(
        rf"\.{re.escape(stem)}\.(\d{{1,10}})@([A-Za-z0-9-]*)\.[A-Za-z0-9_]+\.tmpz?\Z"
    )
    prefix, host, removed = f".{stem}.", _host_tag(), []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if m.group(2) == host:
                stale = not _pid_alive(int(m.group(1)))
            else:
                age = time.time() - entry.stat(follow_symlinks=False).st_mtime
                stale = age > STALE_FOREIGN_HOURS * 3600
            if stale:
                os.unlink(entry.path)
                removed.append(entry.path)
        except OSError:
            continue  # gone already (another writer cleaned it), or not ours to remove
    return removed


def _remove(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _remove_all(paths: list[str]) -> None:
    for p in paths:
        _remove(p)


def _decompress(src: str, kind: str, name: str) -> str:
    """Decompress a gzip/bzip2 file to a temporary file in chunks (bounded memory)."""
    out = _tempfile(None, "pz-decompressed")
    opener = gzip.open if kind == "gzip" else bz2.open
    try:
        with opener(src, "rb") as fin, open(out, "wb") as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
    except (OSError, EOFError, gzip.BadGzipFile, ValueError) as exc:
        _remove(out)
        raise TableError(
            f"{name}: corrupt or truncated {kind} stream ({_first_line(exc)})"
        ) from None
    except BaseException:
        _remove(out)
        raise
    return out


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _spool_stdin() -> str:
    """Copy stdin to a temporary file in chunks: Parquet needs its footer, FITS needs seeks."""
    out = _tempfile(None, "pz-stdin")
    try:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise TableError("no input table: there is no stdin to read; give a table path")
        with open(out, "wb") as fout:
            shutil.copyfileobj(stream, fout, _CHUNK)
    except BaseException:
        _remove(out)
        raise
    return out


def _chmod_default(path: str) -> None:
    """mkstemp makes 0600 files; give the result the usual 0666 & ~umask."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(path, 0o666 & ~umask)
    except OSError:
        pass


def provenance_metadata(
    command_line: str, inputs: Sequence[str], model_hash: str | None = None
) -> dict[str, str]:
    """The provenance keys (tool version, command line, inputs, model hash, UTC time)."""
    from photoz_tools import __version__

    meta = {
        "pz_tool_version": __version__,
        "pz_command": command_line,
        "pz_inputs": json.dumps([("-" if i is None else os.fspath(i)) for i in inputs]),
    }
    if model_hash:
        meta["pz_model_hash"] = model_hash
    meta["pz_created"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return meta
