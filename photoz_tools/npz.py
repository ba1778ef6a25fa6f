"""Streaming the authors' ``sdss.npz`` (or their example file) without loading it.

``np.load`` ignores ``mmap_mode`` inside a zip and would read the 54 GB cube at once, so
:class:`NpyMember` parses the ``.npy`` header of a zip member itself and reads rows
incrementally from the (stored or deflated) member stream; :class:`NpzSource` finds the image
cube and the per-galaxy labels and renames them (``--label-map``). Split out of
:mod:`photoz_tools.dataset`, which packs what it reads: nothing here knows about folds.
"""

from __future__ import annotations

import ast
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from photoz_tools.errors import PzError, PzUsageError

__all__ = ["NpyMember", "NpzSource", "parse_label_map", "NPZ_DEFAULT_MAP", "IMAGE_SHAPE"]

IMAGE_SHAPE = (64, 64, 5)
# Renames applied to the authors' npz labels by default (case-insensitive): the design's names.
NPZ_DEFAULT_MAP = {
    "ebv": "ebv",
    "z": "z",
    "zphot": "zphot_b16",
    "zphot_err": "zphot_b16_err",
    "zphoterr": "zphot_b16_err",
}

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
            for _ in _batch_starts(self.rows, batch_rows):
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
            for _ in _batch_starts(self.rows, batch_rows):
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


def _batch_starts(rows: int, batch_rows: int) -> range:
    """Row offsets of the batches; a zero-row member still gives one (empty) batch, so the
    reader sees every column with its dtype and shape and writes a zero-row table with the
    full schema (as a table source does), not "no rows to pack"."""
    return range(0, max(rows, 1), batch_rows)


def _column(chunk: np.ndarray, fieldname: str | None) -> np.ndarray:
    col = chunk if fieldname is None else chunk[fieldname]
    if col.ndim == 2 and col.shape[1] == 1:  # the example file's z and ebv are (N, 1)
        col = col[:, 0]
    return np.ascontiguousarray(col)
