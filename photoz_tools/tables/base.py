"""The reader every format shares (:class:`TableReader`: schema and row count up front, rows in
bounded batches) and the column check it and the commands use (:func:`require_columns`)."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from photoz_tools.tables.arrow import _row_bytes
from photoz_tools.tables.common import TableError, _remove_all

DEFAULT_BATCH_ROWS = 4096
# a default batch never holds more than this many bytes (4096 images would be 335 MB)
DEFAULT_BATCH_BYTES = 64 * 2**20


class TableReader:
    """An open table: schema and row count known up front, rows read lazily in batches.

    Attributes
    ----------
    name : str         how to call the input in messages ("stdin" or the path)
    format : str       "fits", "parquet", "csv", "ecsv" or "votable"
    schema : pa.Schema Arrow schema of the selected columns (with field metadata: units;
                       the file metadata as schema metadata, so a writer given it carries it on)
    column_names : list[str]   all columns in the file (not only the selected ones)
    num_rows : int
    metadata : dict[str, str]  file-level metadata (bin edges, provenance, ...)
    """

    name: str
    format: str
    schema: pa.Schema
    column_names: list[str]
    num_rows: int
    metadata: dict[str, str]

    def __init__(self, name: str, path: str, temps: list[str], batch_rows: int | None) -> None:
        self.name = name
        self.path = path
        self.batch_rows = batch_rows
        self._temps = list(temps)
        self._cleanup = weakref.finalize(self, _remove_all, list(temps))
        self._file_schema: pa.Schema = pa.schema([])
        self.columns: list[str] = []

    # subclasses fill _file_schema (all columns), then call _select
    def _select(self, columns: Sequence[str] | None) -> None:
        self.column_names = list(self._file_schema.names)
        self.columns = self._check_columns(columns)
        meta = {k.encode(): v.encode() for k, v in self.metadata.items()}
        fields = [self._file_schema.field(c) for c in self.columns]
        self.schema = pa.schema(fields, metadata=meta or None)

    def _check_columns(self, columns: Sequence[str] | None) -> list[str]:
        if columns is None:
            return list(self.column_names)
        if isinstance(columns, str):
            columns = [columns]
        require_columns(self._file_schema, columns, name=self.name)
        return list(dict.fromkeys(columns))

    def _default_batch_rows(self, columns: Sequence[str]) -> int:
        row_bytes = _row_bytes(pa.schema([self._file_schema.field(c) for c in columns]))
        return max(1, min(DEFAULT_BATCH_ROWS, DEFAULT_BATCH_BYTES // max(row_bytes, 1)))

    def iter_batches(
        self,
        batch_rows: int | None = None,
        columns: Sequence[str] | None = None,
        with_offset: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        """Yield record batches of at most `batch_rows` rows; memory bounded by the batch.

        By default a batch holds at most 4096 rows and about 64 MB (~800 images). Parquet is
        decoded a row group at a time (pyarrow cannot do less): files written here have ~16 MB
        groups; a foreign file costs its largest group.
        With ``with_offset=True`` yield ``(first_row, batch)`` pairs, for messages naming rows.
        """
        cols = self.columns if columns is None else self._check_columns(columns)
        rows = batch_rows or self.batch_rows or self._default_batch_rows(cols)
        if rows < 1:
            raise ValueError("batch_rows must be >= 1")
        schema = pa.schema(
            [
                self.schema.field(c) if c in self.schema.names else self._file_schema.field(c)
                for c in cols
            ],
            metadata=self.schema.metadata,
        )
        offset = 0
        for batch in self._iter(rows, cols, schema):
            yield (offset, batch) if with_offset else batch
            offset += batch.num_rows

    def _iter(self, rows: int, cols: list[str], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole table (or the selected columns) in memory: for small tables only."""
        cols = self.columns if columns is None else self._check_columns(columns)
        schema = pa.schema(
            [self._file_schema.field(c) for c in cols], metadata=self.schema.metadata
        )
        batches = list(self.iter_batches(batch_rows=max(self.num_rows, 1), columns=cols))
        return pa.Table.from_batches(batches, schema=schema)

    def close(self) -> None:
        self._close_file()
        self._cleanup()

    def _close_file(self) -> None:
        pass

    def __enter__(self) -> TableReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<TableReader {self.format} {self.name!r} {self.num_rows} rows>"


def _where_name(where: TableReader | pa.Schema, name: str | None) -> str:
    if name:
        return name
    return getattr(where, "name", "") or ""


def _schema_of(where: TableReader | pa.Schema | pa.RecordBatch | pa.Table) -> pa.Schema:
    if isinstance(where, TableReader):
        return where._file_schema
    if isinstance(where, pa.Schema):
        return where
    return where.schema


def require_columns(
    where: TableReader | pa.Schema, names: Iterable[str], what: str = "", name: str | None = None
) -> None:
    """TableError "FILE: no column 'z' (columns: a, b, ...)" for the first missing name.

    `name` (or the reader's name) is the FILE; `what` says what the column is for, e.g.
    "the --truth column": "FILE: no column 'z' (the --truth column; columns: a, b)". With a
    bare schema and no `name`, `what` stands in for FILE. A column that differs only in case
    is suggested ("did you mean 'Z'?").
    """
    schema = _schema_of(where)
    present = list(schema.names)
    for col in [names] if isinstance(names, str) else names:
        if col in present:
            continue
        file = _where_name(where, name)
        purpose = what
        if not file and what:
            file, purpose = what, ""
        near = [c for c in present if c.lower() == col.lower()]
        hint = f"; did you mean '{near[0]}'?" if near else ""
        prefix = f"{file}: " if file else ""
        about = f"{purpose}; " if purpose else ""
        raise TableError(
            f"{prefix}no column '{col}'{hint} ({about}columns: {_list_names(present)})"
        )


def _list_names(names: Sequence[str], limit: int = 40) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"
