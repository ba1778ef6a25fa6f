"""Writing a table: :class:`TableWriter` appends record batches to a format's sink in a temporary
file and commits it atomically (rename into place, or a copy to stdout); :func:`write_table`.

The sinks (one per format, in :mod:`.parquet`, :mod:`.fits` and :mod:`.text`) share one shape:
``check(schema, name)`` before anything is written, then ``write(batch, offset)``, ``finish()``
on commit and ``abort()`` on error.
"""

from __future__ import annotations

import bz2
import gzip
import os
import shutil
import sys
import weakref
from typing import Any

import pyarrow as pa

from photoz_tools.tables.arrow import _cast, _decode_meta, _row_bytes, schema_with_units
from photoz_tools.tables.common import (
    _CHUNK,
    _COMPRESSED,
    Source,
    TableError,
    _chmod_default,
    _first_line,
    _is_stdio,
    _isatty,
    _normalise_format,
    _remove,
    _tempfile,
    detect_format,
)
from photoz_tools.tables.fits import FitsSink
from photoz_tools.tables.parquet import ParquetSink
from photoz_tools.tables.text import AstropySink, CsvSink

# Parquet row groups hold about this many bytes, so that streaming readers stay bounded
ROW_GROUP_BYTES = 16 * 2**20
MAX_ROW_GROUP_ROWS = 1 << 17


def _destination(dest: Source, format: str | None) -> tuple[str | None, str, str, str | None]:
    """(path or None for stdout, name for messages, format, compression) of an output."""
    if _is_stdio(dest):
        fmt = _normalise_format(format) or "parquet"
        if getattr(sys.stdout, "buffer", None) is None:
            raise TableError("stdout cannot take a binary table here; give an output path")
        if fmt in ("parquet", "fits") and _isatty(sys.stdout):
            raise TableError(
                f"stdout is a terminal: refusing to print a binary {fmt} table "
                "there; give -o FILE, pipe it on, or choose --format csv"
            )
        return None, "stdout", fmt, None
    path = os.fspath(dest)
    fmt = detect_format(path) or _normalise_format(format)
    if fmt is None:
        raise TableError(
            f"{path}: cannot tell the output format from the extension "
            "(use .fits, .fits.gz, .parquet, .csv, .ecsv or .vot)"
        )
    low = path.lower()
    compress = next((k for e, k in _COMPRESSED.items() if low.endswith(e)), None)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise TableError(f"{path}: cannot write: folder {folder} does not exist")
    return path, path, fmt, compress


def _check_sink(fmt: str, schema: pa.Schema, name: str) -> None:
    """TableError when `fmt` cannot hold a column of `schema`."""
    if fmt == "parquet":
        ParquetSink.check(schema, name)
    elif fmt == "fits":
        FitsSink.check(schema, name)
    elif fmt == "csv":
        CsvSink.check(schema, name)
    else:
        AstropySink.check(schema, name, fmt)


def _make_sink(fmt: str, path: str, schema: pa.Schema, meta: dict[str, str], name: str, rg: int):
    if fmt == "parquet":
        return ParquetSink(path, schema, rg)
    if fmt == "fits":
        return FitsSink(path, schema, meta, name)
    if fmt == "csv":
        return CsvSink(path, schema)
    return AstropySink(path, schema, fmt, name)


def _conform(data: pa.RecordBatch | pa.Table, schema: pa.Schema, name: str):
    """`data` with the columns of `schema`, in its order, cast to its types."""
    names = schema.names
    if data.schema.names != names:
        missing = [n for n in names if n not in data.schema.names]
        if missing:
            raise TableError(
                f"{name}: data to write lacks column '{missing[0]}' of the "
                f"output schema (has: {', '.join(data.schema.names)})"
            )
        data = data.select(names)
    arrays = []
    for field, col in zip(schema, data.columns, strict=True):
        if col.type != field.type:
            try:
                col = (
                    _cast(col, field.type)
                    if isinstance(col, pa.Array)
                    else pa.chunked_array(
                        [_cast(c, field.type) for c in col.chunks], type=field.type
                    )
                )
            except (pa.ArrowException, ValueError) as exc:
                raise TableError(
                    f"{name}: column '{field.name}' is {col.type}, the "
                    f"output schema says {field.type} ({_first_line(exc)})"
                ) from None
        arrays.append(col)
    if isinstance(data, pa.Table):
        return pa.Table.from_arrays(arrays, schema=schema)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class TableWriter:
    """Append record batches to a FITS/Parquet/... table at a path (atomic: temp file in the same
    folder, renamed on close) or on stdout ('-' or None; format from `format`, default parquet).

    Used as a context manager, an exception inside the block removes the temporary file so
    nothing half-written is left behind. A known extension of `dest` wins over `format`.
    ``.fits.gz``/``.fits.bz2`` destinations are compressed on close.
    """

    def __init__(
        self,
        dest: Source,
        schema: pa.Schema,
        format: str | None = None,
        metadata: dict[str, str] | None = None,
        provenance: dict[str, str] | None = None,
    ) -> None:
        self._closed = False
        self._tmp: str | None = None
        self.rows_written = 0
        self.dest, self.name, self.format, self._compress = _destination(dest, format)
        self._stdout = self.dest is None
        meta = _decode_meta(schema.metadata)
        meta.update(_decode_meta(metadata))
        meta.update(_decode_meta(provenance))
        self.metadata = meta
        self.schema = schema_with_units(schema).with_metadata(
            {k.encode(): v.encode() for k, v in meta.items()} or None
        )
        _check_sink(self.format, self.schema, self.name)
        if self._stdout:
            self._tmp = _tempfile(None, "pz-stdout")
        else:
            base = os.path.basename(self.dest)
            try:
                self._tmp = _tempfile(os.path.dirname(os.path.abspath(self.dest)), base)
            except OSError as exc:
                raise TableError(f"{self.dest}: cannot write ({_first_line(exc)})") from None
        self._cleanup = weakref.finalize(self, _remove, self._tmp)
        self._rg_rows = max(1, min(MAX_ROW_GROUP_ROWS, ROW_GROUP_BYTES // _row_bytes(self.schema)))
        self._sink: Any = _make_sink(
            self.format, self._tmp, self.schema, self.metadata, self.name, self._rg_rows
        )

    # ------------------------------------------------------------------ writing

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        """Append rows (columns matched by name; compatible types cast to the schema)."""
        if self._closed:
            raise ValueError("write to a closed TableWriter")
        try:
            self._write(_conform(data, self.schema, self.name))
        except BrokenPipeError:
            raise
        except OSError as exc:  # disk full, quota, I/O error: the user can fix those
            raise TableError(f"{self.name}: cannot write ({_first_line(exc)})") from None

    def _write(self, data: pa.RecordBatch | pa.Table) -> None:
        if isinstance(data, pa.Table):
            batches = data.to_batches(max_chunksize=self._rg_rows)
        else:
            batches = [data]
        for batch in batches:
            if batch.num_rows == 0:
                continue
            self._sink.write(batch, self.rows_written)
            self.rows_written += batch.num_rows

    # ------------------------------------------------------------------ commit / abort

    def close(self) -> None:
        """Finish and commit (rename into place, or flush stdout)."""
        if self._closed:
            return
        try:
            try:
                self._commit()
            except BrokenPipeError:
                raise
            except OSError as exc:  # disk full, quota, a folder in the way...
                raise TableError(f"{self.name}: cannot write ({_first_line(exc)})") from None
        except BaseException:
            self.abort()
            raise

    def _commit(self) -> None:
        self._sink.finish()
        self._sink = None
        self._closed = True
        if self._stdout:
            sys.stdout.flush()
            with open(self._tmp, "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer, _CHUNK)
            sys.stdout.buffer.flush()
            _remove(self._tmp)
        else:
            src = self._tmp
            if self._compress:
                src = self._compressed_copy()
                _remove(self._tmp)
                self._tmp = src
            _chmod_default(src)
            os.replace(src, self.dest)
        self._tmp = None

    def _compressed_copy(self) -> str:
        out = _tempfile(
            os.path.dirname(os.path.abspath(self.dest)), os.path.basename(self.dest), ".tmpz"
        )
        opener = gzip.open if self._compress == "gzip" else bz2.open
        try:
            with open(self._tmp, "rb") as fin, opener(out, "wb") as fout:
                shutil.copyfileobj(fin, fout, _CHUNK)
        except BaseException:
            _remove(out)
            raise
        return out

    def abort(self) -> None:
        """Remove the temporary file; the destination is left as it was."""
        self._closed = True
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.abort()
        _remove(self._tmp)
        self._tmp = None

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_table(
    table: pa.Table,
    dest: Source,
    format: str | None = None,
    metadata: dict[str, str] | None = None,
    provenance: dict[str, str] | None = None,
) -> None:
    """Write a whole table (atomically where `dest` is a path)."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    with TableWriter(
        dest, table.schema, format=format, metadata=metadata, provenance=provenance
    ) as writer:
        writer.write(table)
