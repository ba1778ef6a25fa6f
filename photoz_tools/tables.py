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
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from photoz_tools.errors import PzError

if TYPE_CHECKING:
    import pyarrow.parquet as pq

Source = str | PathLike | None
DEFAULT_BATCH_ROWS = 4096
# a default batch never holds more than this many bytes (4096 images would be 335 MB)
DEFAULT_BATCH_BYTES = 64 * 2**20
# Parquet row groups hold about this many bytes, so that streaming readers stay bounded
ROW_GROUP_BYTES = 16 * 2**20
MAX_ROW_GROUP_ROWS = 1 << 17
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
_FITS_KEYS_MAP = "PZKEYS"  # JSON list of the metadata keys as given (FITS upper-cases them)
_FITS_META_JSON = "PZMETA"  # JSON dict of the metadata that keywords cannot hold exactly
_FITS_STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|EXTEND|EXTNAME|EXTVER|EXTLEVEL|"
    r"THEAP|CHECKSUM|DATASUM|COMMENT|HISTORY|END|PZKEYS|PZMETA|"
    r"T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|DISP|BCOL|LMIN|LMAX|DMIN|DMAX|UCD|COMM)\d+)$"
)
_DROP_META = {"ARROW:schema", "pandas"}


class TableError(PzError):
    """Unreadable, malformed or inconsistent table input (message names file/column/row)."""


# --------------------------------------------------------------------------- helpers


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


def _tempfile(folder: str | None, stem: str, suffix: str = ".tmp") -> str:
    fd, path = tempfile.mkstemp(dir=folder, prefix=f".{stem}.", suffix=suffix)
    os.close(fd)
    return path


def _remove(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


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


# --------------------------------------------------------------------------- Arrow <-> numpy


def _cell_shape(t: pa.DataType) -> tuple[tuple[int, ...], pa.DataType]:
    """(cell shape, scalar value type) of an Arrow column type; () for scalar columns."""
    if isinstance(t, pa.FixedShapeTensorType):
        return tuple(int(s) for s in t.shape), t.value_type
    if pa.types.is_fixed_size_list(t):
        inner, vt = _cell_shape(t.value_type)
        return (t.list_size, *inner), vt
    return (), t


def _chunk(data: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
    if name not in data.schema.names:
        raise TableError(f"no column '{name}' (columns: {', '.join(data.schema.names)})")
    col = data.column(name)
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        if col.num_chunks == 0:
            t = col.type
            if isinstance(t, pa.BaseExtensionType):
                return pa.ExtensionArray.from_storage(t, pa.array([], type=t.storage_type))
            return pa.array([], type=t)
        return col.combine_chunks()
    return col


def _values_numpy(arr: pa.Array) -> np.ndarray:
    """Scalar Arrow array -> numpy; float nulls -> NaN; strings -> numpy str."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_floating(t) and arr.null_count == 0:
        return arr.to_numpy(zero_copy_only=False)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return np.asarray(arr.fill_null("").to_numpy(zero_copy_only=False).astype(str))
    if pa.types.is_boolean(t):
        return arr.fill_null(False).to_numpy(zero_copy_only=False)
    return arr.to_numpy(zero_copy_only=False)


def column_array(data: pa.RecordBatch | pa.Table, name: str) -> np.ndarray:
    """Column `name` as a numpy array of shape (n,) or (n, *cell_shape), zero-copy where possible.
    Nulls in scalar float columns become NaN."""
    arr = _chunk(data, name)
    shape, vt = _cell_shape(arr.type)
    n = len(arr)
    if not shape:
        if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            return _equal_lists(arr, name)
        return _values_numpy(arr)
    if isinstance(arr.type, pa.FixedShapeTensorType):
        if arr.type.permutation and list(arr.type.permutation) != sorted(arr.type.permutation):
            return arr.to_numpy_ndarray()  # a non-trivial layout: let Arrow apply it
        storage = arr.storage
    else:
        storage = arr
    flat = storage
    while pa.types.is_fixed_size_list(flat.type):
        # .values sliced by hand: flatten() drops the slots of null cells (a flagged pdf row)
        k = flat.type.list_size
        flat = flat.values.slice(flat.offset * k, len(flat) * k)
    values = _values_numpy(flat).reshape((n, *shape))
    if storage.null_count:
        values = values.astype(np.result_type(values.dtype, np.float32))  # a copy, with NaN
        values[storage.is_null().to_numpy(zero_copy_only=False)] = np.nan
    return values


def _equal_lists(arr: pa.Array, name: str) -> np.ndarray:
    """A variable-length list column (pandas writes those) whose cells all have one length."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if len(arr) and (arr.null_count or (lengths != lengths[0]).any()):
        raise TableError(
            f"column '{name}' holds lists of differing lengths (or nulls); "
            "expected one length in every row"
        )
    k = int(lengths[0]) if len(arr) else 0
    return _values_numpy(arr.flatten()).reshape((len(arr), k))


def to_arrow(array: np.ndarray) -> pa.Array:
    """numpy -> Arrow: (n,) plain, (n, k) fixed-size list, (n, a, b, ...) fixed-shape tensor."""
    if isinstance(array, pa.Array | pa.ChunkedArray):
        return array
    mask = None
    if np.ma.isMaskedArray(array):
        mask = np.ma.getmaskarray(array)
        array = np.ma.getdata(array)
    array = np.asarray(array)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.ndim <= 1:
        if array.dtype.kind == "S":
            array = np.char.decode(array, "utf-8")
        if array.dtype.kind == "U":
            return pa.array(array.tolist(), type=pa.string(), mask=mask)
        return pa.array(array, mask=mask)
    array = np.ascontiguousarray(array)
    if array.ndim == 2:
        values = pa.array(array.reshape(-1))
        return pa.FixedSizeListArray.from_arrays(values, array.shape[1])
    # built from its storage: from_numpy_ndarray refuses zero rows (a batch all dropped)
    cell = int(np.prod(array.shape[1:], dtype=np.int64))
    values = pa.array(array.reshape(-1))
    storage = pa.FixedSizeListArray.from_arrays(values, cell)
    kind = pa.fixed_shape_tensor(values.type, list(array.shape[1:]))
    return pa.ExtensionArray.from_storage(kind, storage)


def _batch_from_numpy(columns: dict[str, np.ndarray], schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for field in schema:
        arr = to_arrow(columns[field.name])
        if arr.type != field.type:
            arr = _cast(arr, field.type)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _cast(arr: pa.Array, t: pa.DataType) -> pa.Array:
    if isinstance(t, pa.FixedShapeTensorType):
        storage = arr.storage if isinstance(arr.type, pa.BaseExtensionType) else arr
        return pa.ExtensionArray.from_storage(t, storage.cast(t.storage_type))
    return arr.cast(t)


def schema_with_units(schema: pa.Schema) -> pa.Schema:
    """The schema with KNOWN_UNITS filled in as field metadata where a field has no unit."""
    fields = []
    for f in schema:
        meta = dict(f.metadata or {})
        if b"unit" not in meta and f.name.lower() in KNOWN_UNITS:
            meta[b"unit"] = KNOWN_UNITS[f.name.lower()].encode()
            f = f.with_metadata(meta)
        fields.append(f)
    return pa.schema(fields, metadata=schema.metadata)


def _unit(field: pa.Field) -> str:
    return ((field.metadata or {}).get(b"unit") or b"").decode()


def _decode_meta(meta: dict | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (meta or {}).items():
        key = k.decode() if isinstance(k, bytes) else str(k)
        if key in _DROP_META:
            continue
        out[key] = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return out


# --------------------------------------------------------------------------- readers


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


def _remove_all(paths: list[str]) -> None:
    for p in paths:
        _remove(p)


def _row_bytes(schema: pa.Schema) -> int:
    total = 0
    for f in schema:
        shape, vt = _cell_shape(f.type)
        try:
            width = vt.bit_width // 8 or 1
        except ValueError:
            width = 16  # strings and other variable-width values: a guess
        total += width * int(np.prod(shape, dtype=np.int64)) if shape else width
    return max(total, 1)


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


class _FitsReader(TableReader):
    format = "fits"

    def __init__(self, name, path, temps, columns, batch_rows) -> None:
        super().__init__(name, path, temps, batch_rows)
        import fitsio

        self._fits = None
        try:
            with open(path, "rb") as f:
                head = f.read(9)
            if head != b"SIMPLE  =":
                raise TableError(
                    f"{name}: not a FITS file (it starts with {_describe_head(head)}, "
                    "not 'SIMPLE  =')"
                )
            try:
                self._fits = fitsio.FITS(path, "r")
                hdus = list(self._fits)
            except (OSError, ValueError, RuntimeError) as exc:
                raise TableError(
                    f"{name}: not a readable FITS file (truncated or corrupted?): "
                    f"{_first_line(exc)}"
                ) from None
            tables = [h for h in hdus if h.get_exttype() in ("BINARY_TBL", "ASCII_TBL")]
            if not tables:
                raise TableError(
                    f"{name}: no table HDU in this FITS file "
                    f"({_describe_hdus(hdus)}); pz-* tools read FITS binary tables"
                )
            self._hdu = tables[0]
            if hasattr(self._hdu, "_maybe_decode_fits_ascii_strings_to_unicode_py3"):
                # keep strings as bytes: we decode UTF-8 ourselves (fitsio's ASCII decode fails
                # on any non-ASCII byte, and is slower)
                self._hdu._maybe_decode_fits_ascii_strings_to_unicode_py3 = lambda array: array
            size = os.path.getsize(path)
            need = self._hdu.get_offsets()["data_end"]
            if need > size:
                raise TableError(
                    f"{name}: truncated FITS file: the table HDU needs {need} bytes, "
                    f"the file has {size}"
                )
            self.num_rows = int(self._hdu.get_nrows())
            header = self._hdu.read_header()
            self._file_schema, self._tnull = _fits_schema(self._hdu, header)
            self.metadata = _fits_metadata(header)
            self._select(columns)
        except BaseException:
            self.close()
            raise

    def _iter(self, rows, cols, schema):
        all_cols = cols == self.column_names
        for start in range(0, self.num_rows, rows):
            stop = min(start + rows, self.num_rows)
            try:
                data = self._hdu[start:stop] if all_cols else self._hdu[cols][start:stop]
            except (OSError, ValueError, RuntimeError) as exc:
                raise TableError(
                    f"{self.name}: cannot read rows {start}-{stop - 1} ({_first_line(exc)})"
                ) from None
            yield _fits_to_batch(data, cols, schema, self._tnull)

    def _close_file(self) -> None:
        if getattr(self, "_fits", None) is not None:
            try:
                self._fits.close()
            except Exception:
                pass
            self._fits = None


def _describe_hdus(hdus) -> str:
    parts = []
    for i, h in enumerate(hdus):
        info = h.get_info()
        dims = info.get("dims") or []
        kind = h.get_exttype().replace("_HDU", "").lower()
        if dims:
            parts.append(f"HDU {i}: {kind} {'x'.join(str(d) for d in dims)}")
        else:
            parts.append(f"HDU {i}: empty {kind}")
    return "; ".join(parts)


def _fits_schema(hdu, header) -> tuple[pa.Schema, dict[str, int]]:
    """Arrow schema of a FITS table HDU (TDIM shapes, TUNIT units), without reading data."""
    dtype = hdu.get_rec_dtype()[0]
    names = hdu.get_colnames()
    tnull: dict[str, int] = {}
    fields = []
    for i, name in enumerate(names, start=1):
        sub = dtype[name]
        base, shape = (sub.base, sub.shape) if sub.subdtype else (sub, ())
        if base.kind in "SU":
            t: pa.DataType = pa.string()
        elif base.kind == "O":
            t = pa.list_(pa.float64())  # variable-length arrays: rare; read as lists
        else:
            t = pa.from_numpy_dtype(base.newbyteorder("="))
        if len(shape) == 1 and base.kind not in "SU":
            t = pa.list_(t, shape[0])
        elif len(shape) >= 2 and base.kind not in "SU":
            t = pa.fixed_shape_tensor(t, list(shape))
        meta = {}
        unit = header.get(f"TUNIT{i}")
        if unit:
            meta[b"unit"] = str(unit).encode()
        if base.kind in "iu" and f"TNULL{i}" in header:
            tnull[name] = int(header[f"TNULL{i}"])
        fields.append(pa.field(name, t, metadata=meta or None))
    return pa.schema(fields), tnull


def _fits_metadata(header) -> dict[str, str]:
    """The non-structural keywords of a FITS header, with the original key case restored."""
    raw = {}
    for rec in header.records():
        key = rec.get("name")
        if not key or _FITS_STRUCTURAL.match(key):
            continue
        value = rec.get("value")
        raw[key] = "" if value is None else str(value)
    names = header.get(_FITS_KEYS_MAP)
    if names:
        try:
            original = {k.upper(): k for k in json.loads(names)}
        except (ValueError, TypeError, AttributeError):
            original = {}
        raw = {original.get(k, k): v for k, v in raw.items()}
    extra = header.get(_FITS_META_JSON)
    if extra:
        try:
            raw.update({str(k): str(v) for k, v in json.loads(extra).items()})
        except (ValueError, TypeError, AttributeError):
            raw[_FITS_META_JSON] = str(extra)
    return raw


def _fits_to_batch(
    data: np.ndarray, cols: list[str], schema: pa.Schema, tnull: dict[str, int]
) -> pa.RecordBatch:
    if data.dtype.names is None:  # fitsio gives a plain array for a single column
        data = {cols[0]: data}
    arrays = []
    for field in schema:
        a = data[field.name]
        if a.dtype.kind == "S":
            a = np.char.rstrip(np.char.decode(a, "utf-8", "replace"))
        elif a.dtype.kind == "U":
            a = np.char.rstrip(a)
        elif a.dtype.kind == "O":
            arrays.append(pa.array([np.asarray(x, "f8") for x in a], type=field.type))
            continue
        elif not a.dtype.isnative:
            a = a.astype(a.dtype.newbyteorder("="))
        if field.name in tnull and a.ndim == 1:
            a = np.ma.masked_equal(a, tnull[field.name])
        arr = to_arrow(a)
        if arr.type != field.type:
            arr = _cast(arr, field.type)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


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


# --------------------------------------------------------------------------- writers


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
        self._stdout = _is_stdio(dest)
        self._closed = False
        self._tmp: str | None = None
        self.rows_written = 0
        if self._stdout:
            self.name = "stdout"
            self.dest = None
            self.format = _normalise_format(format) or "parquet"
            if getattr(sys.stdout, "buffer", None) is None:
                raise TableError("stdout cannot take a binary table here; give an output path")
            if self.format in ("parquet", "fits") and _isatty(sys.stdout):
                raise TableError(
                    f"stdout is a terminal: refusing to print a binary {self.format} table "
                    "there; give -o FILE, pipe it on, or choose --format csv"
                )
            self._compress = None
        else:
            self.dest = os.fspath(dest)
            self.name = self.dest
            self.format = detect_format(self.dest) or _normalise_format(format)
            if self.format is None:
                raise TableError(
                    f"{self.dest}: cannot tell the output format from the extension "
                    "(use .fits, .fits.gz, .parquet, .csv, .ecsv or .vot)"
                )
            low = self.dest.lower()
            self._compress = next((k for e, k in _COMPRESSED.items() if low.endswith(e)), None)
            folder = os.path.dirname(os.path.abspath(self.dest))
            if not os.path.isdir(folder):
                raise TableError(f"{self.dest}: cannot write: folder {folder} does not exist")
        meta = _decode_meta(schema.metadata)
        meta.update(_decode_meta(metadata))
        meta.update(_decode_meta(provenance))
        self.metadata = meta
        self.schema = schema_with_units(schema).with_metadata(
            {k.encode(): v.encode() for k, v in meta.items()} or None
        )
        self._check_format_can_hold()
        if self._stdout:
            self._tmp = _tempfile(None, "pz-stdout")
        else:
            base = os.path.basename(self.dest)
            try:
                self._tmp = _tempfile(os.path.dirname(os.path.abspath(self.dest)), base)
            except OSError as exc:
                raise TableError(f"{self.dest}: cannot write ({_first_line(exc)})") from None
        self._cleanup = weakref.finalize(self, _remove, self._tmp)
        self._sink: Any = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._rg_rows = max(1, min(MAX_ROW_GROUP_ROWS, ROW_GROUP_BYTES // _row_bytes(self.schema)))

    # ------------------------------------------------------------------ format checks

    def _check_format_can_hold(self) -> None:
        if self.format in ("fits", "parquet"):
            if self.format == "fits":
                _fits_dtype(self.schema, None, self.name)  # raises for unsupported types
            return
        for f in self.schema:
            shape, _ = _cell_shape(f.type)
            if len(shape) >= 2 or (shape and self.format == "csv"):
                raise TableError(
                    f"{self.name}: column '{f.name}' holds {_shape_text(shape)} cells, which "
                    f"{self.format.upper()} cannot store; write FITS or Parquet, or drop the "
                    "column"
                )

    # ------------------------------------------------------------------ writing

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        """Append rows (columns matched by name; compatible types cast to the schema)."""
        if self._closed:
            raise ValueError("write to a closed TableWriter")
        try:
            self._write(self._conform(data))
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
            if self.format == "parquet":
                self._pending.append(batch)
                self._pending_rows += batch.num_rows
                if self._pending_rows >= self._rg_rows:
                    self._flush_parquet()
            elif self.format == "fits":
                self._write_fits(batch)
            elif self.format == "csv":
                self._write_csv(batch)
            else:
                self._pending.append(batch)
            self.rows_written += batch.num_rows

    def _conform(self, data):
        names = self.schema.names
        if data.schema.names != names:
            missing = [n for n in names if n not in data.schema.names]
            if missing:
                raise TableError(
                    f"{self.name}: data to write lacks column '{missing[0]}' of the "
                    f"output schema (has: {', '.join(data.schema.names)})"
                )
            data = data.select(names)
        arrays = []
        for field, col in zip(self.schema, data.columns, strict=True):
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
                        f"{self.name}: column '{field.name}' is {col.type}, the "
                        f"output schema says {field.type} ({_first_line(exc)})"
                    ) from None
            arrays.append(col)
        if isinstance(data, pa.Table):
            return pa.Table.from_arrays(arrays, schema=self.schema)
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def _flush_parquet(self, final: bool = False) -> None:
        if self._sink is None:
            self._sink = _parquet_writer(self._tmp, self.schema)
        while self._pending_rows >= self._rg_rows or (final and self._pending_rows):
            table = pa.Table.from_batches(self._pending, schema=self.schema)
            take = min(self._rg_rows, table.num_rows)
            self._sink.write_table(table.slice(0, take), row_group_size=take)
            rest = table.slice(take)
            self._pending = rest.to_batches() if rest.num_rows else []
            self._pending_rows = rest.num_rows

    def _open_fits(self, first: pa.RecordBatch | None) -> None:
        import fitsio

        self._fits_dtype, self._fits_tnull = _fits_dtype(self.schema, first, self.name)
        self._sink = fitsio.FITS(self._tmp, "rw", clobber=True)
        units = [_unit(f) for f in self.schema]
        self._sink.create_table_hdu(dtype=self._fits_dtype, units=units, extname="TABLE")
        hdu = self._sink[-1]
        for i, name in enumerate(self.schema.names, start=1):
            if name in self._fits_tnull:
                hdu.write_key(f"TNULL{i}", self._fits_tnull[name], comment="null value")
        _write_fits_metadata(hdu, self.metadata, self.name)
        self._fits_hdu = hdu

    def _write_fits(self, batch: pa.RecordBatch) -> None:
        if self._sink is None:
            self._open_fits(batch)
        rec = np.empty(batch.num_rows, dtype=self._fits_dtype)
        for name in self.schema.names:
            rec[name] = _fits_column(
                batch,
                name,
                rec.dtype[name],
                self._fits_tnull.get(name),
                self.name,
                self.rows_written,
            )
        try:
            self._fits_hdu.append(rec)
        except (OSError, ValueError, RuntimeError) as exc:
            raise TableError(f"{self.name}: cannot write FITS rows ({_first_line(exc)})") from None

    def _write_csv(self, batch: pa.RecordBatch) -> None:
        table = _arrow_to_astropy(pa.Table.from_batches([batch]))
        with open(self._tmp, "a", newline="") as f:
            if self._sink is None:
                table.write(f, format="ascii.csv")
                self._sink = True
            else:
                table.write(f, format="ascii.no_header", delimiter=",")

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
        self._finish()
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

    def _finish(self) -> None:
        if self.format == "parquet":
            self._flush_parquet(final=True)
            if self._sink is None:  # no rows: still a valid file with the schema
                self._sink = _parquet_writer(self._tmp, self.schema)
            self._sink.close()
        elif self.format == "fits":
            if self._sink is None:
                self._open_fits(None)
            self._sink.close()
        elif self.format == "csv":
            if self._sink is None:
                self._write_csv_header()
        else:
            table = pa.Table.from_batches(self._pending, schema=self.schema)
            self._pending = []
            _astropy_write(table, self._tmp, self.format, self.name)
        self._sink = None

    def _write_csv_header(self) -> None:
        with open(self._tmp, "w") as f:
            f.write(",".join(self.schema.names) + "\n")

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
        if sink is not None and sink is not True:
            try:
                sink.close()
            except Exception:
                pass
        self._pending = []
        _remove(self._tmp)
        self._tmp = None

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


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


def _chmod_default(path: str) -> None:
    """mkstemp makes 0600 files; give the result the usual 0666 & ~umask."""
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(path, 0o666 & ~umask)
    except OSError:
        pass


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape) if len(shape) > 1 else f"{shape[0]}-value"


def _fits_dtype(
    schema: pa.Schema, first: pa.RecordBatch | None, name: str
) -> tuple[np.dtype, dict[str, int]]:
    """numpy record dtype of the FITS table for an Arrow schema (string widths from `first`)."""
    fields = []
    tnull: dict[str, int] = {}
    for f in schema:
        shape, vt = _cell_shape(f.type)
        if pa.types.is_dictionary(vt):
            vt = vt.value_type
        if pa.types.is_string(vt) or pa.types.is_large_string(vt):
            if shape:
                raise TableError(f"{name}: column '{f.name}': FITS cannot hold arrays of strings")
            width = 8
            if first is not None and first.num_rows:
                import pyarrow.compute as pc

                lengths = pc.binary_length(first.column(f.name).cast(pa.string()))
                width = max(width, int(pc.max(lengths).as_py() or 0))
            fields.append((f.name, f"S{width}"))
            continue
        if pa.types.is_float16(vt):
            base = np.dtype("f4")
        elif pa.types.is_boolean(vt):
            base = np.dtype("?")
        elif pa.types.is_integer(vt) or pa.types.is_floating(vt):
            base = np.dtype(vt.to_pandas_dtype())
        else:
            raise TableError(
                f"{name}: column '{f.name}' of type {vt} cannot be written to FITS; "
                "write Parquet instead"
            )
        if base.kind in "iu" and not shape and (first is None or first.column(f.name).null_count):
            info = np.iinfo(base)
            tnull[f.name] = int(info.min if base.kind == "i" else info.max)
        fields.append((f.name, base, shape) if shape else (f.name, base))
    # TNULL only where the first batch has nulls (or no batch): most id columns have none
    if first is not None:
        tnull = {k: v for k, v in tnull.items() if first.column(k).null_count}
    return np.dtype(fields), tnull


def _fits_column(
    batch: pa.RecordBatch, name: str, dt: np.dtype, tnull: int | None, where: str, offset: int
) -> np.ndarray:
    col = _chunk(batch, name)
    if dt.kind == "S" or (dt.subdtype is None and dt.kind == "S"):
        values = np.char.encode(_values_numpy(col).astype(str), "utf-8")
        width = dt.itemsize
        if values.dtype.itemsize > width:
            lengths = np.char.str_len(values)
            row = int(np.argmax(lengths > width))
            raise TableError(
                f"{where}: column '{name}' row {offset + row} holds a {int(lengths[row])}-byte "
                f"string, longer than the FITS column width {width} fixed by the first batch; "
                "write Parquet, or write the table in one batch"
            )
        return values
    base = dt.base if dt.subdtype else dt
    if col.null_count and base.kind in "iu" and not dt.subdtype:
        if tnull is None:
            raise TableError(
                f"{where}: column '{name}' has null values from row {offset} on "
                "that FITS cannot mark (no TNULL set by the first batch); "
                "write Parquet"
            )
        col = col.fill_null(tnull)
    return column_array(pa.RecordBatch.from_arrays([col], names=[name]), name)


def _fits_header_value(value: str) -> str:
    # FITS headers are ASCII; keep anything else readable and lossless-ish
    return value.encode("ascii", "backslashreplace").decode("ascii").replace("\n", "\\n")


_NICE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,39}")
_NICE_VALUE = re.compile(r"[\x20-\x7e]*")


def _write_fits_metadata(hdu, metadata: dict[str, str], name: str = "") -> None:
    """Metadata as keywords (HIERARCH for long or mixed-case names, CONTINUE for long values),
    the original key spelling in PZKEYS, and the provenance as HISTORY lines too.

    What a keyword cannot hold exactly (a key over 40 characters or with odd characters, a
    value with non-ASCII characters, newlines or trailing spaces, a key that would clash with
    a FITS structural keyword) goes into one JSON long-string keyword, PZMETA, so that every
    dict round-trips exactly."""
    keys: list[str] = []
    used: set[str] = set()
    extra: dict[str, str] = {}
    for key, value in metadata.items():
        value = str(value)
        upper = key.upper()
        nice = (
            _NICE_KEY.fullmatch(key) is not None
            and _NICE_VALUE.fullmatch(value) is not None
            and value == value.rstrip()
            and not _FITS_STRUCTURAL.match(upper)
            and upper not in used
            and upper not in (_FITS_META_JSON, "SIMPLE", "END")
        )
        if not nice:
            extra[key] = value
            continue
        plain = re.fullmatch(r"[A-Z0-9_-]{1,8}", key) is not None
        try:
            hdu.write_key(key if plain else f"HIERARCH {key}", value)
        except (OSError, ValueError, RuntimeError):
            extra[key] = value  # cfitsio refused it: keep it exactly in PZMETA instead
            continue
        keys.append(key)
        used.add(upper)
    try:
        if keys:
            hdu.write_key(_FITS_KEYS_MAP, json.dumps(keys), comment="metadata key spelling")
        if extra:
            hdu.write_key(_FITS_META_JSON, json.dumps(extra), comment="more metadata (JSON)")
    except (OSError, ValueError, RuntimeError) as exc:
        raise TableError(
            f"{name}: cannot write the metadata to the FITS header ({_first_line(exc)})"
        ) from None
    for key in PROVENANCE_KEYS:
        if key in metadata:
            text = f"{key}: {_fits_header_value(str(metadata[key]))}"
            for i in range(0, len(text), 70):
                hdu.write_history(text[i : i + 70])


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


# --------------------------------------------------------------------------- checks


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


def check_cell(
    where: TableReader | pa.Schema | pa.RecordBatch | pa.Table,
    name: str,
    shape: Sequence[int | None],
    dtypes: str | Sequence[str],
    what: str = "",
) -> tuple[int, ...]:
    """Check that column `name` holds cells of `shape` (None: any length on that axis) and one of
    `dtypes` ("float32", ...); TableError naming file, column, found and expected otherwise.
    Returns the actual cell shape (e.g. (180,) for a pdf, to learn the number of bins).

    >>> check_cell(reader, "image", (64, 64, 5), "float32")
    >>> nbins, = check_cell(reader, "pdf", (None,), ("float32", "float16"))
    """
    file = _where_name(where, what) if not isinstance(where, TableReader) else where.name
    require_columns(where, [name], name=file or None)
    field = _schema_of(where).field(name)
    found_shape, vt = _cell_shape(field.type)
    allowed = [dtypes] if isinstance(dtypes, str) else list(dtypes)
    try:
        found_dtype = str(np.dtype(vt.to_pandas_dtype())) if not pa.types.is_string(vt) else "str"
    except (NotImplementedError, TypeError):
        found_dtype = str(vt)
    shape_ok = len(found_shape) == len(shape) and all(
        s is None or s == f for s, f in zip(shape, found_shape, strict=True)
    )
    if shape_ok and found_dtype in [str(np.dtype(d)) for d in allowed]:
        return found_shape
    expected = " or ".join(str(np.dtype(d)) for d in allowed)
    want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
    got = "scalar" if not found_shape else str(tuple(found_shape))
    found = f"{found_dtype} {got} cells"
    if pa.types.is_list(vt) or pa.types.is_large_list(vt):
        found = f"variable-length lists of {vt.value_type}, not fixed-size cells"
    prefix = f"{file}: " if file else ""
    raise TableError(f"{prefix}column '{name}' holds {found}; expected {expected} {want}")


def find_id_column(names: Sequence[str], requested: str | None = None) -> str | None:
    """`requested` (case-insensitive) or the first of objID, specObjID, id present; None if none."""
    lower = {}
    for n in names:
        lower.setdefault(n.lower(), n)
    if requested:
        return names[names.index(requested)] if requested in names else lower.get(requested.lower())
    for candidate in ("objid", "specobjid", "id"):
        if candidate in lower:
            return lower[candidate]
    return None


def finite_rows(batch: pa.RecordBatch | pa.Table, columns: Sequence[str]) -> np.ndarray:
    """Boolean mask of the rows whose `columns` are all finite and not null (every cell value)."""
    keep = np.ones(batch.num_rows, dtype=bool)
    for name in columns:
        values = column_array(batch, name)
        if values.dtype.kind in "fc":
            ok = np.isfinite(values)
            if ok.ndim > 1:
                ok = ok.reshape(len(ok), -1).all(axis=1)
            keep &= ok
        col = batch.column(name)
        if col.null_count:
            keep &= ~np.asarray(col.is_null().to_numpy(zero_copy_only=False))
    return keep


def check_finite(
    batch: pa.RecordBatch, columns: Sequence[str], where: str, drop_option: str, row_offset: int = 0
) -> None:
    """TableError naming the column, the count of NaN/inf rows and the option that drops them."""
    for name in columns:
        bad = ~finite_rows(batch, [name])
        n = int(bad.sum())
        if n:
            first = row_offset + int(np.argmax(bad))
            raise TableError(
                f"{where}: column '{name}' has NaN/inf or null values in {n} row"
                f"{'s' if n != 1 else ''} of rows {row_offset}-"
                f"{row_offset + batch.num_rows - 1} (first: row {first}); "
                f"{drop_option} drops those rows"
            )


def check_unique_ids(values: np.ndarray | pa.Array | Sequence, column: str, where: str) -> None:
    """TableError when an id repeats: how many ids repeat, and one of them with its count.

    For a streamed table, concatenate the id column of every batch (8 bytes a row) first."""
    arr = (
        values.to_numpy(zero_copy_only=False)
        if isinstance(values, pa.Array | pa.ChunkedArray)
        else np.asarray(values)
    )
    if len(arr) < 2:
        return
    uniq, counts = np.unique(arr, return_counts=True)
    dup = counts > 1
    if dup.any():
        k = int(dup.sum())
        i = int(np.argmax(dup))
        example = uniq[i].item() if hasattr(uniq[i], "item") else uniq[i]
        raise TableError(
            f"{where}: {k} duplicate value{'s' if k != 1 else ''} in id column '{column}' "
            f"(e.g. {example} appears {int(counts[i])} times); ids must be unique: "
            "remove the duplicate rows (keep the first of each) or choose another column with --id"
        )


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
