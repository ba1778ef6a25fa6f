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

``.npz`` files: ``np.load`` ignores ``mmap_mode`` inside a zip and would read the 54 GB cube at
once, so :class:`NpyMember` parses the ``.npy`` header of a zip member itself and reads rows
incrementally from the (stored or deflated) member stream.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from photoz_tools.errors import PzError, PzUsageError

if TYPE_CHECKING:
    import pyarrow as pa

IMAGE_SHAPE = (64, 64, 5)
SPLITS = ("train", "validation", "test")

# pack_flags bits (kept rows only carry them with --bad flag; with --bad drop they are all 0)
NONFINITE = 1  # a NaN or inf pixel
CUTOUT_FLAGGED = 2  # pz-cutout's flags column has a bit of --flag-mask set
MISSING_BAND = 4  # n_frames == 0 in a band, or a band identically zero
FLAG_NAMES = {
    NONFINITE: "NaN/inf pixels",
    CUTOUT_FLAGGED: "flagged by pz-cutout",
    MISSING_BAND: "missing band",
}

# The paper's Main Galaxy Sample cut (Appendix A) and the column names it is looked for under.
MGS_CUT = (
    (("dered_petro_r", "petromag_r_dered", "dered_petromag_r", "petror_dered"), "<=", 17.8),
    (("z", "zspec", "z_spec"), "<=", 0.4),
    (("primtarget", "prim_target"), ">=", 64),
)
# Renames applied to the authors' npz labels by default (case-insensitive): the design's names.
NPZ_DEFAULT_MAP = {
    "ebv": "ebv",
    "z": "z",
    "zphot": "zphot_b16",
    "zphot_err": "zphot_b16_err",
    "zphoterr": "zphot_b16_err",
}
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

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------- npz streaming


class NpyMember:
    """One ``.npy`` member of a zip, read row by row without loading it.

    ``zipfile`` hands out a stream for stored and deflated members alike; the header is parsed
    with ``numpy.lib.format`` and then ``read(k)`` returns the next k rows as an array.
    """

    def __init__(self, zf: zipfile.ZipFile, member: str, where: str) -> None:
        from numpy.lib import format as npformat

        self.name = member[:-4] if member.endswith(".npy") else member
        self.where = where
        self._fp = zf.open(member)
        try:
            version = npformat.read_magic(self._fp)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(self._fp)
            elif version == (2, 0):
                shape, fortran, dtype = npformat.read_array_header_2_0(self._fp)
            else:  # 3.0: a utf-8 header, otherwise as 2.0
                hlen = int.from_bytes(self._fp.read(4), "little")
                header = ast.literal_eval(self._fp.read(hlen).decode("utf-8"))
                shape, fortran = header["shape"], header["fortran_order"]
                dtype = npformat.descr_to_dtype(header["descr"])
        except (ValueError, SyntaxError, KeyError) as exc:
            raise PzError(f"{where}: member {member} is not a readable .npy array ({exc})") from exc
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype: np.dtype = dtype
        self.fortran = bool(fortran)
        self.rows = self.shape[0] if self.shape else 0
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * dtype.itemsize
        self._done = 0

    def read(self, k: int) -> np.ndarray:
        """The next ``k`` rows (fewer at the end) as a native-byte-order array."""
        if self.dtype.hasobject:
            raise PzError(
                f"{self.where}: {self.name} holds Python objects (pickled); pz-pack "
                "does not unpickle downloaded files: re-save it as plain arrays"
            )
        if self.fortran and len(self.shape) > 1:
            raise PzError(
                f"{self.where}: {self.name} is stored in Fortran order, so its rows "
                "cannot be streamed: re-save it with np.ascontiguousarray"
            )
        k = max(0, min(k, self.rows - self._done))
        want = k * self.row_bytes
        data = self._fp.read(want)
        if len(data) < want:  # a stream may answer short: keep reading
            parts = [data]
            got = len(data)
            while got < want:
                more = self._fp.read(want - got)
                if not more:
                    raise PzError(
                        f"{self.where}: {self.name} is truncated after "
                        f"{self._done + got // max(self.row_bytes, 1)} of {self.rows} "
                        "rows (incomplete download?)"
                    )
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        self._done += k
        arr = np.frombuffer(
            data, dtype=self.dtype, count=k * max(1, int(np.prod(self.row_shape, dtype=np.int64)))
        ).reshape((k, *self.row_shape))
        return _native(arr)

    def iter_chunks(self, rows: int) -> Iterator[np.ndarray]:
        while self._done < self.rows:
            yield self.read(rows)

    def close(self) -> None:
        self._fp.close()


def _native(arr: np.ndarray) -> np.ndarray:
    """Arrow wants native byte order (the npz may be big-endian)."""
    if arr.dtype.names:
        if any(not arr.dtype[n].isnative for n in arr.dtype.names):
            return arr.astype(arr.dtype.newbyteorder("="))
        return arr
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _members(zf: zipfile.ZipFile) -> list[str]:
    return [n for n in zf.namelist() if n.endswith(".npy")]


def _ci(names: Sequence[str], *wanted: str) -> str | None:
    """The first of `wanted` present in `names`, case-insensitively (the name as stored)."""
    lower = {n.lower(): n for n in names}
    for w in wanted:
        if w.lower() in lower:
            return lower[w.lower()]
    return None


def parse_label_map(items: Sequence[str] | None) -> dict[str, str]:
    """``["EBV=ebv,zphot=zphot_b16", "x="]`` -> {"EBV": "ebv", ...}; an empty NEW drops OLD."""
    out: dict[str, str] = {}
    for item in items or ():
        for pair in item.split(","):
            pair = pair.strip()
            if not pair:
                continue
            if "=" not in pair:
                raise PzUsageError(f"--label-map: {pair!r} is not OLD=NEW")
            old, new = (s.strip() for s in pair.split("=", 1))
            if not old:
                raise PzUsageError(f"--label-map: {pair!r} has no OLD name")
            out[old] = new
    return out


class NpzSource:
    """The authors' ``sdss.npz`` (``cube`` + ``labels`` record array) or the example format
    (``data`` + ``z`` + ``ebv`` + any other per-galaxy arrays), read as a stream of batches."""

    def __init__(
        self,
        path: str | Path,
        label_map: dict[str, str] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.path = str(path)
        self.where = self.path
        try:
            self._zf = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as exc:
            raise PzError(f"{self.path}: not a readable .npz file ({exc})") from exc
        members = _members(self._zf)
        heads = {m: NpyMember(self._zf, m, self.where) for m in members}
        try:
            self._layout(heads, label_map or {}, log or (lambda s: None))
        finally:
            for h in heads.values():
                h.close()

    def _layout(
        self, heads: dict[str, NpyMember], label_map: dict[str, str], log: Callable[[str], None]
    ) -> None:
        cube = None
        for key in ("cube.npy", "data.npy"):
            if key in heads:
                cube = key
                break
        if cube is None:  # any 4-d member of 64x64x5 images
            cube = next((m for m, h in heads.items() if len(h.shape) == 4), None)
        if cube is None:
            raise PzError(
                f"{self.where}: no image cube (members: "
                f"{', '.join(m[:-4] for m in heads) or 'none'}); expected 'cube' "
                "(the authors' sdss.npz) or 'data' (their example file)"
            )
        h = heads[cube]
        if h.row_shape == IMAGE_SHAPE:
            self.channels_first = False
        elif h.row_shape == (IMAGE_SHAPE[2], *IMAGE_SHAPE[:2]):
            self.channels_first = True
            log(f"{self.where}: {h.name} is (N, 5, 64, 64): transposing to (N, 64, 64, 5)")
        else:
            raise PzError(
                f"{self.where}: {h.name} has shape {h.shape}; pz-pack needs "
                "(N, 64, 64, 5) ugriz cutouts"
            )
        if h.dtype.kind != "f":
            raise PzError(f"{self.where}: {h.name} has dtype {h.dtype}; images must be floats")
        self.cube = cube
        self.rows = h.rows
        # per-galaxy columns: fields of structured members, and plain (N,) / (N, k) members
        self.columns: list[tuple[str, str, str | None]] = []  # (output name, member, field)
        skipped = []
        for m, hm in heads.items():
            if m == cube:
                continue
            if hm.rows != self.rows or not hm.shape:
                skipped.append(f"{hm.name}{list(hm.shape)}")
                continue
            if hm.dtype.names:
                for f in hm.dtype.names:
                    self.columns.append((f, m, f))
            else:
                self.columns.append((hm.name, m, None))
        if skipped:
            log(f"{self.where}: skipped members not of {self.rows} rows: {', '.join(skipped)}")
        kinds = {m: (hm.dtype, hm.row_shape) for m, hm in heads.items()}
        # names: default renames (case-insensitive), then the user's map (exact, then ci)
        renamed: list[tuple[str, str, str | None]] = []
        self.labels_info: list[tuple[str, str, str]] = []  # (label, dtype and shape, output)
        used, changes = set(), []
        for name, m, f in self.columns:
            new = NPZ_DEFAULT_MAP.get(name.lower(), name)
            hit = name if name in label_map else _ci(list(label_map), name)
            if hit is not None:
                new = label_map[hit]
                used.add(hit)
            if new:
                renamed.append((new, m, f))
            if new != name:
                changes.append(f"{name}->{new or '(dropped)'}")
            dt, shape = kinds[m]
            if f is not None:
                dt, shape = dt[f].base, dt[f].shape
            self.labels_info.append((name, f"{dt}{list(shape) if shape else ''}", new or "-"))
        unknown = set(label_map) - used
        if unknown:
            raise PzUsageError(
                f"--label-map: no label {', '.join(sorted(unknown))} in "
                f"{self.where} (labels: {', '.join(n for n, _, _ in self.columns)})"
            )
        self.columns = renamed
        names = [n for n, _, _ in self.columns]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise PzUsageError(
                f"{self.where}: two labels named {', '.join(sorted(dup))} after "
                "renaming; fix with --label-map OLD=NEW"
            )
        if changes:
            log(f"{self.where}: renamed labels {', '.join(changes)} (--label-map to change)")

    @property
    def column_names(self) -> list[str]:
        return [n for n, _, _ in self.columns]

    def _open(self, member: str) -> NpyMember:
        return NpyMember(self._zf, member, self.where)

    def iter_columns(
        self, names: Sequence[str], batch_rows: int
    ) -> Iterator[dict[str, np.ndarray]]:
        """Only the named label columns, chunk by chunk (pass 1: ids, z, cut columns)."""
        wanted = [(n, m, f) for n, m, f in self.columns if n in names]
        members = sorted({m for _, m, _ in wanted})
        streams = {m: self._open(m) for m in members}
        try:
            for _ in range(0, self.rows, batch_rows):
                chunks = {m: s.read(batch_rows) for m, s in streams.items()}
                yield {n: _column(chunks[m], f) for n, m, f in wanted}
        finally:
            for s in streams.values():
                s.close()

    def iter_batches(self, batch_rows: int) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """(images (k, 64, 64, 5) float32, {column: (k, ...) array}) for consecutive rows."""
        members = sorted({m for _, m, _ in self.columns})
        cube = self._open(self.cube)
        streams = {m: self._open(m) for m in members}
        try:
            for _ in range(0, self.rows, batch_rows):
                img = cube.read(batch_rows)
                if self.channels_first:
                    img = np.ascontiguousarray(img.transpose(0, 2, 3, 1))
                if img.dtype != np.float32:
                    img = img.astype(np.float32)
                chunks = {m: s.read(batch_rows) for m, s in streams.items()}
                yield img, {n: _column(chunks[m], f) for n, m, f in self.columns}
        finally:
            cube.close()
            for s in streams.values():
                s.close()

    def close(self) -> None:
        self._zf.close()


def _column(chunk: np.ndarray, fieldname: str | None) -> np.ndarray:
    col = chunk if fieldname is None else chunk[fieldname]
    if col.ndim == 2 and col.shape[1] == 1:  # the example file's z and ebv are (N, 1)
        col = col[:, 0]
    return np.ascontiguousarray(col)


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
            f"{where}: id {dup[0]!r} appears more than once ({len(np.unique(dup))} "
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
        self.flag_values = np.concatenate(flags).astype(np.int64) if flags else None
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
        from photoz_tools import tables

        cols = [*self.cut_columns, self.image]
        start = 0
        for b in self.reader.iter_batches(self.batch_rows, columns=cols):
            n = b.num_rows
            img = tables.column_array(b, self.image)
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
) -> PackSummary:
    """Build a dataset from cutouts + catalogue (tables) or from the authors' ``.npz``.

    Output columns: the id, the catalogue's (or npz labels') columns, the cutouts' other
    non-image columns, ``fold`` (int16, 0..k-1), ``split`` ("train", "validation", "test"),
    ``pack_flags`` (int16 bitmask, see NONFINITE, CUTOUT_FLAGGED, MISSING_BAND) and ``image``
    ((64, 64, 5) float32) last. Returns the counts.

    Rows are written in a uniform random order drawn from `seed` (the folds and splits do not
    depend on it), through temporary files beside the output when they exceed `buffer_bytes`
    (default ``$PZ_PACK_BUFFER_MB``, 1024 MB); `keep_order` keeps the image source's order.
    """
    import pyarrow as pa

    from photoz_tools import tables
    from photoz_tools.shuffle import ShuffleBufferTooSmall, bucket_shuffle, random_keys

    log = log or (lambda s: None)
    advance = advance or (lambda n: None)
    if folds < 1 or (test_fold is not None and folds < 2):
        raise PzUsageError(f"--folds {folds}: need at least 2 folds to hold one out as test")
    if test_fold is not None and not 0 <= test_fold < folds:
        raise PzUsageError(f"--test-fold {test_fold}: folds are 0..{folds - 1}")
    if validation < 0:
        raise PzUsageError(f"--validation {validation:g}: must be >= 0")
    if bad not in ("drop", "flag"):
        raise PzUsageError(f"--bad {bad}: choose drop or flag")
    if batch_rows < 1:
        raise PzUsageError("--batch-rows must be >= 1")
    if not keep_order and buffer_bytes is None:
        buffer_bytes = buffer_bytes_from_env()
    label_map = dict(label_map or {})
    src_name = str(source) if source not in (None, "-") else "-"
    is_npz = src_name != "-" and (
        src_name.lower().endswith(".npz")
        or (
            Path(src_name).is_file()
            and zipfile.is_zipfile(src_name)
            and not src_name.lower().endswith((".parquet", ".pq", ".fits", ".fit"))
        )
    )
    summary = PackSummary(
        bad_action=bad,
        folds=folds,
        output=str(output or "-"),
        shuffle_seed=None if keep_order else seed,
    )

    # ---- pass 1: ids, labels for the cut and stratification, joins
    if is_npz:
        if catalog is not None:
            raise PzUsageError("--catalog: a .npz carries its labels; join tables, not npz")
        npz = NpzSource(src_name, label_map, log)
        id_name = tables.find_id_column(npz.column_names, id_column)
        if id_column and id_name is None:
            raise PzUsageError(
                f"--id {id_column}: no such label in {src_name} "
                f"(labels: {', '.join(npz.column_names)})"
            )
        need = [
            c
            for c in npz.column_names
            if c == id_name or _ci([c], *(n for names, _, _ in MGS_CUT for n in names)) is not None
        ]
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
        summary.source_rows = n
        tsrc = None
    else:
        if catalog is not None and str(catalog) == "-" and src_name == "-":
            raise PzUsageError("only one of INPUT and --catalog can be stdin")
        tsrc = _TableSource(
            src_name, None if catalog is None else str(catalog), id_column, label_map, batch_rows
        )
        ids, labels, cat_index, pre = tsrc.prepass()
        n = len(ids)
        summary.source_rows = n
        keep = cat_index >= 0
        if tsrc.cat is not None:
            summary.catalog_rows = tsrc.cat.num_rows
            summary.no_catalog = int((~keep).sum())
            summary.no_cutout = int(tsrc.cat.num_rows - keep.sum())
        if tsrc.flag_values is not None:
            pre[(tsrc.flag_values & flag_mask) != 0] |= CUTOUT_FLAGGED
        id_name = tsrc.id
    if mgs_cut:
        cut = mgs_mask(labels, n, log)
        summary.cut = int((keep & ~cut).sum())
        keep &= cut
    if bad == "drop":
        for bit, why in FLAG_NAMES.items():
            if bit != NONFINITE:
                summary.bad[why] = int((keep & ((pre & bit) != 0)).sum())
        keep &= pre == 0
    z_name = _ci(list(labels), "z")
    if stratify is None:
        stratify = z_name is not None
    elif stratify and z_name is None:
        raise PzUsageError("--stratify: no column 'z' to stratify on (--label-map OLD=z)")
    kept = np.flatnonzero(keep)
    if not len(kept):
        raise PzError(f"{src_name}: no rows left to pack ({_explain(summary)})")
    fold = np.full(n, -1, dtype=np.int16)
    split = np.full(n, -1, dtype=np.int8)
    zk = np.asarray(labels[z_name], np.float64)[kept] if stratify else None
    fold[kept] = assign_folds(ids[kept], zk, folds, seed)
    split[kept] = assign_splits(ids[kept], fold[kept], test_fold, validation, seed)
    del labels

    # ---- pass 2: stream images, check them, write
    if total is not None:
        total(n)
    split_names = pa.array(list(SPLITS))
    image_type = pa.fixed_shape_tensor(pa.float32(), IMAGE_SHAPE)
    tail_fields = [
        pa.field("fold", pa.int16()),
        pa.field("split", pa.string()),
        pa.field("pack_flags", pa.int16()),
        pa.field("image", image_type, metadata={"unit": "nanomaggy"}),
    ]
    metadata = {
        "pz_pack": json.dumps(
            {
                "folds": folds,
                "seed": seed,
                "stratify_z": bool(stratify),
                "test_fold": test_fold,
                "validation": validation,
                "bad": bad,
                "flag_mask": flag_mask,
                "mgs_cut": mgs_cut,
                "order": "source" if keep_order else "shuffled",
                "shuffle_seed": None if keep_order else seed,
            }
        )
    }
    if tsrc is not None:  # how the cutouts were made travels with them
        metadata.update(
            {k: v for k, v in tsrc.reader.metadata.items() if k.startswith("pz_cutout")}
        )
    provenance = tables.provenance_metadata(
        command_line or "pz-pack", [src_name] + ([str(catalog)] if catalog is not None else [])
    )
    counts = np.zeros((3, folds), dtype=np.int64)
    bad_counts = dict.fromkeys(FLAG_NAMES.values(), 0)
    if bad == "drop":
        bad_counts.update(summary.bad)
    writer = None
    schema = None

    def npz_arrays(
        cols: dict[str, np.ndarray], local: np.ndarray, g: np.ndarray
    ) -> tuple[list[pa.Field], list[pa.Array]]:
        """Columns of an npz batch, the id first as in every table of the toolkit."""
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

    def batches() -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
        """(source row numbers, the rows kept of them) batch by batch, in the source's order."""
        nonlocal schema
        start = 0
        stream = npz.iter_batches(batch_rows) if is_npz else tsrc.iter_batches()
        for img, cols in stream:
            k = len(img)
            local = np.flatnonzero(keep[start : start + k])
            sel_img = img if len(local) == k else img[local]  # no copy when all are kept
            flags = pre[start + local] | image_flags(sel_img)
            if bad == "drop":
                nonfinite = (flags & NONFINITE) != 0
                bad_counts[FLAG_NAMES[NONFINITE]] += int(nonfinite.sum())
                bad_counts[FLAG_NAMES[MISSING_BAND]] += int(
                    (((flags & MISSING_BAND) != 0) & ~nonfinite).sum()
                )
                good = flags == 0
                if not good.all():
                    local, sel_img, flags = local[good], sel_img[good], flags[good]
            else:
                for bit, why in FLAG_NAMES.items():
                    bad_counts[why] += int(((flags & bit) != 0).sum())
            g = start + local
            if is_npz:
                fields, arrays = npz_arrays(cols, local, g)
            else:
                fields, arrays = tsrc.fields, cols(local)
            fo, sp = fold[g], split[g]
            np.add.at(counts, (sp.astype(np.int64), fo.astype(np.int64)), 1)
            arrays += [
                pa.array(fo),
                split_names.take(pa.array(sp.astype(np.int32))),
                pa.array(flags.astype(np.int16)),
                tables.to_arrow(sel_img),
            ]
            if schema is None:
                schema = pa.schema([*fields, *tail_fields])
            rb = pa.RecordBatch.from_arrays(arrays, schema=schema)
            summary.rows += rb.num_rows
            advance(k)
            start += k
            yield g, rb

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
        source = batches()
        first = next(source, None)  # the first batch fixes the schema
        if first is None:
            raise PzError(f"{src_name}: no rows to pack")
        source = itertools.chain([first], source)
        writer = tables.TableWriter(
            output, schema, format=format, metadata=metadata, provenance=provenance
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
                    schema,
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
        summary.bad = {w: c for w, c in bad_counts.items() if c}
        if not summary.rows:
            raise PzError(
                f"{src_name}: no rows left to pack ({_explain(summary)}); "
                "--bad flag keeps rows with bad images"
            )
        summary.per_split_fold = {s: counts[i].tolist() for i, s in enumerate(SPLITS)}
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if tsrc is not None:
            tsrc.close()
        if is_npz:
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
