"""Checks on table contents the commands share: cell shapes and dtypes, id columns, finite
values, duplicate ids (each a TableError naming file, column and row)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from photoz_tools.tables.arrow import _cell_shape, column_array
from photoz_tools.tables.base import TableReader, _schema_of, _where_name, require_columns
from photoz_tools.tables.common import TableError


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
