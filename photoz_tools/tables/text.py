"""CSV, ECSV and VOTable through astropy, for image-less tables (TOPCAT's formats): the reader
(whole tables: these are small) and the writer's sinks (CSV appended batch by batch, ECSV and
VOTable written whole on close)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from photoz_tools.tables.arrow import (
    _cell_shape,
    _decode_meta,
    _shape_text,
    _unit,
    column_array,
    to_arrow,
)
from photoz_tools.tables.base import TableReader
from photoz_tools.tables.common import TableError, _first_line


class _AstropyReader(TableReader):
    """CSV/ECSV/VOTable through astropy: read whole (these are small, image-less tables)."""

    def __init__(self, name, path, temps, columns, batch_rows, fmt) -> None:
        super().__init__(name, path, temps, batch_rows)
        self.format = fmt
        try:
            table = _astropy_read(path, fmt, name)
            self._table = _astropy_to_arrow(table)
        except BaseException:
            self.close()
            raise
        self._file_schema = self._table.schema
        self.num_rows = self._table.num_rows
        self.metadata = _decode_meta(self._table.schema.metadata)
        try:
            self._select(columns)
        except BaseException:
            self.close()
            raise

    def _iter(self, rows, cols, schema):
        table = self._table.select(cols)
        for batch in table.to_batches(max_chunksize=rows):
            yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)


def _astropy_read(path: str, fmt: str, name: str):
    import warnings

    from astropy.table import Table

    astropy_format = {"csv": "ascii.csv", "ecsv": "ascii.ecsv", "votable": "votable"}[fmt]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Table.read(path, format=astropy_format)
    except Exception as exc:
        raise TableError(
            f"{name}: not a readable {fmt.upper()} table: {_first_line(exc)}"
        ) from None


def _astropy_to_arrow(table) -> pa.Table:
    arrays, fields = [], []
    for col in table.itercols():
        data = col.data if not hasattr(col, "mask") else np.ma.MaskedArray(col.data, col.mask)
        if data.dtype.kind == "O":
            data = np.asarray([str(x) for x in data])
        arr = to_arrow(data)
        meta = {b"unit": str(col.unit).encode()} if col.unit is not None else None
        fields.append(pa.field(col.name, arr.type, metadata=meta))
        arrays.append(arr)
    meta = {}
    for k, v in table.meta.items():
        if k in ("comments",):
            continue
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v, default=str)
    schema = pa.schema(fields, metadata={k.encode(): v.encode() for k, v in meta.items()} or None)
    return pa.Table.from_arrays(arrays, schema=schema)


def _arrow_to_astropy(table: pa.Table):
    from astropy.table import Column, MaskedColumn, Table

    cols = []
    for f in table.schema:
        values = column_array(table, f.name)
        nulls = table.column(f.name).null_count
        unit = _unit(f) or None
        if nulls and values.ndim == 1:
            mask = table.column(f.name).is_null().to_numpy(zero_copy_only=False)
            cols.append(MaskedColumn(values, name=f.name, mask=mask, unit=unit))
        else:
            cols.append(Column(values, name=f.name, unit=unit))
    meta = _decode_meta(table.schema.metadata)
    return Table(cols, meta=meta)


def _astropy_write(table: pa.Table, path: str, fmt: str, name: str) -> None:
    import warnings

    astropy_format = {"ecsv": "ascii.ecsv", "votable": "votable"}[fmt]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _arrow_to_astropy(table).write(path, format=astropy_format, overwrite=True)
    except Exception as exc:
        raise TableError(f"{name}: cannot write {fmt.upper()}: {_first_line(exc)}") from None


def _check_cells(schema: pa.Schema, name: str, fmt: str) -> None:
    for f in schema:
        shape, _ = _cell_shape(f.type)
        if len(shape) >= 2 or (shape and fmt == "csv"):
            raise TableError(
                f"{name}: column '{f.name}' holds {_shape_text(shape)} cells, which "
                f"{fmt.upper()} cannot store; write FITS or Parquet, or drop the "
                "column"
            )


class CsvSink:
    """A TableWriter's CSV output: the header with the first batch, then rows appended."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self._started = False

    @staticmethod
    def check(schema: pa.Schema, name: str) -> None:
        """TableError for a column of vector or image cells (CSV holds scalars only)."""
        _check_cells(schema, name, "csv")

    def write(self, batch: pa.RecordBatch, offset: int) -> None:
        table = _arrow_to_astropy(pa.Table.from_batches([batch]))
        with open(self.path, "a", newline="") as f:
            if not self._started:
                table.write(f, format="ascii.csv")
                self._started = True
            else:
                table.write(f, format="ascii.no_header", delimiter=",")

    def finish(self) -> None:
        """No rows: the header alone."""
        if not self._started:
            with open(self.path, "w") as f:
                f.write(",".join(self.schema.names) + "\n")

    def abort(self) -> None:
        pass


class AstropySink:
    """A TableWriter's ECSV or VOTable output: batches kept, the table written on close."""

    def __init__(self, path: str, schema: pa.Schema, fmt: str, name: str) -> None:
        self.path = path
        self.schema = schema
        self.format = fmt
        self.name = name
        self._pending: list[pa.RecordBatch] = []

    @staticmethod
    def check(schema: pa.Schema, name: str, fmt: str) -> None:
        """TableError for a column of image cells (vectors are fine)."""
        _check_cells(schema, name, fmt)

    def write(self, batch: pa.RecordBatch, offset: int) -> None:
        self._pending.append(batch)

    def finish(self) -> None:
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        self._pending = []
        _astropy_write(table, self.path, self.format, self.name)

    def abort(self) -> None:
        self._pending = []
