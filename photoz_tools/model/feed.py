"""The training feed: globally shuffled, augmented batches with bounded memory, read ahead by
worker threads.

A batch must be a random sample of the whole training set, not of a window of the file (a file in
specObjID order is in plate order: sky position and redshift). So the rows are first put in a
seeded random order once (pz-pack does it when it writes a dataset; otherwise `prepare` makes a
shuffled temporary copy with a two-pass bucket shuffle whose memory is the buffer), and each epoch
then visits the row groups in a new random order through a shuffle buffer.

Every batch depends only on (seed, epoch, step): reading and augmentation run in worker threads,
but their results are consumed in submission order, so a resumed run sees exactly the batches of
an uninterrupted one, whatever the threads' timing.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from photoz_tools.errors import PzError
from photoz_tools.model.data import (
    IMAGE_BYTES,
    Selection,
    augment,
    balance_weights,
    image_cells,
    iter_images,
)
from photoz_tools.pdf import Bins

COPY_ROW_GROUP = 256  # rows per row group of the shuffled copy (20 MB of images)


def buffer_bytes() -> int:
    """The shuffle buffer's budget, $PZ_TRAIN_BUFFER_MB (default 1024): it bounds memory."""
    raw = os.environ.get("PZ_TRAIN_BUFFER_MB", "1024")
    try:
        mb = float(raw)
    except ValueError:
        raise PzError(f"PZ_TRAIN_BUFFER_MB={raw!r}: not a number of megabytes") from None
    if not mb > 0:
        raise PzError(f"PZ_TRAIN_BUFFER_MB={raw!r}: must be positive")
    return int(mb * (1 << 20))


@dataclass
class Chunks:
    """Where the training images are: row groups of a Parquet file, the rows of each that train,
    and their row numbers in the Selection (for z, E(B-V) and labels)."""

    path: str
    image_col: str
    groups: list[int]
    local: list[np.ndarray]  # per chunk: rows within the row group to keep
    ids: list[np.ndarray]  # per chunk: Selection row number of each kept row
    shuffled: bool  # rows already in a random order (pz-pack's default, or our copy)

    @property
    def n_rows(self) -> int:
        return int(sum(len(i) for i in self.ids))


def parquet_chunks(
    path: str, rows: np.ndarray, image_col: str = "image", ids: np.ndarray | None = None
) -> Chunks:
    """The row groups of the Parquet file `path` holding the sorted row numbers `rows`."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:  # noqa: BLE001 - any reader failure is the same answer
        raise PzError(f"{path}: not a Parquet file the training feed can read ({exc})") from None
    ids = rows if ids is None else ids
    groups, local, out_ids = [], [], []
    start = 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        lo, hi = np.searchsorted(rows, [start, start + n])
        if hi > lo:
            groups.append(g)
            local.append(rows[lo:hi] - start)
            out_ids.append(ids[lo:hi])
        start += n
    return Chunks(str(path), image_col, groups, local, out_ids, shuffled=False)


def is_parquet(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def prepare(
    sel: Selection,
    workdir: Path,
    seed: int,
    image_col: str = "image",
    log: Callable[[str], None] | None = None,
) -> Chunks:
    """The chunks pz-train feeds from: the dataset itself where pz-pack wrote it in a random
    order (and it is Parquet), else a shuffled copy of its training images in `workdir` (made
    once, atomically; a rerun reuses it)."""
    from photoz_tools import shuffle, tables

    rows = sel.train_rows
    if is_parquet(sel.path):
        with tables.open_table(sel.path) as reader:
            marked = shuffle.is_shuffled(reader.metadata)
        if marked:
            c = parquet_chunks(sel.path, rows, image_col)
            c.shuffled = True
            return c
    digest = hashlib.sha256(rows.tobytes() + f"{sel.fingerprint}|{seed}".encode()).hexdigest()
    copy = workdir / f".shuffled-{digest[:16]}.parquet"
    keys = shuffle.random_keys(len(rows), seed)
    order = np.empty(len(rows), dtype=np.int64)
    order[keys] = rows  # copy row j holds dataset row order[j]
    if not copy.is_file():
        if log:
            log(
                f"{sel.path}: rows not marked as shuffled (pz-pack --keep-order or another "
                f"tool): writing a shuffled copy of {len(rows):,} training images to {workdir}"
            )
        _write_shuffled_copy(sel, rows, keys, copy, image_col)
    c = parquet_chunks(str(copy), np.arange(len(rows)), image_col, ids=order)
    c.shuffled = True
    return c


def check_pixels(path: str, images: np.ndarray, rows: np.ndarray) -> None:
    """Refuse NaN/inf pixels, naming the first bad row of the dataset."""
    if not np.isfinite(images).all():
        bad = rows[~np.isfinite(images).all(axis=(1, 2, 3))]
        raise PzError(
            f"{path}: row {int(bad[0])} (and {len(bad) - 1} more in this batch) has NaN/inf "
            "pixels; drop bad images with pz-pack first"
        )


def _write_shuffled_copy(
    sel: Selection, rows: np.ndarray, keys: np.ndarray, copy: Path, image_col: str
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from photoz_tools import shuffle, tables

    image_type = pa.fixed_shape_tensor(pa.float32(), (64, 64, 5))
    schema = pa.schema([pa.field("row", pa.int64()), pa.field(image_col, image_type)])

    def batches() -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
        done = 0  # iter_images yields the rows in the order of `rows`
        for r, im in iter_images(sel.path, rows, image_col):
            check_pixels(sel.path, im, r)  # before any step: a bad row found now costs nothing
            k = keys[done : done + len(r)]
            done += len(r)
            rb = pa.RecordBatch.from_arrays([pa.array(r), tables.to_arrow(im)], schema=schema)
            yield k, rb

    tmp = copy.with_name(f".{copy.name}.tmp")
    writer = pq.ParquetWriter(tmp, schema, compression="none")
    try:
        shuffle.bucket_shuffle(
            batches(),
            schema,
            len(rows),
            lambda rb: writer.write_table(pa.Table.from_batches([rb]), COPY_ROW_GROUP),
            buffer_bytes=buffer_bytes(),
            tmpdir=copy.parent,
            row_bytes=IMAGE_BYTES + 8,
        )
        writer.close()
        os.replace(tmp, copy)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise


class _Readers(threading.local):
    """One open ParquetFile per worker thread (a file object is not shared between threads)."""

    def __init__(self, path: str) -> None:
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(path, memory_map=True)


class _Ordered:
    """Submit work to a pool with bounded look-ahead and take the results in submission order."""

    def __init__(self, pool: ThreadPoolExecutor, ahead: int) -> None:
        self.pool, self.ahead, self.queue = pool, max(1, ahead), deque()

    def full(self) -> bool:
        return len(self.queue) >= self.ahead

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self.queue.append(self.pool.submit(fn, *args))

    def take(self) -> Any:
        fut: Future = self.queue.popleft()
        return fut.result()

    def __len__(self) -> int:
        return len(self.queue)


class TrainingBatches:
    """Shuffled, augmented training batches: ``({"image", "ebv"}, labels, weights)``.

    Each epoch visits the chunks (row groups) in a random order through a shuffle buffer of
    `buffer_rows` galaxies; a training set that fits the buffer is read once, kept, and drawn
    from in a fresh permutation every epoch (an exact shuffle).
    Batches are full (`len(self)` = rows // batch_size). `workers` threads read row groups and
    finish batches (copy, check, augment) ahead of the consumer.
    """

    def __init__(
        self,
        selection: Selection,
        batch_size: int = 128,
        seed: int = 0,
        augment: bool = True,
        balanced: bool = False,
        image_col: str = "image",
        buffer_rows: int | None = None,
        bins: Bins | None = None,
        chunks: Chunks | None = None,
        workers: int | None = None,
    ) -> None:
        self.sel = selection
        self.chunks = chunks or parquet_chunks(selection.path, selection.train_rows, image_col)
        n = self.chunks.n_rows
        self.batch_size = int(min(batch_size, n))
        self.seed = int(seed)
        self.do_augment = augment
        self.buffer_rows = int(
            buffer_rows or max(4 * self.batch_size, buffer_bytes() // IMAGE_BYTES)
        )
        self.workers = int(workers or min(4, os.cpu_count() or 1))
        self._resident: tuple[np.ndarray, np.ndarray] | None = None
        self.weights = None
        if balanced:
            n_bins = bins.n if bins is not None else int(selection.labels.max()) + 1
            self.weights = balance_weights(selection.labels[selection.train_rows], n_bins)
            self.n_bins = n_bins

    def __len__(self) -> int:
        return max(1, self.chunks.n_rows // self.batch_size)

    def _read(self, readers: _Readers, c: int) -> tuple[np.ndarray, np.ndarray]:
        from photoz_tools import tables

        ch = self.chunks
        t = readers.file.read_row_group(ch.groups[c], columns=[ch.image_col])
        images = image_cells(tables.column_array(t, ch.image_col), ch.image_col, ch.path)
        local = ch.local[c]
        if len(local) != len(images):
            images = images[local]
        return ch.ids[c], np.ascontiguousarray(images, dtype=np.float32)

    def chunk_order(self, epoch: int) -> np.ndarray:
        """The order the chunks are visited in during `epoch`: a new permutation each epoch."""
        return np.random.default_rng([self.seed, int(epoch), 3]).permutation(
            len(self.chunks.groups)
        )

    def iterate(self, epoch: int, start: int = 0) -> Iterator[tuple[dict, np.ndarray, Any]]:
        """The batches of `epoch`, from batch `start` on (earlier ones are drawn, not finished)."""
        rng = np.random.default_rng([self.seed, int(epoch), 1])
        order = self.chunk_order(epoch)
        readers = _Readers(self.chunks.path)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="pz-feed") as pool:
            reads = _Ordered(pool, 2 * self.workers)
            done = _Ordered(pool, 2 * self.workers)
            if self.chunks.n_rows <= self.buffer_rows:
                drawn = self._draw_resident(rng, start, reads, readers)
            else:
                drawn = self._draw(rng, order, reads, readers, pool)
            for step, images, rows in drawn:
                if step < start:
                    continue
                done.submit(self._finish, images, rows, epoch, step)
                if done.full():
                    yield done.take()
            while len(done):
                yield done.take()

    def _draw_resident(self, rng, start: int, reads: _Ordered, readers: _Readers):
        """(step, images, rows) from the whole training set kept in memory: when it fits the
        buffer, it is read once and every epoch is a fresh permutation of it (an exact shuffle
        with no re-reading: re-reading the set before each epoch's first batch stalled the
        network at every epoch start, benchmarks/train_loop.md)."""
        ids, images = self._load_resident(reads, readers)
        bs = self.batch_size
        perm = rng.permutation(len(ids))
        for step in range(start, len(self)):
            pick = perm[step * bs : (step + 1) * bs]
            yield step, images[pick], ids[pick]  # fancy indexing copies

    def _load_resident(self, reads: _Ordered, readers: _Readers):
        if self._resident is None:
            n = self.chunks.n_rows
            images = np.empty((n, 64, 64, 5), dtype=np.float32)
            ids = np.empty(n, dtype=np.int64)
            at = nxt = 0
            n_chunks = len(self.chunks.groups)
            while at < n:
                while nxt < n_chunks and not reads.full():
                    reads.submit(self._read, readers, nxt)
                    nxt += 1
                r, im = reads.take()
                images[at : at + len(r)] = im
                ids[at : at + len(r)] = r
                at += len(r)
            self._resident = (ids, images)
        return self._resident

    def _draw(self, rng, order, reads: _Ordered, readers: _Readers, pool):
        """(step, images, rows) drawn from the buffer as the chunks arrive, in a fixed order."""
        bs, n_steps = self.batch_size, len(self)
        cap = min(self.buffer_rows, self.chunks.n_rows) + max(
            (len(i) for i in self.chunks.ids), default=0
        )
        buf = np.empty((cap, 64, 64, 5), dtype=np.float32)
        ids = np.empty(cap, dtype=np.int64)
        target = min(self.buffer_rows, self.chunks.n_rows)
        fill = step = nxt = 0
        while step < n_steps:
            while nxt < len(order) and not reads.full():
                reads.submit(self._read, readers, int(order[nxt]))
                nxt += 1
            while len(reads) and fill < target:
                r, im = reads.take()
                buf[fill : fill + len(r)] = im
                ids[fill : fill + len(r)] = r
                fill += len(r)
                if nxt < len(order):
                    reads.submit(self._read, readers, int(order[nxt]))
                    nxt += 1
            if fill < bs:
                break
            pick = rng.choice(fill, size=bs, replace=False)
            images, rows = buf[pick], ids[pick]  # fancy indexing copies
            # fill the holes with the tail of the buffer
            keep = np.setdiff1d(np.arange(fill - bs, fill), pick, assume_unique=True)
            holes = np.sort(pick[pick < fill - bs])
            buf[holes] = buf[keep]
            ids[holes] = ids[keep]
            fill -= bs
            yield step, images, rows
            step += 1

    def _finish(self, images: np.ndarray, rows: np.ndarray, epoch: int, step: int):
        check_pixels(self.sel.path, images, rows)
        if self.do_augment:
            images = augment(images, np.random.default_rng([self.seed, int(epoch), int(step), 2]))
        x = {"image": images, "ebv": self.sel.ebv[rows].reshape(-1, 1)}
        y = self.sel.labels[rows]
        w = None
        if self.weights is not None:
            w = self.weights[(y * len(self.weights)) // self.n_bins]
        return x, y, w


class Prefetch:
    """Run an iterator in a background thread, `depth` items ahead (exceptions re-raised in the
    consumer), so the accelerator never waits for the host to assemble a batch."""

    _END = object()

    def __init__(self, it: Iterator, depth: int = 4) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(it,), daemon=True)
        self._thread.start()

    def _run(self, it: Iterator) -> None:
        try:
            for item in it:
                while not self._stop.is_set():
                    try:
                        self._q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._q.put((True, self._END))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._q.put((False, exc))

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self):
        ok, item = self._q.get()
        if not ok:
            raise item
        if item is self._END:
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._q.get(timeout=0.1)
            except queue.Empty:
                pass
