"""pz-pack's work: join a catalogue and its cutouts (or read the authors' ``sdss.npz``) into a
training-ready dataset with ``fold``, ``split`` and ``pack_flags`` columns.

Images stream through in batches; only O(N) scalars (ids, z, the catalogue's non-image columns)
are held in memory. Output rows are in a seeded uniform random order by default, because
training reads a dataset front to back and a shuffle buffer there only mixes neighbours: the
rows go through :func:`photoz_tools.shuffle.bucket_shuffle`, whose memory is bounded by
``PZ_PACK_BUFFER_MB`` (temporary bucket files beside the output hold the rest). The order is
said on stderr and recorded in the ``pz_pack`` metadata; ``keep_order`` (``--keep-order``) keeps
the image source's order instead, so a dataset can be compared row by row with its input.

Folds are a function of (seed, k, the set of ids kept, their z) only, not of the input's row
order: rows are put in a canonical order (by id, or by z then id when stratifying) before the
seeded assignment, so re-running pz-cutout in another order gives the same folds.

``.npz`` files are streamed by :mod:`photoz_tools.npz` (``np.load`` would read the 54 GB cube at
once). Labels that cannot be right are flagged per row in ``pack_flags`` (BAD_EBV, BAD_Z) and
dropped or kept by ``--bad`` like bad images, with a count; a dataset without ``z`` is said.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photoz_tools.errors import PzError, PzUsageError
from photoz_tools.npz import (  # noqa: F401  (re-exported: dataset.NpzSource, ...)
    IMAGE_SHAPE,
    NPZ_DEFAULT_MAP,
    NpyMember,
    NpzSource,
    _ci,
    parse_label_map,
)

if TYPE_CHECKING:
    import pyarrow as pa

SPLITS = ("train", "validation", "test")

# pack_flags bits (kept rows only carry them with --bad flag; with --bad drop they are all 0)
NONFINITE = 1  # a NaN or inf pixel
CUTOUT_FLAGGED = 2  # pz-cutout's flags column has a bit of --flag-mask set
MISSING_BAND = 4  # n_frames == 0 in a band, or a band identically zero
BAD_EBV = 8  # ebv NaN, inf or negative: the network's second input cannot be right
BAD_Z = 16  # z missing (NaN) or outside [Z_TRUTH_MIN, Z_TRUTH_MAX]: no truth to train on
FLAG_NAMES = {
    NONFINITE: "NaN/inf pixels",
    CUTOUT_FLAGGED: "flagged by pz-cutout",
    MISSING_BAND: "missing band",
    BAD_EBV: "NaN/inf or negative ebv",
    BAD_Z: "missing or impossible z",
}

# The paper's Main Galaxy Sample cut (Appendix A) and the column names it is looked for under.
MGS_CUT = (
    (("dered_petro_r", "petromag_r_dered", "dered_petromag_r", "petror_dered"), "<=", 17.8),
    (("z", "zspec", "z_spec"), "<=", 0.4),
    (("primtarget", "prim_target"), ">=", 64),
)
UNITS = {"ra": "deg", "dec": "deg", "ebv": "mag", "dered_petro_r": "mag", "image": "nanomaggy"}
# pz-cutout's bitmask; never SDSS's photometric `flags`, which pz-cutout passes through
CUTOUT_FLAG_COLUMNS = ("cutout_flags",)
BUFFER_ENV = "PZ_PACK_BUFFER_MB"  # the shuffle's memory budget in MB (fractions allowed)
DEFAULT_BUFFER_MB = 1024


def buffer_bytes_from_env() -> int:
    """The shuffle's memory budget: ``$PZ_PACK_BUFFER_MB`` megabytes (default 1024)."""
    text = os.environ.get(BUFFER_ENV, "").strip()
    if not text:
        return DEFAULT_BUFFER_MB << 20
    try:
        mb = float(text)
    except ValueError:
        mb = float("nan")
    if not (math.isfinite(mb) and mb > 0):
        raise PzUsageError(f"{BUFFER_ENV}={text}: give the shuffle's memory in MB, e.g. 1024")
    return max(1, int(mb * (1 << 20)))


@dataclass
class PackSummary:
    """Counts reported on stderr and stored in the output's ``pz_pack`` metadata."""

    source_rows: int = 0
    catalog_rows: int | None = None
    no_catalog: int = 0  # image rows whose id is not in the catalogue
    no_cutout: int = 0  # catalogue rows without an image row
    cut: int = 0  # removed by the MGS cut
    bad: dict[str, int] = field(default_factory=dict)  # reason -> rows (dropped or flagged)
    bad_action: str = "drop"
    rows: int = 0  # rows written
    per_split_fold: dict[str, list[int]] = field(default_factory=dict)
    folds: int = 5
    output: str = "-"
    shuffle_seed: int | None = None  # rows in a random order drawn with this seed; None: source's
    notes: list[str] = field(default_factory=list)  # warnings said while packing (no z, ...)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------- folds and splits


def assign_folds(ids: np.ndarray, z: np.ndarray | None, k: int, seed: int) -> np.ndarray:
    """Seeded fold 0..k-1 per row, balanced to one row; stratified in z when `z` is given.

    Rows are first put in a canonical order (by id, or by z then id) so that the answer does not
    depend on the input's row order. Stratified: consecutive blocks of k rows in z each get a
    random permutation of the folds, so every fold sees the same z distribution.
    """
    n = len(ids)
    rng = np.random.default_rng([seed, 0])
    if z is None:
        order = np.argsort(ids, kind="stable")
        labels = rng.permutation(np.arange(n) % k)
    else:
        order = np.lexsort((ids, z))  # NaN z sort last: they form their own blocks
        blocks = math.ceil(n / k)
        labels = np.argsort(rng.random((blocks, k)), axis=1).ravel()[:n]
    fold = np.empty(n, dtype=np.int16)
    fold[order] = labels
    return fold


def assign_splits(
    ids: np.ndarray, fold: np.ndarray, test_fold: int | None, validation: float, seed: int
) -> np.ndarray:
    """Split code per row (0 train, 1 validation, 2 test): fold `test_fold` is the test set; a
    seeded random `validation` (a count >= 1, or a fraction < 1 of the rest) is validation."""
    split = np.zeros(len(ids), dtype=np.int8)
    if test_fold is not None:
        split[fold == test_fold] = 2
    rest = np.flatnonzero(split == 0)
    rest = rest[np.argsort(ids[rest], kind="stable")]  # canonical order, as for folds
    n_val = int(validation) if validation >= 1 else int(round(validation * len(rest)))
    if n_val > len(rest):
        raise PzUsageError(
            f"--validation {validation:g}: only {len(rest)} rows outside the test fold"
        )
    if n_val:
        rng = np.random.default_rng([seed, 1])
        split[rng.choice(rest, size=n_val, replace=False)] = 1
    return split


def image_flags(images: np.ndarray, n_frames: np.ndarray | None = None) -> np.ndarray:
    """pack_flags bits NONFINITE and MISSING_BAND per image (n, 64, 64, 5).

    One pass: the per-band sum of squares is NaN/inf where a pixel is, and 0 where a band is
    identically zero; the rare rows it points at are then checked exactly (overflow, underflow).
    """
    flags = np.zeros(len(images), dtype=np.int16)
    if not len(images):
        return flags
    r = images.reshape(len(images), -1, images.shape[-1])
    with np.errstate(over="ignore", invalid="ignore"):
        ss = np.einsum("nkb,nkb->nb", r, r)  # (n, bands), ~5x faster than isfinite().all()
    for i in np.flatnonzero(~np.isfinite(ss).all(axis=1)):
        if not np.isfinite(r[i]).all():
            flags[i] |= NONFINITE
    missing = np.zeros(len(images), dtype=bool)
    for i, band in zip(*np.nonzero(ss == 0), strict=True):
        missing[i] |= not (r[i, :, band] != 0).any()
    if n_frames is not None:
        missing |= (np.asarray(n_frames) <= 0).any(axis=1)
    flags[missing] |= MISSING_BAND
    return flags


def mgs_mask(columns: dict[str, np.ndarray], n: int, log: Callable[[str], None]) -> np.ndarray:
    """The MGS cut (dered_petro_r <= 17.8, z <= 0.4, primtarget >= 64) over the columns found."""
    keep = np.ones(n, dtype=bool)
    for names, op, limit in MGS_CUT:
        col = _ci(list(columns), *names)
        if col is None:
            log(f"MGS cut: no column {names[0]}; that part of the cut is not applied")
            continue
        v = np.asarray(columns[col], dtype=np.float64)
        with np.errstate(invalid="ignore"):
            keep &= (v <= limit) if op == "<=" else (v >= limit)
    return keep


def _common_ids(
    a: np.ndarray, b: np.ndarray, what_a: str, what_b: str
) -> tuple[np.ndarray, np.ndarray]:
    """Both id arrays in one comparable dtype (int64, float64 or str); else a clear error."""

    def kind(x: np.ndarray) -> str:
        return {"i": "int", "u": "int", "f": "float", "U": "str", "S": "str", "O": "str"}.get(
            x.dtype.kind, x.dtype.kind
        )

    ka, kb = kind(a), kind(b)
    if ka != kb:
        raise PzError(
            f"ids do not compare: {what_a} is {a.dtype}, {what_b} is {b.dtype}; "
            "cast one (ids lose precision as floats) or pick another --id"
        )
    conv = {
        "int": lambda x: x.astype(np.int64, copy=False),
        "float": lambda x: x.astype(np.float64, copy=False),
        "str": lambda x: x.astype(str),
    }[ka]
    return conv(a), conv(b)


def check_unique(ids: np.ndarray, where: str) -> None:
    """Duplicate ids make the join ambiguous: one clear error naming a repeated id."""
    s = np.sort(ids, kind="stable")
    dup = s[1:][s[1:] == s[:-1]]
    if len(dup):
        raise PzError(
            f"{where}: id {dup[0].item()!r} appears more than once ({len(np.unique(dup))} "
            "ids repeat); deduplicate the table or choose another --id"
        )


# --------------------------------------------------------------------------- table sources


class _TableSource:
    """Cutouts table (streamed) joined with an in-memory catalogue of non-image columns."""

    def __init__(
        self,
        cutouts: str,
        catalog: str | None,
        id_column: str | None,
        label_map: dict[str, str],
        batch_rows: int,
    ) -> None:
        from photoz_tools import tables

        self.batch_rows = batch_rows
        self.reader = tables.open_table(cutouts, batch_rows=batch_rows)
        self.where = self.reader.name
        names = list(self.reader.column_names)
        schema = self.reader.schema
        self.image = _ci(names, "image")
        if self.image is None:
            raise PzError(
                f"{self.where}: no column 'image' (columns: {', '.join(names)}); give "
                "pz-cutout's output as INPUT and the catalogue with --catalog"
            )
        self.id = tables.find_id_column(names, id_column)
        if self.id is None:
            wanted = f"--id {id_column}" if id_column else "objID, specObjID or id"
            raise PzError(f"{self.where}: no id column ({wanted}); name it with --id")
        self.flags = _ci(names, *CUTOUT_FLAG_COLUMNS)
        self.n_frames = _ci(names, "n_frames")
        self.rows = self.reader.num_rows
        # the catalogue: non-image columns in memory, renamed by --label-map
        self.cat = None
        cat_fields: list[pa.Field] = []
        if catalog is None and label_map:
            raise PzUsageError("--label-map renames catalogue or npz labels: give --catalog")
        if catalog is not None:
            with tables.open_table(catalog) as cr:
                self.cat_where = cr.name
                if id_column is None:  # the first id both tables carry
                    both = [
                        c
                        for c in ("objID", "specObjID", "id")
                        if _ci(names, c) and _ci(list(cr.column_names), c)
                    ]
                    if both:
                        self.id = _ci(names, both[0])
                cat_id = _ci(list(cr.column_names), self.id)
                if cat_id is None:
                    raise PzError(
                        f"{cr.name}: no id column {self.id!r} to join on (columns: "
                        f"{', '.join(cr.column_names)}); name it with --id"
                    )
                keep = [
                    f.name
                    for f in cr.schema
                    if f.name.lower() != "image" and not _is_cell_tensor(f.type)
                ]
                if cat_id not in keep:
                    keep.insert(0, cat_id)
                self.cat = cr.read(columns=keep)
            self.cat_id = cat_id
            self.cat, self.cat_names = _rename(self.cat, label_map, exclude={cat_id})
            cat_fields = [self.cat.schema.field(n) for n in self.cat.column_names if n != cat_id]
        taken = {f.name.lower() for f in cat_fields}
        cut_fields = [
            f
            for f in schema
            if f.name != self.image and (f.name == self.id or f.name.lower() not in taken)
        ]
        self.cut_columns = [f.name for f in cut_fields]
        id_field = schema.field(self.id)
        self.fields: list[pa.Field] = (
            [id_field] + cat_fields + [f for f in cut_fields if f.name != self.id]
        )
        self.image_field = schema.field(self.image)
        shape = getattr(self.image_field.type, "shape", None)  # a tensor column says it
        if shape is not None and tuple(shape) != IMAGE_SHAPE:
            raise PzError(_image_shape_message(self.where, self.image, tuple(shape)))
        self.label_map = label_map

    def prepass(self) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """(ids, label columns for z and cuts, catalogue row per image row or -1, flags)."""
        from photoz_tools import tables

        cols = [self.id] + [c for c in (self.flags, self.n_frames) if c]
        ids, flags, nf = [], [], []
        for b in self.reader.iter_batches(self.batch_rows, columns=cols):
            ids.append(tables.column_array(b, self.id))
            if self.flags:
                flags.append(tables.column_array(b, self.flags))
            if self.n_frames:
                nf.append(tables.column_array(b, self.n_frames))
        ids_a = np.concatenate(ids) if ids else np.empty(0, np.int64)
        pre = np.zeros(len(ids_a), dtype=np.int16)
        self.flag_values = None
        if flags:
            values = np.concatenate(flags)
            if values.dtype.kind not in "iub":
                raise PzError(
                    f"{self.where}: column '{self.flags}' holds {values.dtype} values; "
                    "pz-cutout's flags are integer bitmasks"
                )
            self.flag_values = values.astype(np.int64)
        if nf:
            pre[(np.concatenate(nf).reshape(len(ids_a), -1) <= 0).any(axis=1)] |= MISSING_BAND
        check_unique(ids_a, f"{self.where}: column {self.id}")
        if self.cat is None:
            labels = {}
            small = [
                c
                for c in self.cut_columns
                if c != self.id and _is_numeric(self.reader.schema.field(c).type)
            ]  # z and the cut columns: numeric scalars only
            for b in self.reader.iter_batches(self.batch_rows, columns=small):
                for c in small:
                    labels.setdefault(c, []).append(tables.column_array(b, c))
            labels = {c: np.concatenate(v) for c, v in labels.items() if v}
            if not len(ids_a):  # a zero-row table still has its columns (z among them)
                labels = {c: _empty_column(self.reader.schema.field(c).type) for c in small}
            self.cat_index = np.arange(len(ids_a))
            return ids_a, labels, self.cat_index, pre
        cat_ids = tables.column_array(self.cat, self.cat_id)
        check_unique(cat_ids, f"{self.cat_where}: column {self.cat_id}")
        ids_a, cat_ids = _common_ids(
            ids_a, cat_ids, f"{self.where}:{self.id}", f"{self.cat_where}:{self.cat_id}"
        )
        sorter = np.argsort(cat_ids, kind="stable")
        pos = np.searchsorted(cat_ids, ids_a, sorter=sorter)
        pos = np.clip(pos, 0, max(len(cat_ids) - 1, 0))
        idx = sorter[pos] if len(cat_ids) else np.zeros(len(ids_a), np.int64)
        matched = (cat_ids[idx] == ids_a) if len(cat_ids) else np.zeros(len(ids_a), bool)
        self.cat_index = np.where(matched, idx, -1)
        labels = {}
        for c in self.cat.column_names:
            t = self.cat.schema.field(c).type
            if c != self.cat_id and not _is_cell_tensor(t) and _is_numeric(t):
                # per image row; rows without a catalogue row are never kept, any value does
                labels[c] = tables.column_array(self.cat, c)[np.maximum(self.cat_index, 0)]
        return ids_a, labels, self.cat_index, pre

    def iter_batches(self) -> Iterator[tuple[np.ndarray, Any]]:
        """(images, take(local_rows) -> list of arrow arrays in self.fields order)."""
        import pyarrow as pa

        from photoz_tools import tables

        cols = [*self.cut_columns, self.image]
        start = 0
        batches = self.reader.iter_batches(self.batch_rows, columns=cols)
        if not self.rows:  # a zero-row table: one empty batch carries the schema through
            batches = [_empty_batch(pa.schema([self.reader.schema.field(c) for c in cols]))]
        for b in batches:
            n = b.num_rows
            img = _as_images(tables.column_array(b, self.image), self.where, self.image)
            base = start

            def take(local: np.ndarray, b=b, base=base) -> list:
                import pyarrow as pa

                idx = pa.array(local, type=pa.int64())
                out = [b.column(self.id).take(idx)]
                if self.cat is not None:
                    cidx = pa.array(self.cat_index[base + local], type=pa.int64())
                    out += [
                        self.cat.column(c).take(cidx).combine_chunks()
                        for c in self.cat.column_names
                        if c != self.cat_id
                    ]
                out += [b.column(c).take(idx) for c in self.cut_columns if c != self.id]
                return out

            yield img, take
            start += n

    def close(self) -> None:
        self.reader.close()


def _image_shape_message(where: str, column: str, shape: tuple[int, ...]) -> str:
    return (
        f"{where}: column '{column}' holds images of shape {shape}; pz-pack needs "
        f"{IMAGE_SHAPE} ugriz cutouts (pz-cutout's output)"
    )


def _as_images(img: np.ndarray, where: str, column: str) -> np.ndarray:
    """A batch of images as float32 (n, 64, 64, 5); other numbers are cast, shapes refused."""
    if img.shape[1:] != IMAGE_SHAPE:
        raise PzError(_image_shape_message(where, column, img.shape[1:]))
    if img.dtype == np.float32:
        return img
    if img.dtype.kind not in "fiu":
        raise PzError(f"{where}: column '{column}' holds {img.dtype} values; images are numbers")
    return img.astype(np.float32)


def _empty_column(t: pa.DataType) -> np.ndarray:
    """A zero-length numpy column of Arrow type `t`."""
    try:
        return np.empty(0, dtype=t.to_pandas_dtype())
    except (NotImplementedError, TypeError):
        return np.empty(0, dtype=np.float64)


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A zero-row batch of `schema` (extension columns such as the image tensor included)."""
    import pyarrow as pa

    def empty(t: pa.DataType) -> pa.Array:
        if isinstance(t, pa.BaseExtensionType):
            return pa.ExtensionArray.from_storage(t, pa.array([], type=t.storage_type))
        return pa.array([], type=t)

    return pa.RecordBatch.from_arrays([empty(f.type) for f in schema], schema=schema)


def _arrow(array: np.ndarray) -> pa.Array:
    """tables.to_arrow, also for zero rows (a batch whose rows were all dropped)."""
    from photoz_tools import tables

    if len(array):
        return tables.to_arrow(array)
    return tables.to_arrow(np.zeros((1, *array.shape[1:]), array.dtype)).slice(0, 0)


def _is_cell_tensor(t: Any) -> bool:
    import pyarrow as pa

    return (
        isinstance(t, pa.ExtensionType)
        or pa.types.is_fixed_size_list(t)
        and (pa.types.is_fixed_size_list(t.value_type))
    )


def _is_numeric(t: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _rename(
    table: pa.Table, label_map: dict[str, str], exclude: set[str]
) -> tuple[pa.Table, list[str]]:
    """Apply --label-map to a catalogue table (an empty NEW drops the column)."""
    unknown = [k for k in label_map if _ci(table.column_names, k) is None]
    if unknown:
        raise PzUsageError(
            f"--label-map: no column {', '.join(unknown)} in the catalogue "
            f"(columns: {', '.join(table.column_names)})"
        )
    names, keep = [], []
    for c in table.column_names:
        hit = c if c in label_map else _ci(list(label_map), c)
        new = label_map[hit] if (hit is not None and c not in exclude) else c
        if new:
            names.append(new)
            keep.append(c)
    table = table.select(keep).rename_columns(names)
    return table, names


# --------------------------------------------------------------------------- the pack function


def _check_options(
    folds: int, test_fold: int | None, validation: float, bad: str, batch_rows: int
) -> None:
    """Refuse option values that cannot be right, before anything is read."""
    if folds < 1 or (test_fold is not None and folds < 2):
        raise PzUsageError(f"--folds {folds}: need at least 2 folds to hold one out as test")
    if test_fold is not None and not 0 <= test_fold < folds:
        raise PzUsageError(f"--test-fold {test_fold}: folds are 0..{folds - 1}")
    if not validation >= 0:  # also NaN
        raise PzUsageError(f"--validation {validation:g}: must be >= 0")
    if bad not in ("drop", "flag"):
        raise PzUsageError(f"--bad {bad}: choose drop or flag")
    if batch_rows < 1:
        raise PzUsageError("--batch-rows must be >= 1")


def _is_npz(src_name: str) -> bool:
    """A .npz by name, or a zip that is not a table (a renamed download)."""
    return src_name != "-" and (
        src_name.lower().endswith(".npz")
        or (
            Path(src_name).is_file()
            and zipfile.is_zipfile(src_name)
            and not src_name.lower().endswith((".parquet", ".pq", ".fits", ".fit"))
        )
    )


@dataclass
class _Pass1:
    """What the first pass learns: ids, labels for the cut, folds and checks, per-row flags."""

    ids: np.ndarray
    labels: dict[str, np.ndarray]
    keep: np.ndarray
    pre: np.ndarray
    id_name: str | None
    where: dict[str, str]  # label -> the file it came from (for messages)
    cat_row: np.ndarray | None = None  # catalogue row of each source row (labels joined)
    cat_name: str | None = None  # the catalogue's name

    def row_of(self, name: str, i: int) -> int:
        """The row number of label `name` for source row `i`, in the file it came from."""
        if self.cat_row is not None and self.where.get(name) == self.cat_name:
            return int(self.cat_row[i])
        return i


def _npz_prepass(
    npz: NpzSource, src_name: str, id_column: str | None, log: Callable[[str], None]
) -> _Pass1:
    """Ids and the labels the cut, the folds and the checks need, without the cube."""
    from photoz_tools import tables

    id_name = tables.find_id_column(npz.column_names, id_column)
    if id_column and id_name is None:
        raise PzUsageError(
            f"--id {id_column}: no such label in {src_name} (labels: {', '.join(npz.column_names)})"
        )
    wanted = [n for names, _, _ in MGS_CUT for n in names] + ["ebv"]
    need = [c for c in npz.column_names if c == id_name or _ci([c], *wanted) is not None]
    acc: dict[str, list[np.ndarray]] = {c: [] for c in need}
    for chunk in npz.iter_columns(need, 65536):
        for c, v in chunk.items():
            acc[c].append(v)
    labels = {c: np.concatenate(v) if v else np.empty(0) for c, v in acc.items()}
    n = npz.rows
    ids = labels.pop(id_name) if id_name else np.arange(n, dtype=np.int64)
    if id_name is None:
        log(f"{src_name}: no id label: numbering rows in a new column 'id' from 0")
    elif ids.dtype.kind == "f" and len(np.unique(ids)) < n:
        # SDSS ids (~1e18) stored as floats lose precision: nothing is joined here, so say
        # so and go on (ties in the fold order then follow the file's order)
        log(
            f"{src_name}: warning: label {id_name} is {ids.dtype} and repeats values (ids "
            "lost precision as floats); it is passed through, not used to join"
        )
    else:
        check_unique(ids, f"{src_name}: label {id_name}")
    keep = np.ones(n, dtype=bool)
    pre = np.zeros(n, dtype=np.int16)
    return _Pass1(ids, labels, keep, pre, id_name, dict.fromkeys(labels, src_name))


def _table_prepass(tsrc: _TableSource, summary: PackSummary, flag_mask: int) -> _Pass1:
    """Ids, the join with the catalogue and the labels; counts of rows joined or not."""
    ids, labels, cat_index, pre = tsrc.prepass()
    keep = cat_index >= 0
    if tsrc.cat is not None:
        summary.catalog_rows = tsrc.cat.num_rows
        summary.no_catalog = int((~keep).sum())
        summary.no_cutout = int(tsrc.cat.num_rows - keep.sum())
    if tsrc.flag_values is not None:
        pre[(tsrc.flag_values & flag_mask) != 0] |= CUTOUT_FLAGGED
    cat_names = set(tsrc.cat.column_names) if tsrc.cat is not None else set()
    where = {c: (tsrc.cat_where if c in cat_names else tsrc.where) for c in labels}
    # a z or ebv column that is not numeric never reaches `labels`: refuse it by name
    for f in tsrc.fields:
        if f.name.lower() in ("z", "ebv") and not _is_numeric(f.type):
            origin = tsrc.cat_where if f.name in cat_names else tsrc.where
            raise PzError(
                f"{origin}: column '{f.name}' holds {f.type} values; "
                f"{'redshifts' if f.name.lower() == 'z' else 'E(B-V)'} must be numbers"
            )
    if tsrc.cat is None:
        return _Pass1(ids, labels, keep, pre, tsrc.id, where)
    return _Pass1(ids, labels, keep, pre, tsrc.id, where, cat_index, tsrc.cat_where)


def _label_flags(p1: _Pass1, source: str, has_catalog: bool, warn: Callable[[str], None]) -> None:
    """Flag rows whose z or ebv cannot be right (BAD_Z, BAD_EBV); say when there is no z.

    A z column most of whose values are not redshifts is the wrong column: refused by name.
    """
    from photoz_tools.metrics import Z_TRUTH_MAX, Z_TRUTH_MIN, impossible_redshift

    z_name = _ci(list(p1.labels), "z")
    if z_name is None:
        hint = (
            "the catalogue has no column z: name it with --label-map OLD=z"
            if has_catalog
            else "join a catalogue with --catalog, or rename a label with --label-map OLD=z"
        )
        warn(f"{source}: no column 'z': the dataset carries no truth for pz-train ({hint})")
    else:
        z = _numeric_label(p1, z_name, "redshifts")
        odd = impossible_redshift(z)
        # judged on the rows joined (others carry a placeholder value)
        n_odd, n_finite = int((odd & p1.keep).sum()), int((np.isfinite(z) & p1.keep).sum())
        if n_odd and 2 * n_odd > n_finite:
            r = int(np.argmax(odd & p1.keep))
            row = p1.row_of(z_name, r)
            raise PzError(
                f"{p1.where[z_name]}: column '{z_name}' does not hold redshifts: "
                f"{n_odd} of {n_finite} values lie outside "
                f"[{Z_TRUTH_MIN:g}, {Z_TRUTH_MAX:g}] (row {row}: {z[r]:g}); "
                "name the redshift column with --label-map OLD=z"
            )
        p1.pre[~np.isfinite(z) | odd] |= BAD_Z
    ebv_name = _ci(list(p1.labels), "ebv")
    if ebv_name is not None:
        ebv = _numeric_label(p1, ebv_name, "E(B-V)")
        with np.errstate(invalid="ignore"):
            p1.pre[~(np.isfinite(ebv) & (ebv >= 0))] |= BAD_EBV


def _numeric_label(p1: _Pass1, name: str, what: str) -> np.ndarray:
    values = np.asarray(p1.labels[name])
    if values.ndim != 1 or values.dtype.kind not in "fiub":
        raise PzError(
            f"{p1.where[name]}: column '{name}' holds {values.dtype} values of shape "
            f"{values.shape[1:]}; {what} must be one number per row"
        )
    return values.astype(np.float64)


def _select(
    p1: _Pass1,
    summary: PackSummary,
    src_name: str,
    *,
    mgs_cut: bool,
    bad: str,
    stratify: bool | None,
    folds: int,
    seed: int,
    test_fold: int | None,
    validation: float,
    log: Callable[[str], None],
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The MGS cut, rows dropped for flags known before the images, then folds and splits.

    Returns (fold, split, stratified) per source row; -1 for rows not kept.
    """
    n = len(p1.ids)
    keep = p1.keep
    if mgs_cut:
        cut = mgs_mask(p1.labels, n, log)
        summary.cut = int((keep & ~cut).sum())
        keep &= cut
    if bad == "drop":
        for bit, why in FLAG_NAMES.items():
            if bit != NONFINITE:
                summary.bad[why] = int((keep & ((p1.pre & bit) != 0)).sum())
        keep &= p1.pre == 0
    z_name = _ci(list(p1.labels), "z")
    if stratify is None:
        stratify = z_name is not None
    elif stratify and z_name is None:
        raise PzUsageError("--stratify: no column 'z' to stratify on (--label-map OLD=z)")
    kept = np.flatnonzero(keep)
    if not len(kept) and n:  # a zero-row input gives a zero-row dataset
        raise PzError(f"{src_name}: no rows left to pack ({_explain(summary)})")
    fold = np.full(n, -1, dtype=np.int16)
    split = np.full(n, -1, dtype=np.int8)
    zk = np.asarray(p1.labels[z_name], np.float64)[kept] if stratify else None
    fold[kept] = assign_folds(p1.ids[kept], zk, folds, seed)
    split[kept] = assign_splits(p1.ids[kept], fold[kept], test_fold, validation, seed)
    return fold, split, bool(stratify)


class _Stream:
    """Pass 2: the kept rows batch by batch as Arrow record batches, images checked on the way.

    It counts rows per split and fold and bad images per reason as it goes.
    """

    def __init__(
        self,
        p1: _Pass1,
        fold: np.ndarray,
        split: np.ndarray,
        *,
        npz: NpzSource | None,
        tsrc: _TableSource | None,
        bad: str,
        folds: int,
        batch_rows: int,
        summary: PackSummary,
        advance: Callable[[int], None],
    ) -> None:
        import pyarrow as pa

        self.p1, self.fold, self.split = p1, fold, split
        self.npz, self.tsrc, self.bad = npz, tsrc, bad
        self.batch_rows, self.summary, self.advance = batch_rows, summary, advance
        self.counts = np.zeros((3, folds), dtype=np.int64)
        self.bad_counts = dict.fromkeys(FLAG_NAMES.values(), 0)
        if bad == "drop":
            self.bad_counts.update(summary.bad)
        self.schema: pa.Schema | None = None
        self.split_names = pa.array(list(SPLITS))
        self.tail_fields = [
            pa.field("fold", pa.int16()),
            pa.field("split", pa.string()),
            pa.field("pack_flags", pa.int16()),
            pa.field(
                "image",
                pa.fixed_shape_tensor(pa.float32(), IMAGE_SHAPE),
                metadata={"unit": "nanomaggy"},
            ),
        ]

    def _npz_arrays(
        self, cols: dict[str, np.ndarray], local: np.ndarray, g: np.ndarray
    ) -> tuple[list[pa.Field], list[pa.Array]]:
        """Columns of an npz batch, the id first as in every table of the toolkit."""
        import pyarrow as pa

        id_name = self.p1.id_name
        names = list(cols)
        arrays = [_arrow(np.ascontiguousarray(cols[c][local])) for c in names]
        if id_name is None:
            names, arrays = ["id", *names], [pa.array(g.astype(np.int64)), *arrays]
        else:
            i = names.index(id_name)
            names = [names[i], *names[:i], *names[i + 1 :]]
            arrays = [arrays[i], *arrays[:i], *arrays[i + 1 :]]
        fields = [
            pa.field(c, a.type, metadata={"unit": UNITS[c]} if c in UNITS else None)
            for c, a in zip(names, arrays, strict=True)
        ]
        return fields, arrays

    def _image_flags(
        self, img: np.ndarray, local: np.ndarray, start: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rows kept, their images, their pack_flags): bad images dropped or counted."""
        sel_img = img if len(local) == len(img) else img[local]  # no copy when all are kept
        flags = self.p1.pre[start + local] | image_flags(sel_img)
        if self.bad == "drop":
            nonfinite = (flags & NONFINITE) != 0
            self.bad_counts[FLAG_NAMES[NONFINITE]] += int(nonfinite.sum())
            self.bad_counts[FLAG_NAMES[MISSING_BAND]] += int(
                (((flags & MISSING_BAND) != 0) & ~nonfinite).sum()
            )
            good = flags == 0
            if not good.all():
                local, sel_img, flags = local[good], sel_img[good], flags[good]
        else:
            for bit, why in FLAG_NAMES.items():
                self.bad_counts[why] += int(((flags & bit) != 0).sum())
        return local, sel_img, flags

    def __iter__(self) -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
        """(source row numbers, the rows kept of them) batch by batch, in the source's order."""
        import pyarrow as pa

        from photoz_tools import tables

        start = 0
        keep = self.fold >= 0
        stream = self.npz.iter_batches(self.batch_rows) if self.npz else self.tsrc.iter_batches()
        for img, cols in stream:
            k = len(img)
            local = np.flatnonzero(keep[start : start + k])
            local, sel_img, flags = self._image_flags(img, local, start)
            g = start + local
            if self.npz is not None:
                fields, arrays = self._npz_arrays(cols, local, g)
            else:
                fields, arrays = self.tsrc.fields, cols(local)
            fo, sp = self.fold[g], self.split[g]
            np.add.at(self.counts, (sp.astype(np.int64), fo.astype(np.int64)), 1)
            arrays += [
                pa.array(fo),
                self.split_names.take(pa.array(sp.astype(np.int32))),
                pa.array(flags.astype(np.int16)),
                tables.to_arrow(sel_img),
            ]
            if self.schema is None:
                self.schema = pa.schema([*fields, *self.tail_fields])
            rb = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
            self.summary.rows += rb.num_rows
            self.advance(k)
            start += k
            yield g, rb


def _metadata(
    tsrc: _TableSource | None, settings: dict[str, Any], keep_order: bool, seed: int
) -> dict[str, str]:
    """The ``pz_pack`` settings, and pz-cutout's metadata (how the cutouts were made)."""
    meta = {
        "pz_pack": json.dumps(
            {
                **settings,
                "order": "source" if keep_order else "shuffled",
                "shuffle_seed": None if keep_order else seed,
            }
        )
    }
    if tsrc is not None:
        meta.update({k: v for k, v in tsrc.reader.metadata.items() if k.startswith("pz_cutout")})
    return meta


def _write(
    stream: _Stream,
    output: str | Path | None,
    *,
    src_name: str,
    n: int,
    seed: int,
    keep_order: bool,
    buffer_bytes: int | None,
    format: str | None,
    metadata: dict[str, str],
    provenance: dict[str, str],
) -> None:
    """Write the stream (shuffled unless keep_order) atomically; a failure leaves nothing."""
    import pyarrow as pa

    from photoz_tools import tables
    from photoz_tools.shuffle import ShuffleBufferTooSmall, bucket_shuffle, random_keys

    writer = None

    def write(rb: pa.RecordBatch) -> None:
        if writer.format == "fits" and not writer.rows_written:
            # FITS fixes a string column's width from the first rows written: pad them so
            # that "validation" fits later (FITS drops trailing blanks on read)
            i = rb.schema.names.index("split")
            cols = list(rb.columns)
            cols[i] = pa.array([v.ljust(10) for v in cols[i].to_pylist()], pa.string())
            rb = pa.RecordBatch.from_arrays(cols, schema=rb.schema)
        writer.write(rb)  # it cuts ~64 MB row groups (~800 images): streaming-sized

    try:
        source = iter(stream)
        first = next(source, None)  # the first batch fixes the schema
        if first is None:  # never: table and .npz sources yield one batch at least
            raise PzError(f"{src_name}: no rows to pack")
        source = itertools.chain([first], source)
        writer = tables.TableWriter(
            output, stream.schema, format=format, metadata=metadata, provenance=provenance
        )
        if keep_order:
            for _, rb in source:
                write(rb)
        else:
            keys = random_keys(n, seed)  # over all source rows: dropped rows leave gaps
            folder = None if writer.dest is None else os.path.dirname(os.path.abspath(writer.dest))
            try:
                bucket_shuffle(
                    ((keys[g], rb) for g, rb in source),
                    stream.schema,
                    n,
                    write,
                    buffer_bytes=buffer_bytes,
                    tmpdir=folder,
                )
            except ShuffleBufferTooSmall as exc:
                raise PzUsageError(
                    f"{BUFFER_ENV}={buffer_bytes / (1 << 20):g}: too small for {src_name}: "
                    f"{exc} (or give --keep-order)"
                ) from None
        summary = stream.summary
        summary.bad = {w: c for w, c in stream.bad_counts.items() if c}
        if not summary.rows and n:
            raise PzError(
                f"{src_name}: no rows left to pack ({_explain(summary)}); --bad flag keeps bad rows"
            )
        summary.per_split_fold = {s: stream.counts[i].tolist() for i, s in enumerate(SPLITS)}
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


def pack(
    source: str | Path = "-",
    output: str | Path | None = "-",
    *,
    catalog: str | Path | None = None,
    id_column: str | None = None,
    folds: int = 5,
    seed: int = 0,
    stratify: bool | None = None,
    test_fold: int | None = 0,
    validation: float = 0.1,
    bad: str = "drop",
    flag_mask: int = -1,
    mgs_cut: bool = False,
    label_map: dict[str, str] | None = None,
    batch_rows: int = 512,
    format: str | None = None,
    keep_order: bool = False,
    buffer_bytes: int | None = None,
    command_line: str | None = None,
    log: Callable[[str], None] | None = None,
    advance: Callable[[int], None] | None = None,
    total: Callable[[int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> PackSummary:
    """Build a dataset from cutouts + catalogue (tables) or from the authors' ``.npz``.

    Output columns: the id, the catalogue's (or npz labels') columns, the cutouts' other
    non-image columns, ``fold`` (int16, 0..k-1), ``split`` ("train", "validation", "test"),
    ``pack_flags`` (int16 bitmask, see NONFINITE, CUTOUT_FLAGGED, MISSING_BAND, BAD_EBV,
    BAD_Z) and ``image`` ((64, 64, 5) float32) last. Returns the counts.

    Rows are written in a uniform random order drawn from `seed` (the folds and splits do not
    depend on it), through temporary files beside the output when they exceed `buffer_bytes`
    (default ``$PZ_PACK_BUFFER_MB``, 1024 MB); `keep_order` keeps the image source's order.
    Warnings that are not counts (no z column) go to `warn` (default `log`) and
    ``PackSummary.notes``.
    """
    from photoz_tools import tables

    log = log or (lambda s: None)
    advance = advance or (lambda n: None)
    _check_options(folds, test_fold, validation, bad, batch_rows)
    if not keep_order and buffer_bytes is None:
        buffer_bytes = buffer_bytes_from_env()
    label_map = dict(label_map or {})
    src_name = str(source) if source not in (None, "-") else "-"
    is_npz = _is_npz(src_name)
    summary = PackSummary(
        bad_action=bad,
        folds=folds,
        output=str(output or "-"),
        shuffle_seed=None if keep_order else seed,
    )

    def say(message: str) -> None:
        summary.notes.append(message)
        (warn or log)(message)

    if is_npz and catalog is not None:
        raise PzUsageError("--catalog: a .npz carries its labels; join tables, not npz")
    if catalog is not None and str(catalog) == "-" and src_name == "-":
        raise PzUsageError("only one of INPUT and --catalog can be stdin")
    npz = tsrc = None
    try:
        # ---- pass 1: ids, labels for the cut, the checks and stratification, joins
        if is_npz:
            npz = NpzSource(src_name, label_map, log)
            p1 = _npz_prepass(npz, src_name, id_column, log)
        else:
            tsrc = _TableSource(
                src_name,
                None if catalog is None else str(catalog),
                id_column,
                label_map,
                batch_rows,
            )
            p1 = _table_prepass(tsrc, summary, flag_mask)
        summary.source_rows = n = len(p1.ids)
        _label_flags(p1, src_name, catalog is not None, say)
        fold, split, stratified = _select(
            p1,
            summary,
            src_name,
            mgs_cut=mgs_cut,
            bad=bad,
            stratify=stratify,
            folds=folds,
            seed=seed,
            test_fold=test_fold,
            validation=validation,
            log=log,
        )
        p1.labels = {}  # O(N) columns no longer needed

        # ---- pass 2: stream images, check them, write
        if total is not None:
            total(n)
        settings = {
            "folds": folds,
            "seed": seed,
            "stratify_z": stratified,
            "test_fold": test_fold,
            "validation": validation,
            "bad": bad,
            "flag_mask": flag_mask,
            "mgs_cut": mgs_cut,
        }
        stream = _Stream(
            p1,
            fold,
            split,
            npz=npz,
            tsrc=tsrc,
            bad=bad,
            folds=folds,
            batch_rows=batch_rows,
            summary=summary,
            advance=advance,
        )
        _write(
            stream,
            output,
            src_name=src_name,
            n=n,
            seed=seed,
            keep_order=keep_order,
            buffer_bytes=buffer_bytes,
            format=format,
            metadata=_metadata(tsrc, settings, keep_order, seed),
            provenance=tables.provenance_metadata(
                command_line or "pz-pack",
                [src_name] + ([str(catalog)] if catalog is not None else []),
            ),
        )
    finally:
        if tsrc is not None:
            tsrc.close()
        if npz is not None:
            npz.close()
    return summary


def _explain(s: PackSummary) -> str:
    parts = [f"{s.source_rows} image rows"]
    if s.catalog_rows is not None:
        parts.append(f"{s.no_catalog} without a catalogue row")
    if s.cut:
        parts.append(f"{s.cut} removed by the MGS cut")
    parts += [f"{c} {w}" for w, c in s.bad.items() if c]
    return ", ".join(parts)


def report(s: PackSummary) -> list[str]:
    """The stderr summary: joins, cuts, bad images, rows per split and fold, the row order."""
    lines = []
    if s.catalog_rows is not None:
        lines.append(
            f"joined {s.source_rows - s.no_catalog} of {s.source_rows} cutouts with "
            f"{s.catalog_rows} catalogue rows; {s.no_catalog} cutouts without a "
            f"catalogue row, {s.no_cutout} catalogue rows without a cutout"
        )
    else:
        lines.append(f"read {s.source_rows} rows")
    if s.cut:
        lines.append(f"MGS cut removed {s.cut} rows")
    width = max(len(x) for x in SPLITS)
    head = " ".join(f"{'fold ' + str(f):>8}" for f in range(s.folds))
    lines.append(f"{'split':<{width}} {head} {'total':>8}")
    for sp, row in s.per_split_fold.items():
        lines.append(f"{sp:<{width}} " + " ".join(f"{c:>8}" for c in row) + f" {sum(row):>8}")
    if s.shuffle_seed is not None:  # outputs never reorder rows silently
        lines.append(
            f"rows written in a random order (seed {s.shuffle_seed}); --keep-order keeps "
            "the source's order"
        )
    lines.append(f"wrote {s.rows} rows to {s.output if s.output != '-' else 'stdout'}")
    return lines
