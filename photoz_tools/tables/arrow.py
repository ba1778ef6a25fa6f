"""Arrow <-> numpy: any column as an (n, ...) numpy array and back, cell shapes and units.

A cell of two or more dimensions (the (64, 64, 5) ``image``) is Arrow's canonical fixed-shape
tensor extension type, a 1-D vector cell (the 180-float ``pdf``, ``n_frames``) a fixed-size list.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from photoz_tools.tables.common import _DROP_META, KNOWN_UNITS, TableError


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
    return ((field.metadata or {}).get(b"unit") or b"").decode("utf-8", "replace")


def _decode_meta(meta: dict | None) -> dict[str, str]:
    """Key-value metadata as text. A key that is not UTF-8 (a file from elsewhere, or a
    corrupt one) keeps its undecodable bytes as \\xNN escapes, so distinct keys stay distinct;
    a value that is not UTF-8 gets U+FFFD for its undecodable bytes."""
    out: dict[str, str] = {}
    for k, v in (meta or {}).items():
        key = k.decode("utf-8", "backslashreplace") if isinstance(k, bytes) else str(k)
        if key in _DROP_META:
            continue
        out[key] = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return out


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


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape) if len(shape) > 1 else f"{shape[0]}-value"
