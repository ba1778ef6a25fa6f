"""Parquet: the streaming reader (a row group at a time) and the writer's sink (row groups of
bounded bytes, dictionaries and statistics only where they pay)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from photoz_tools.tables.arrow import _cell_shape, _decode_meta
from photoz_tools.tables.base import TableReader
from photoz_tools.tables.common import TableError, _first_line

if TYPE_CHECKING:
    import pyarrow.parquet as pq


class _ParquetReader(TableReader):
    format = "parquet"

    def __init__(self, name, path, temps, columns, batch_rows) -> None:
        super().__init__(name, path, temps, batch_rows)
        import pyarrow.parquet as pq

        try:
            # buffer_size: stream column chunks page by page instead of reading each whole
            # chunk into memory (files from elsewhere may have 1 GB row groups)
            self._pf: pq.ParquetFile = pq.ParquetFile(path, buffer_size=1 << 20)
            self._file_schema = self._pf.schema_arrow
        except (pa.ArrowException, OSError, ValueError) as exc:
            self.close()
            raise TableError(
                f"{name}: not a readable Parquet file (truncated or corrupted?): {_first_line(exc)}"
            ) from None
        self.num_rows = self._pf.metadata.num_rows
        self.metadata = _decode_meta(self._file_schema.metadata)
        try:
            self._select(columns)
        except BaseException:
            self.close()
            raise

    def _iter(self, rows, cols, schema):
        offset = 0
        meta = self._pf.metadata
        for group in range(meta.num_row_groups):
            if meta.row_group(group).num_rows == 0:
                continue
            # A fresh reader per row group: one reader over all groups (pyarrow 26) keeps the
            # buffers of every group it has read, so RSS grew with the table (measured: 900 MB
            # for 10^6 predictions rows, 130 MB this way). One thread: decoding columns in
            # parallel holds several chunks at once, for little speed on 2 cores.
            it = self._pf.iter_batches(
                batch_size=rows, columns=cols, row_groups=[group], use_threads=False
            )
            while True:
                try:
                    batch = next(it)
                except StopIteration:
                    break
                except (pa.ArrowException, OSError) as exc:
                    raise TableError(
                        f"{self.name}: corrupted Parquet data after row {offset} "
                        f"({_first_line(exc)})"
                    ) from None
                offset += batch.num_rows
                yield pa.RecordBatch.from_arrays(batch.columns, schema=schema)
            del it

    def _close_file(self) -> None:
        pf = getattr(self, "_pf", None)
        if pf is not None:
            try:
                pf.close()
            except Exception:
                pass


class ParquetSink:
    """A TableWriter's Parquet output: batches gathered into row groups of `rg_rows` rows."""

    def __init__(self, path: str, schema: pa.Schema, rg_rows: int) -> None:
        self.path = path
        self.schema = schema
        self.rg_rows = rg_rows
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0

    @staticmethod
    def check(schema: pa.Schema, name: str) -> None:
        """Parquet holds every column type the toolkit makes."""

    def write(self, batch: pa.RecordBatch, offset: int) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self.rg_rows:
            self._flush()

    def _flush(self, final: bool = False) -> None:
        if self._writer is None:
            self._writer = _parquet_writer(self.path, self.schema)
        while self._pending_rows >= self.rg_rows or (final and self._pending_rows):
            table = pa.Table.from_batches(self._pending, schema=self.schema)
            take = min(self.rg_rows, table.num_rows)
            self._writer.write_table(table.slice(0, take), row_group_size=take)
            rest = table.slice(take)
            self._pending = rest.to_batches() if rest.num_rows else []
            self._pending_rows = rest.num_rows

    def finish(self) -> None:
        """Write what is pending and close (no rows: still a valid file with the schema)."""
        self._flush(final=True)
        self._writer.close()
        self._writer = None

    def abort(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception:
                pass
        self._pending = []


def _parquet_writer(path: str, schema: pa.Schema) -> pq.ParquetWriter:
    """Snappy; dictionary encoding and statistics only where they pay (measured: trying a
    dictionary on float columns doubled the write time of a predictions table)."""
    import pyarrow.parquet as pq

    small = []
    for f in schema:
        t = f.type
        if (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_dictionary(t)
            or pa.types.is_boolean(t)
            or (pa.types.is_integer(t) and t.bit_width <= 16)
        ):
            small.append(f.name)
        elif (pa.types.is_list(t) or pa.types.is_fixed_size_list(t)) and (
            pa.types.is_integer(t.value_type) and t.value_type.bit_width <= 16
        ):
            # packed PDFs (uint8 codes): 122 -> 46 bytes a row (benchmarks/pdf_packing.md)
            small.append(f"{f.name}.list.element")
    scalars = [f.name for f in schema if not _cell_shape(f.type)[0]]
    return pq.ParquetWriter(
        path, schema, compression="snappy", use_dictionary=small, write_statistics=scalars
    )
