"""Table I/O shared by every command: FITS and Parquet (and CSV/ECSV/VOTable for image-less
tables), paths or stdin/stdout, streaming in bounded record batches, atomic writes, units and
provenance metadata.

The in-memory exchange format is Arrow: a reader yields ``pyarrow.RecordBatch`` objects; a cell of
two or more dimensions (the (64, 64, 5) ``image``) is Arrow's canonical fixed-shape tensor
extension type, a 1-D vector cell (the 180-float ``pdf``, ``n_frames``) a fixed-size list. Use
:func:`column_array` to get any column as an (n, ...) numpy array and :func:`to_arrow` to build
one back from numpy.

File-level metadata is a ``dict[str, str]`` (bin edges, provenance...): Parquet key-value
metadata, FITS header keywords (HIERARCH + long strings) of the table HDU, plus HISTORY lines
carrying the provenance. Units are field metadata ``{"unit": "deg"}`` in Arrow and TUNITn in FITS.

API CONTRACT (other modules are written against it; do not change signatures without need):

    open_table(source, columns=None, batch_rows=None, name=None) -> TableReader
    read_table(source, columns=None) -> pyarrow.Table
    TableWriter(dest, schema, format=None, metadata=None, provenance=None)
        .write(batch_or_table); .close() commits; used as a context manager it aborts on error
    write_table(table, dest, format=None, metadata=None, provenance=None) -> None
    column_array(batch_or_table, name) -> np.ndarray
    to_arrow(array: np.ndarray) -> pyarrow.Array
    require_columns(reader_or_schema, names, what=...) -> None
    find_id_column(names, requested=None) -> str | None
    check_finite(batch, columns, where, drop_option) -> None
    provenance_metadata(command_line, inputs, model_hash=None) -> dict[str, str]
    BIN_EDGES_KEY, PROVENANCE_KEYS
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from os import PathLike
from typing import TYPE_CHECKING, Any

from photoz_tools.errors import PzError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

Source = str | PathLike | None
DEFAULT_BATCH_ROWS = 4096

# metadata keys written by the commands
BIN_EDGES_KEY = "pz_bin_edges"  # JSON list of floats, or "linspace(0,0.4,181)"-free: always a JSON list
PROVENANCE_KEYS = ("pz_tool_version", "pz_command", "pz_inputs", "pz_model_hash", "pz_created")

# units for the column names the toolkit knows; used when writing FITS/Parquet
KNOWN_UNITS = {"ra": "deg", "dec": "deg", "image": "nanomaggy"}


class TableError(PzError):
    """Unreadable, malformed or inconsistent table input (message names file/column/row)."""


class TableReader:
    """An open table: schema and row count known up front, rows read lazily in batches.

    Attributes
    ----------
    name : str         how to call the input in messages ("stdin" or the path)
    format : str       "fits", "parquet", "csv", "ecsv" or "votable"
    schema : pa.Schema Arrow schema of the selected columns (with field metadata: units)
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

    def iter_batches(
        self, batch_rows: int | None = None, columns: Sequence[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Yield record batches of at most `batch_rows` rows; memory bounded by the batch."""
        raise NotImplementedError

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """The whole table (or the selected columns) in memory: for small tables only."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> TableReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


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
    raise NotImplementedError


def read_table(source: Source, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a whole (small) table; metadata in ``table.schema.metadata`` (bytes keys)."""
    raise NotImplementedError


class TableWriter:
    """Append record batches to a FITS/Parquet/... table at a path (atomic: temp file in the same
    folder, renamed on close) or on stdout ('-' or None; format from `format`, default parquet).

    Used as a context manager, an exception inside the block removes the temporary file so
    nothing half-written is left behind.
    """

    def __init__(
        self,
        dest: Source,
        schema: pa.Schema,
        format: str | None = None,
        metadata: dict[str, str] | None = None,
        provenance: dict[str, str] | None = None,
    ) -> None:
        raise NotImplementedError

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish and commit (rename into place, or flush stdout)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Remove the temporary file; the destination is left as it was."""
        raise NotImplementedError

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
    raise NotImplementedError


def column_array(data: pa.RecordBatch | pa.Table, name: str) -> np.ndarray:
    """Column `name` as a numpy array of shape (n,) or (n, *cell_shape), zero-copy where possible.
    Nulls in scalar float columns become NaN."""
    raise NotImplementedError


def to_arrow(array: np.ndarray) -> pa.Array:
    """numpy -> Arrow: (n,) plain, (n, k) fixed-size list, (n, a, b, ...) fixed-shape tensor."""
    raise NotImplementedError


def require_columns(where: TableReader | pa.Schema, names: Iterable[str], what: str = "") -> None:
    """TableError "FILE: no column 'z' (columns: a, b, ...)" for the first missing name."""
    raise NotImplementedError


def find_id_column(names: Sequence[str], requested: str | None = None) -> str | None:
    """`requested` (case-insensitive) or the first of objID, specObjID, id present; None if none."""
    raise NotImplementedError


def check_finite(batch: pa.RecordBatch, columns: Sequence[str], where: str,
                 drop_option: str, row_offset: int = 0) -> None:
    """TableError naming the column, the count of NaN/inf rows and the option that drops them."""
    raise NotImplementedError


def provenance_metadata(
    command_line: str, inputs: Sequence[str], model_hash: str | None = None
) -> dict[str, str]:
    """The provenance keys (tool version, command line, inputs, model hash, UTC time)."""
    raise NotImplementedError
