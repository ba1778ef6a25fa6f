"""Opening a table: a path, '-' or None (stdin, spooled to a temporary file); the format
from the magic bytes or the extension; gzip/bzip2 decompressed to a temporary file."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import pyarrow as pa

from photoz_tools.tables.base import TableReader
from photoz_tools.tables.common import (
    Source,
    TableError,
    _decompress,
    _describe_head,
    _first_line,
    _is_stdio,
    _isatty,
    _remove_all,
    _sniff,
    _spool_stdin,
    detect_format,
)
from photoz_tools.tables.fits import _FitsReader
from photoz_tools.tables.parquet import _ParquetReader
from photoz_tools.tables.text import _AstropyReader


def open_table(
    source: Source = "-",
    columns: Sequence[str] | None = None,
    batch_rows: int | None = None,
    name: str | None = None,
) -> TableReader:
    """Open a table from a path, '-' or None (stdin). Format from the extension, or from the
    magic bytes on stdin (which is spooled to a temporary file, never into memory).
    Gzip/bzip2-compressed FITS work. `columns` is pushed down to the reader; a missing one is a
    TableError naming it and listing the columns that are there."""
    temps: list[str] = []
    try:
        if _is_stdio(source):
            label = name or "stdin"
            if _isatty(sys.stdin):
                raise TableError(
                    "no input table: stdin is a terminal; give a table path, or pipe one in "
                    "(... | pz-CMD -)"
                )
            path = _spool_stdin()
            temps.append(path)
            ext_fmt = None
        else:
            path = os.fspath(source)
            label = name or path
            if not os.path.exists(path):
                raise TableError(f"{label}: no such file")
            if os.path.isdir(path):
                raise TableError(f"{label}: is a folder, not a table file")
            ext_fmt = detect_format(path)
        try:
            with open(path, "rb") as f:
                head = f.read(512)
        except OSError as exc:
            raise TableError(f"{label}: cannot read ({_first_line(exc)})") from None
        if not head:
            what = "empty input on stdin" if _is_stdio(source) else "empty file"
            raise TableError(f"{label}: {what} (0 bytes), not a table")
        kind = _sniff(head)
        if kind in ("gzip", "bzip2"):
            path = _decompress(path, kind, label)
            temps.append(path)
            with open(path, "rb") as f:
                head = f.read(512)
            if not head:
                raise TableError(f"{label}: empty after decompression, not a table")
            kind = _sniff(head)
        fmt = kind if kind in ("fits", "parquet") else (ext_fmt or kind)
        if fmt is None:
            raise TableError(
                f"{label}: cannot tell the table format (starts with "
                f"{_describe_head(head)}); expected FITS, Parquet, CSV, ECSV or "
                "VOTable"
            )
        if fmt == "parquet":
            return _ParquetReader(label, path, temps, columns, batch_rows)
        if fmt == "fits":
            return _FitsReader(label, path, temps, columns, batch_rows)
        return _AstropyReader(label, path, temps, columns, batch_rows, fmt)
    except BaseException:
        _remove_all(temps)
        raise


def read_table(source: Source, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a whole (small) table; metadata in ``table.schema.metadata`` (bytes keys)."""
    with open_table(source, columns=columns) as reader:
        return reader.read()
