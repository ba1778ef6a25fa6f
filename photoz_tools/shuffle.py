"""Shuffle a table that does not fit in memory: a two-pass bucket shuffle under a byte budget.

Training reads a dataset front to back, so rows must already lie in a uniform random order: a
shuffle buffer over the file's order only mixes neighbours. Each row gets a destination key (a
random permutation of 0..n-1, :func:`random_keys`). Pass 1 appends every row to one of B bucket
files by key range; pass 2 loads one bucket at a time, sorts it by key and hands the rows on. B is
chosen so that one bucket fits in ``buffer_bytes``: memory is bounded by the budget, not by the
table, and the disk holds one extra copy of the table while it runs.

Shared by pz-pack (which writes its datasets shuffled) and pz-train.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from photoz_tools.errors import PzError

KEY_COLUMN = "__pz_shuffle_key__"  # the key's reserved name inside the bucket files
MAX_BUCKETS = 512  # bucket files are open at once in pass 1: stay well under `ulimit -n` (1024)
WRITE_BYTES = 64 << 20  # rows handed to `write` at a time, at most (also <= buffer / 4)
TEMP_PREFIX = ".pz-shuffle-"  # hidden, so a folder of Parquet files still reads as a dataset


class ShuffleBufferTooSmall(PzError):
    """The budget would need more than MAX_BUCKETS bucket files; ``need_bytes`` is enough."""

    def __init__(self, message: str, need_bytes: int) -> None:
        super().__init__(message)
        self.need_bytes = need_bytes


def random_keys(n: int, seed: int) -> np.ndarray:
    """key[i] = destination position of source row i: a seeded uniform random permutation of
    0..n-1 (int64). Its own random stream ([seed, 2]): folds and splits draw [seed, 0] and
    [seed, 1], so the same seed never ties the order to the folds."""
    if n < 0:
        raise ValueError(f"random_keys: n = {n} < 0")
    return np.random.default_rng([seed, 2]).permutation(n).astype(np.int64, copy=False)


def is_shuffled(metadata: dict[str, str] | None) -> bool:
    """True when a table's metadata says pz-pack wrote its rows in a random order (its
    ``pz_pack`` JSON has ``"order": "shuffled"``), so a reader need not shuffle it again."""
    if not metadata:
        return False
    raw = metadata.get("pz_pack")
    if raw is None:
        raw = metadata.get(b"pz_pack")  # type: ignore[call-overload]  # raw Arrow metadata
    if raw is None:
        return False
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    try:
        info = json.loads(raw)
    except (TypeError, ValueError):
        return False
    return isinstance(info, dict) and info.get("order") == "shuffled"


def bucket_shuffle(
    batches: Iterable[tuple[np.ndarray, pa.RecordBatch]],
    schema: pa.Schema,
    n_keys: int,
    write: Callable[[pa.RecordBatch], None],
    *,
    buffer_bytes: int,
    tmpdir: str | Path | None,
    row_bytes: int | None = None,
) -> int:
    """Hand every row of `batches` to `write`, sorted by its key; return the rows written.

    `batches` yields (int64 destination keys, the batch's rows): keys unique over the whole
    stream and in [0, n_keys); gaps are fine (rows a caller dropped). Rows reach `write` as
    record batches of `schema`, the key not among their columns. With :func:`random_keys` the
    output is a uniform random order.

    Memory: about `buffer_bytes` (one bucket, or the rows waiting to go to the bucket files),
    judged from `row_bytes` (default: the first non-empty batch's bytes per row). When all rows
    fit in one bucket they are sorted in memory and no file is written; otherwise the buckets
    are hidden Parquet files in a temporary folder ``.pz-shuffle-*`` in `tmpdir` (None: the
    system's temporary folder), removed when this returns or raises.
    """
    if KEY_COLUMN in schema.names:
        raise ValueError(f"bucket_shuffle: column name {KEY_COLUMN} is reserved")
    if buffer_bytes < 1:
        raise ValueError(f"bucket_shuffle: buffer_bytes = {buffer_bytes} < 1")
    if n_keys < 0:
        raise ValueError(f"bucket_shuffle: n_keys = {n_keys} < 0")
    seen = np.zeros(n_keys, dtype=bool)  # 1 byte a key: catches repeated keys
    items = (_checked(keys, batch, n_keys, seen) for keys, batch in batches)
    if row_bytes is None:
        head: list[tuple[np.ndarray, pa.RecordBatch]] = []
        for keys, batch in items:
            head.append((keys, batch))
            if batch.num_rows:
                row_bytes = math.ceil(batch.nbytes / batch.num_rows)
                break
        items = itertools.chain(head, items)
    # + the key, + 1/16: a bucket read back from Parquet carries a validity bitmap per list
    # value (1/32 more for float32 images) that the batches handed in did not
    row_bytes = max(1, int(row_bytes or 1))
    row_bytes += row_bytes // 16 + 8
    per_bucket = max(1, buffer_bytes // row_bytes)
    n_buckets = max(1, math.ceil(n_keys / per_bucket))
    step = max(1, min(WRITE_BYTES, buffer_bytes // 4) // row_bytes)
    if n_buckets == 1:
        return _in_memory(items, schema, write, step)
    if n_buckets > MAX_BUCKETS:
        need = math.ceil(n_keys / MAX_BUCKETS) * row_bytes
        raise ShuffleBufferTooSmall(
            f"shuffling {n_keys} rows of ~{row_bytes} bytes in a {buffer_bytes / 2**20:.3g} MB "
            f"buffer needs {n_buckets} temporary files (at most {MAX_BUCKETS}): give it at "
            f"least {math.ceil(need / 2**20)} MB",
            need,
        )
    folder = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=None if tmpdir is None else str(tmpdir))
    try:
        filled = _scatter(items, schema, n_keys, n_buckets, Path(folder), buffer_bytes)
        return _gather(filled, schema, write, step)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- the two passes


def _checked(
    keys: np.ndarray, batch: pa.RecordBatch, n_keys: int, seen: np.ndarray
) -> tuple[np.ndarray, pa.RecordBatch]:
    """Keys as int64, one per row, in range and never seen before (else a ValueError)."""
    keys = np.asarray(keys)
    if keys.dtype.kind not in "iu":
        raise ValueError(f"bucket_shuffle: keys must be integers, not {keys.dtype}")
    keys = keys.astype(np.int64, copy=False).ravel()
    if len(keys) != batch.num_rows:
        raise ValueError(f"bucket_shuffle: {len(keys)} keys for a batch of {batch.num_rows} rows")
    if len(keys):
        if keys.min() < 0 or keys.max() >= n_keys:
            raise ValueError(f"bucket_shuffle: a key outside [0, {n_keys})")
        if seen[keys].any() or len(np.unique(keys)) != len(keys):
            raise ValueError("bucket_shuffle: a key repeats")
        seen[keys] = True
    return keys, batch


def _conform(data: pa.RecordBatch | pa.Table, schema: pa.Schema) -> pa.Table:
    """`data` as a table of exactly `schema` (columns by name, cast where the type differs)."""
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    cols = []
    for f in schema:
        col = data.column(f.name)
        cols.append(col if col.type == f.type else col.cast(f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _emit(
    table: pa.Table, keys: np.ndarray, write: Callable[[pa.RecordBatch], None], step: int
) -> int:
    """Rows of `table` to `write` sorted by `keys`, `step` rows at a time (copies stay small)."""
    order = np.argsort(keys, kind="stable")
    for start in range(0, len(order), step):
        part = table.take(pa.array(order[start : start + step])).combine_chunks()
        for rb in part.to_batches():
            write(rb)
    return len(order)


def _in_memory(
    items: Iterator[tuple[np.ndarray, pa.RecordBatch]],
    schema: pa.Schema,
    write: Callable[[pa.RecordBatch], None],
    step: int,
) -> int:
    """Everything fits in the budget: hold it, sort it, write it."""
    keys, tables = [], []
    for k, batch in items:
        if len(k):
            keys.append(k)
            tables.append(_conform(batch, schema))
    if not keys:
        return 0
    table = pa.concat_tables(tables)
    del tables
    return _emit(table, np.concatenate(keys), write, step)


def _scatter(
    items: Iterator[tuple[np.ndarray, pa.RecordBatch]],
    schema: pa.Schema,
    n_keys: int,
    n_buckets: int,
    folder: Path,
    buffer_bytes: int,
) -> list[Path | None]:
    """Pass 1: rows to bucket files by key range. Rows wait in memory (up to half the budget)
    so that each flush writes one row group per bucket rather than a sliver per batch."""
    import pyarrow.parquet as pq

    tmp_schema = schema.append(pa.field(KEY_COLUMN, pa.int64()))
    paths = [folder / f"bucket-{b:05d}.parquet" for b in range(n_buckets)]
    writers: dict[int, pq.ParquetWriter] = {}
    pending: dict[int, list[pa.Table]] = {}
    pending_bytes = 0
    flush_at = max(1, buffer_bytes // 2)

    def flush() -> None:
        nonlocal pending_bytes
        for b in sorted(pending):
            if b not in writers:
                writers[b] = pq.ParquetWriter(
                    paths[b],
                    tmp_schema,
                    compression="none",  # noisy float32 images barely compress
                    use_dictionary=False,
                    write_statistics=False,
                )
            writers[b].write_table(pa.concat_tables(pending[b]))
        pending.clear()
        pending_bytes = 0

    try:
        for keys, batch in items:
            if not len(keys):
                continue
            table = _conform(batch, schema).append_column(KEY_COLUMN, pa.array(keys))
            bucket = keys * n_buckets // n_keys
            order = np.argsort(bucket, kind="stable")
            table = table.take(pa.array(order)).combine_chunks()
            sb = bucket[order]
            cuts = [0, *(np.flatnonzero(np.diff(sb)) + 1).tolist(), len(sb)]
            for lo, hi in itertools.pairwise(cuts):
                part = table.slice(lo, hi - lo)
                pending.setdefault(int(sb[lo]), []).append(part)
            pending_bytes += table.nbytes
            if pending_bytes >= flush_at:
                flush()
        flush()
    finally:
        for w in writers.values():
            w.close()
    return [paths[b] if b in writers else None for b in range(n_buckets)]


def _gather(
    paths: list[Path | None],
    schema: pa.Schema,
    write: Callable[[pa.RecordBatch], None],
    step: int,
) -> int:
    """Pass 2: bucket by bucket in key order, each sorted by key; a bucket's file goes as soon
    as it is read, so the disk frees up while the output grows."""
    import pyarrow.parquet as pq

    written = 0
    for path in paths:
        if path is None:  # no key fell in its range
            continue
        table = pq.read_table(path)
        path.unlink()
        keys = table.column(KEY_COLUMN).to_numpy()
        table = _conform(table, schema)
        written += _emit(table, keys, write, step)
        del table
    return written
