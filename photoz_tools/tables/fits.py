"""FITS binary tables: the streaming reader (fitsio, rows in slices) and the writer's sink
(record arrays appended to one table HDU, TDIM shapes, TUNIT units, TNULL for integer nulls) and
the file metadata as header keywords that round-trip exactly (PZKEYS, PZMETA, HISTORY)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from photoz_tools.tables.arrow import (
    _cast,
    _cell_shape,
    _chunk,
    _unit,
    _values_numpy,
    column_array,
    to_arrow,
)
from photoz_tools.tables.base import TableReader
from photoz_tools.tables.common import PROVENANCE_KEYS, TableError, _describe_head, _first_line

_FITS_KEYS_MAP = "PZKEYS"  # JSON list of the metadata keys as given (FITS upper-cases them)
_FITS_META_JSON = "PZMETA"  # JSON dict of the metadata that keywords cannot hold exactly
_FITS_STRUCTURAL = re.compile(
    r"^(SIMPLE|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|TFIELDS|EXTEND|EXTNAME|EXTVER|EXTLEVEL|"
    r"THEAP|CHECKSUM|DATASUM|COMMENT|HISTORY|END|PZKEYS|PZMETA|"
    r"T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|DISP|BCOL|LMIN|LMAX|DMIN|DMAX|UCD|COMM)\d+)$"
)

# --------------------------------------------------------------------------- reading


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
            try:
                header = self._hdu.read_header()
            except (UnicodeDecodeError, ValueError, OSError) as exc:  # fitsio parses the cards
                raise TableError(
                    f"{name}: unreadable header of the table HDU ({_first_line(exc)}); "
                    "a card holds bytes that are not FITS text"
                ) from None
            self._file_schema, self._tnull = _fits_schema(self._hdu, header, name)
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


def _fits_schema(hdu, header, where: str) -> tuple[pa.Schema, dict[str, int]]:
    """Arrow schema of a FITS table HDU (TDIM shapes, TUNIT units), without reading data."""
    dtype = hdu.get_rec_dtype()[0]
    names = hdu.get_colnames()
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if not name or name not in (dtype.names or ()):
            raise TableError(
                f"{where}: column {i} has no usable name (TTYPE{i} is missing, empty or "
                "not ASCII); a FITS column name is printable ASCII"
            )
        if name.upper() in seen:
            raise TableError(
                f"{where}: columns {seen[name.upper()]} and {i} are both named {name!r} "
                "(FITS column names ignore case)"
            )
        seen[name.upper()] = i
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
            null = _tnull_value(header[f"TNULL{i}"], where, name, i)
            info = np.iinfo(base)
            if info.min <= null <= info.max:  # outside the range no value equals it
                tnull[name] = null
        fields.append(pa.field(name, t, metadata=meta or None))
    return pa.schema(fields), tnull


def _tnull_value(value: Any, where: str, name: str, i: int) -> int:
    """The integer of a TNULLn card; TableError naming the file and column otherwise."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise TableError(
        f"{where}: column {name!r}: TNULL{i} = {str(value).strip()!r} is not an integer "
        "(the null value of an integer column)"
    )


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


# --------------------------------------------------------------------------- writing


class FitsSink:
    """A TableWriter's FITS output: one table HDU, opened with the first batch (which fixes
    the string widths and which integer columns get a TNULL), rows appended batch by batch."""

    def __init__(self, path: str, schema: pa.Schema, metadata: dict[str, str], name: str) -> None:
        self.path = path
        self.schema = schema
        self.metadata = metadata
        self.name = name
        self._fits: Any = None

    @staticmethod
    def check(schema: pa.Schema, name: str) -> None:
        """TableError for a column FITS cannot hold."""
        _fits_dtype(schema, None, name)

    def _open(self, first: pa.RecordBatch | None) -> None:
        import fitsio

        self._dtype, self._tnull = _fits_dtype(self.schema, first, self.name)
        self._fits = fitsio.FITS(self.path, "rw", clobber=True)
        units = [_unit(f) for f in self.schema]
        self._fits.create_table_hdu(dtype=self._dtype, units=units, extname="TABLE")
        hdu = self._fits[-1]
        for i, name in enumerate(self.schema.names, start=1):
            if name in self._tnull:
                hdu.write_key(f"TNULL{i}", self._tnull[name], comment="null value")
        _write_fits_metadata(hdu, self.metadata, self.name)
        self._hdu = hdu

    def write(self, batch: pa.RecordBatch, offset: int) -> None:
        """Append `batch`; `offset` is its first row in the table (for messages)."""
        if self._fits is None:
            self._open(batch)
        rec = np.empty(batch.num_rows, dtype=self._dtype)
        for name in self.schema.names:
            rec[name] = _fits_column(
                batch,
                name,
                rec.dtype[name],
                self._tnull.get(name),
                self.name,
                offset,
            )
        try:
            self._hdu.append(rec)
        except (OSError, ValueError, RuntimeError) as exc:
            raise TableError(f"{self.name}: cannot write FITS rows ({_first_line(exc)})") from None

    def finish(self) -> None:
        """Close the file (no rows: an empty table HDU with the full schema)."""
        if self._fits is None:
            self._open(None)
        self._fits.close()
        self._fits = None

    def abort(self) -> None:
        fits, self._fits = self._fits, None
        if fits is not None:
            try:
                fits.close()
            except Exception:
                pass


def _fits_dtype(
    schema: pa.Schema, first: pa.RecordBatch | None, name: str
) -> tuple[np.dtype, dict[str, int]]:
    """numpy record dtype of the FITS table for an Arrow schema (string widths from `first`)."""
    _check_fits_names(schema, name)
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


# a TTYPEn value: at most 68 characters in its card, a quote counting twice
_TTYPE_MAX = 68
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")


def check_fits_names(names: Sequence[str], where: str) -> None:
    """TableError, naming `where` and the column, for a name FITS cannot hold exactly."""
    _check_fits_names(pa.schema([(n, pa.null()) for n in names]), where)


def _check_fits_names(schema: pa.Schema, name: str) -> None:
    """TableError for a column name FITS cannot hold exactly.

    A FITS column name (TTYPEn) is printable ASCII, loses trailing spaces, and is matched
    without regard to case, so a non-ASCII, empty, over-long or trailing-space name, or two
    names equal but for case, would be written as something that does not read back (a lost
    or renamed column, or values swapped between the twins). Refused, naming the column."""
    seen: dict[str, str] = {}
    for col in schema.names:
        if not col:
            problem = "an empty name"
        elif _PRINTABLE_ASCII.fullmatch(col) is None:
            problem = "a name with non-ASCII or control characters (FITS names are ASCII)"
        elif col != col.rstrip():
            problem = "a name ending in a space (FITS drops trailing spaces)"
        elif len(col) + col.count("'") > _TTYPE_MAX:
            problem = f"a name longer than FITS allows ({_TTYPE_MAX} characters)"
        elif col.upper() in seen:
            problem = (
                f"the same name as column {seen[col.upper()]!r} but for case "
                "(FITS column names ignore case)"
            )
        else:
            seen[col.upper()] = col
            continue
        raise TableError(
            f"{name}: column {col!r} has {problem}; rename it, or write Parquet instead"
        )


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
