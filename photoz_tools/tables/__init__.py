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

Additions beyond the contract (all optional to use):

    check_cell(where, name, shape, dtypes, what="") -> tuple[int, ...]   image/pdf cell checks
    check_unique_ids(values, column, where) -> None                      duplicate ids
    finite_rows(batch, columns) -> np.ndarray[bool]                      rows to keep for a drop
    detect_format(path) -> str | None                                    format from the name
    schema_with_units(schema) -> pa.Schema                               KNOWN_UNITS filled in
    TableReader.iter_batches(..., with_offset=False)                     (offset, batch) pairs

The package, from the bottom up: :mod:`.common` (errors, formats, temporary files, provenance),
:mod:`.arrow` (Arrow <-> numpy), :mod:`.base` (TableReader, require_columns), :mod:`.checks`,
one module per format family with its reader and its writer's sink (:mod:`.parquet`,
:mod:`.fits`, :mod:`.text` for CSV/ECSV/VOTable), then :mod:`.reading` (open_table, read_table)
and :mod:`.writing` (TableWriter, write_table; its ROW_GROUP_BYTES sizes Parquet row groups).
"""

from __future__ import annotations

from photoz_tools.tables.arrow import column_array, schema_with_units, to_arrow
from photoz_tools.tables.base import (
    DEFAULT_BATCH_BYTES,
    DEFAULT_BATCH_ROWS,
    TableReader,
    require_columns,
)
from photoz_tools.tables.checks import (
    check_cell,
    check_finite,
    check_unique_ids,
    find_id_column,
    finite_rows,
)
from photoz_tools.tables.common import (
    BIN_EDGES_KEY,
    FORMATS,
    KNOWN_UNITS,
    PROVENANCE_KEYS,
    Source,
    TableError,
    detect_format,
    provenance_metadata,
)
from photoz_tools.tables.reading import open_table, read_table
from photoz_tools.tables.writing import (
    MAX_ROW_GROUP_ROWS,
    ROW_GROUP_BYTES,
    TableWriter,
    write_table,
)

__all__ = [
    "BIN_EDGES_KEY",
    "DEFAULT_BATCH_BYTES",
    "DEFAULT_BATCH_ROWS",
    "FORMATS",
    "KNOWN_UNITS",
    "MAX_ROW_GROUP_ROWS",
    "PROVENANCE_KEYS",
    "ROW_GROUP_BYTES",
    "Source",
    "TableError",
    "TableReader",
    "TableWriter",
    "check_cell",
    "check_finite",
    "check_unique_ids",
    "column_array",
    "detect_format",
    "find_id_column",
    "finite_rows",
    "open_table",
    "provenance_metadata",
    "read_table",
    "require_columns",
    "schema_with_units",
    "to_arrow",
    "write_table",
]
