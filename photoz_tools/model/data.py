"""Choosing and streaming training rows from a table with bounded memory (numpy only; the
keras PyDataset that batches them is in feed.py).

One pass over the small scalar columns (z, ebv, split, fold: O(N) floats, as the design allows)
decides which rows train, validate or are held out; images then stream from the table in batches
through a shuffle buffer (memory bounded by the buffer, never by the table). Random rotations by
90 degrees and flips, and optional redshift-balancing weights, are applied per batch with a
random generator derived from (seed, epoch, step), so a run resumed after a crash sees exactly
the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from photoz_tools import tables
from photoz_tools.errors import PzError, PzUsageError
from photoz_tools.pdf import Bins

TRAIN_NAMES = {"train", "training"}
VAL_NAMES = {"val", "valid", "validation"}
TEST_NAMES = {"test", "testing"}
IMAGE_BYTES = 64 * 64 * 5 * 4

IMAGE_SHAPE = (64, 64, 5)  # the network's input: 64x64 pixels, ugriz
IMAGE_SIZE = 64 * 64 * 5


def image_cells(values: np.ndarray, column: str, where: str) -> np.ndarray:
    """A column's cells as (n, 64, 64, 5) images: as they are, or reshaped from 20480 flat
    values in row-major (y, x, band) order (what LSDB and pandas write for an array column);
    any other shape is refused naming the column, its shape and the model's."""
    cell = tuple(values.shape[1:])
    if cell == IMAGE_SHAPE:
        return values
    if cell == (IMAGE_SIZE,):
        return values.reshape(len(values), *IMAGE_SHAPE)
    raise PzError(
        f"{where}: column '{column}' holds cells of shape {cell}; the model takes "
        f"{IMAGE_SHAPE} images (or {IMAGE_SIZE} values, 64x64 ugriz)"
    )


@dataclass
class Selection:
    """Which rows of the table train, validate and are held out, with their labels."""

    path: str
    n_rows: int
    z: np.ndarray  # float64, all rows
    ebv: np.ndarray  # float32, all rows
    train_rows: np.ndarray  # sorted int64 row numbers
    val_rows: np.ndarray
    n_test: int
    n_dropped: int
    val_source: str  # "split column" or "drawn"
    fingerprint: str

    @property
    def labels(self) -> np.ndarray:
        """Bin index per row (-1 outside the range)."""
        return self._labels

    def set_bins(self, bins: Bins) -> None:
        self._labels = np.asarray(bins.index(self.z), dtype=np.int64).reshape(-1)


def _split_kind(values: np.ndarray, where: str) -> np.ndarray:
    """0 train, 1 validation, 2 test for each split value (strings as pz-pack writes them)."""
    out = np.zeros(values.shape[0], dtype=np.int8)
    low = np.char.lower(np.asarray(values, dtype=str))
    known = TRAIN_NAMES | VAL_NAMES | TEST_NAMES
    bad = ~np.isin(low, list(known))
    if bad.any():
        raise PzError(
            f"{where}: column 'split' has value {low[bad][0]!r}; expected "
            "train, validation or test (as pz-pack writes)"
        )
    out[np.isin(low, list(VAL_NAMES))] = 1
    out[np.isin(low, list(TEST_NAMES))] = 2
    return out


def select_rows(
    path: str,
    bins: Bins,
    *,
    z_col: str = "z",
    ebv_col: str = "ebv",
    image_col: str = "image",
    fold: int | None = None,
    val_size: int = 20000,
    seed: int = 0,
    drop_out_of_range: bool = False,
) -> Selection:
    """Scan the scalar columns once and choose training, validation and held-out rows.

    Validation rows come from the `split` column where pz-pack wrote one, else `val_size` rows
    (at most a tenth of the training rows) are drawn with `seed`. `fold` holds out the rows of
    that fold. Redshifts outside the bins are refused with a count unless `drop_out_of_range`.
    """
    with tables.open_table(path) as reader:
        where = reader.name
        names = reader.column_names
        tables.require_columns(reader, [image_col, z_col, ebv_col], what="training dataset")
        lower = {c.lower(): c for c in names}
        split_col = lower.get("split")
        fold_col = lower.get("fold")
        if fold is not None and fold_col is None:
            raise PzUsageError(f"--fold {fold}: {where} has no 'fold' column (pz-pack writes one)")
        cols = [z_col, ebv_col] + [c for c in (split_col, fold_col) if c]
        parts: dict[str, list[np.ndarray]] = {c: [] for c in cols}
        h = hashlib.sha256()
        h.update(f"{reader.num_rows}|{','.join(names)}".encode())
        for batch in reader.iter_batches(columns=cols):
            for c in cols:
                parts[c].append(np.asarray(tables.column_array(batch, c)))
        n = reader.num_rows
    get = {c: (np.concatenate(v) if v else np.zeros(0)) for c, v in parts.items()}
    z = get[z_col].astype(np.float64)
    ebv = get[ebv_col].astype(np.float32)
    h.update(z.tobytes())
    h.update(ebv.tobytes())
    usable = np.ones(n, dtype=bool)
    n_test = 0
    kind = np.zeros(n, dtype=np.int8)
    if split_col:
        kind = _split_kind(get[split_col], where)
        h.update(kind.tobytes())
    if fold is not None:
        folds = get[fold_col].astype(np.int64)
        h.update(folds.tobytes())
        if not (folds == fold).any():
            raise PzUsageError(
                f"--fold {fold}: no row of {where} has fold {fold} "
                f"(folds present: {sorted(set(folds.tolist()))[:20]})"
            )
        # cross-validation: fold k is the test set and every other fold trains, including rows
        # pz-pack marked 'test' for a single-split protocol (validation rows stay validation)
        kind = np.where(folds == fold, 2, np.where(kind == 2, 0, kind)).astype(np.int8)
    n_test = int((kind == 2).sum())
    usable &= kind != 2
    labels = np.asarray(bins.index(z)).reshape(-1)
    outside = usable & (labels < 0)
    n_out = int(outside.sum())
    if n_out and not drop_out_of_range:
        raise PzError(
            f"{where}: {n_out} rows have {z_col} outside the bins "
            f"[{bins.lo:g}, {bins.hi:g}] (or missing); drop them with "
            "--drop-out-of-range"
        )
    usable &= ~outside
    bad_ebv = usable & ~np.isfinite(ebv)
    if bad_ebv.any():
        raise PzError(
            f"{where}: {int(bad_ebv.sum())} training rows have a missing or non-finite "
            f"{ebv_col}; drop them (pz-pack) or fill the column before training"
        )
    if split_col:
        train_rows = np.flatnonzero(usable & (kind == 0))
        val_rows = np.flatnonzero(usable & (kind == 1))
        val_source = "split column"
    else:
        cand = np.flatnonzero(usable)
        n_val = min(int(val_size), len(cand) // 10)
        rng = np.random.default_rng([int(seed), 7919])
        val_rows = np.sort(rng.choice(cand, size=n_val, replace=False)) if n_val else cand[:0]
        train_rows = np.setdiff1d(cand, val_rows)
        val_source = "drawn"
    if len(train_rows) == 0:
        raise PzError(f"{where}: no training rows left (after --fold, split and range cuts)")
    sel = Selection(
        path=str(path),
        n_rows=n,
        z=z,
        ebv=ebv,
        train_rows=train_rows,
        val_rows=val_rows,
        n_test=n_test,
        n_dropped=n_out,
        val_source=val_source,
        fingerprint=h.hexdigest(),
    )
    sel.set_bins(bins)
    return sel


# --------------------------------------------------------------------------- augmentation


def transform(images: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 symmetries of the square: rotate by 90*(k % 4) degrees, then flip if k >= 4."""
    out = np.rot90(images, k % 4, axes=(1, 2))
    if k >= 4:
        out = out[:, :, ::-1]
    return out


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random symmetry of the square per galaxy (rotations by 90 degrees and flips)."""
    ks = rng.integers(0, 8, size=len(images))
    out = np.empty_like(images)
    for k in range(8):
        sel = ks == k
        if sel.any():
            out[sel] = transform(images[sel], k)
    return out


def balance_weights(
    labels: np.ndarray, n_bins: int, n_coarse: int = 20, max_weight: float = 10.0
) -> np.ndarray:
    """Per-bin sample weights that flatten the redshift distribution (coarse bins, capped, mean 1
    over the training rows): the paper's footnote 6 and the group's 2022 balanced batches,
    as weights so that streaming stays sequential."""
    coarse = (labels * n_coarse) // n_bins
    counts = np.bincount(coarse, minlength=n_coarse).astype(np.float64)
    w = np.where(counts > 0, counts[counts > 0].mean() / np.maximum(counts, 1), 0.0)
    w = np.minimum(w, max_weight)
    per_row = w[coarse]
    per_bin_coarse = w / per_row.mean()
    return per_bin_coarse.astype(np.float32)


# --------------------------------------------------------------------------- streaming


def iter_images(
    path: str, rows: np.ndarray, image_col: str = "image", chunk_rows: int = 1024
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream (row numbers, images) for the selected sorted `rows`, in table order."""
    if len(rows) == 0:
        return
    offset = 0
    with tables.open_table(path, columns=[image_col]) as reader:
        for batch in reader.iter_batches(batch_rows=chunk_rows, columns=[image_col]):
            n = batch.num_rows
            lo, hi = np.searchsorted(rows, [offset, offset + n])
            if hi > lo:
                local = rows[lo:hi] - offset
                imgs = image_cells(tables.column_array(batch, image_col), image_col, path)
                yield rows[lo:hi], np.ascontiguousarray(imgs[local], dtype=np.float32)
            offset += n
            if offset > rows[-1]:
                break


def iter_eval_batches(
    selection: Selection, rows: np.ndarray, image_col: str = "image", chunk_rows: int = 1024
) -> Iterator[tuple[np.ndarray, dict]]:
    """(row numbers, inputs) for evaluating `rows` (validation), streamed in table order."""
    for r, im in iter_images(selection.path, rows, image_col, chunk_rows):
        yield r, {"image": im, "ebv": selection.ebv[r].reshape(-1, 1)}
