"""Which SDSS corrected frames overlap a cutout: an index of frame footprints and its search.

Two sources: the frames table written by ``pz-query frames`` (run, rerun, camcol, field and the
sky box ra_min..ra_max, dec_min..dec_max of each field; one row per field covers all five bands,
or a ``band``/``filter`` column gives one row per frame), or a folder of frame files in any layout,
compressed or not, indexed from their HDU 0 headers (``--frames DIR``: no network).

The boxes are only a first cut (with a margin of a cutout's half-diagonal plus the kernel); the
exact test, whether any cutout pixel lands on valid frame pixels, happens with the frame's WCS.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from photoz_tools.errors import PzError

BANDS = "ugriz"
#: Half-diagonal of a 64x64 cutout of 0.396" plus the 3-pixel kernel reach, with room to spare.
MARGIN_DEG = 30.0 / 3600.0
_CELL_DEG = 0.25
_FRAME_SUFFIXES = (".fits", ".fit", ".fits.bz2", ".fit.bz2", ".fits.gz", ".fit.gz", ".fts")


@dataclass(frozen=True)
class FrameRef:
    """One corrected frame: its SDSS identity and, for a local mirror, its file."""

    band: str
    run: int
    camcol: int
    field: int
    rerun: str = "301"
    path: str | None = None

    @property
    def filename(self) -> str:
        return f"frame-{self.band}-{self.run:06d}-{self.camcol}-{self.field:04d}.fits.bz2"

    @property
    def sas_path(self) -> str:
        """Path below the SAS photoObj base URL: frames/301/RUN/CAMCOL/frame-...fits.bz2."""
        return f"frames/{self.rerun}/{self.run}/{self.camcol}/{self.filename}"

    @property
    def key(self) -> str:
        """A file-name-safe identity (with a hash of the path for local files)."""
        key = f"{self.band}-{self.run:06d}-{self.camcol}-{self.field:04d}-{self.rerun}"
        if self.path:
            import hashlib

            key += "-" + hashlib.sha1(self.path.encode()).hexdigest()[:10]
        return key


class FrameIndex:
    """Frame footprints (RA/Dec boxes) with a grid-hashed overlap search."""

    def __init__(
        self,
        refs: Sequence[FrameRef],
        ra_min: np.ndarray,
        ra_max: np.ndarray,
        dec_min: np.ndarray,
        dec_max: np.ndarray,
    ) -> None:
        self.refs = list(refs)
        self.ra_min = np.asarray(ra_min, dtype=np.float64) % 360.0
        self.ra_max = np.asarray(ra_max, dtype=np.float64) % 360.0
        self.dec_min = np.asarray(dec_min, dtype=np.float64)
        self.dec_max = np.asarray(dec_max, dtype=np.float64)
        # RA width going east from ra_min (handles boxes across RA = 0)
        self.ra_width = (self.ra_max - self.ra_min) % 360.0
        self._cells: dict[tuple[int, int], list[int]] | None = None

    def __len__(self) -> int:
        return len(self.refs)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_table(cls, table, bands: str = BANDS, name: str = "frames table") -> FrameIndex:
        """From a ``pz-query frames`` table (pyarrow Table, or anything with named columns)."""
        cols = {c.lower(): c for c in table.column_names}
        need = ["run", "camcol", "field", "ra_min", "ra_max", "dec_min", "dec_max"]
        missing = [c for c in need if c not in cols]
        if missing:
            raise PzError(
                f"{name}: no column {missing[0]!r} (a frames table from "
                f"'pz-query frames' has {', '.join(need)}, rerun)"
            )

        def col(c):
            return np.asarray(table.column(cols[c]).to_numpy(zero_copy_only=False))

        run, camcol, fld = col("run").astype(int), col("camcol").astype(int), col("field")
        fld = fld.astype(int)
        rerun = col("rerun").astype(str) if "rerun" in cols else np.full(len(run), "301")
        box = [col(c).astype(float) for c in ("ra_min", "ra_max", "dec_min", "dec_max")]
        band_col = cols.get("band") or cols.get("filter")
        refs, sel = [], []
        for i in range(len(run)):
            row_bands = (
                str(table.column(band_col)[i].as_py()).strip().lower() if band_col else bands
            )
            for b in row_bands:
                if b in bands:
                    refs.append(
                        FrameRef(b, int(run[i]), int(camcol[i]), int(fld[i]), str(rerun[i]).strip())
                    )
                    sel.append(i)
        sel_a = np.asarray(sel, dtype=int)
        return cls(refs, *(b[sel_a] for b in box))

    @classmethod
    def from_directory(
        cls,
        folder: str | os.PathLike,
        bands: str = BANDS,
        cache_file: str | os.PathLike | None = None,
    ) -> FrameIndex:
        """Index every corrected frame under `folder` (any layout) from its HDU 0 header.

        Files that are not SDSS-like frames (psField, other tables) are skipped. With
        `cache_file`, footprints are remembered by path, size and mtime, so a large mirror is
        read once.
        """
        root = Path(folder)
        if not root.is_dir():
            raise PzError(f"--frames {folder}: no such folder")
        entries = _footprints(root, cache_file)
        refs, boxes = [], []
        seen: dict[tuple, int] = {}
        # one file per frame: a mirror holding frame-r-...fits and .fits.bz2 must not count twice
        for key, e in sorted(entries.items(), key=lambda kv: kv[0].endswith((".bz2", ".gz"))):
            if e.get("skip") or e["band"] not in bands:
                continue
            ident = (e["band"], e["run"], e["camcol"], e["field"], e["rerun"])
            if ident in seen and e["run"] >= 0:
                continue
            seen[ident] = len(refs)
            refs.append(FrameRef(e["band"], e["run"], e["camcol"], e["field"], e["rerun"], key))
            boxes.append((e["ra_min"], e["ra_max"], e["dec_min"], e["dec_max"]))
        if not refs:
            raise PzError(
                f"--frames {folder}: no SDSS corrected frames found (frame-*.fits"
                "[.bz2|.gz] with a celestial WCS in HDU 0)"
            )
        b = np.asarray(boxes, dtype=np.float64)
        return cls(refs, b[:, 0], b[:, 1], b[:, 2], b[:, 3])

    # ------------------------------------------------------------------ search

    def _grid(self) -> dict[tuple[int, int], list[int]]:
        if self._cells is None:
            cells: dict[tuple[int, int], list[int]] = defaultdict(list)
            ncell = int(round(360.0 / _CELL_DEG))
            boxes: dict[tuple[float, ...], list[int]] = defaultdict(list)
            for i, box in enumerate(
                zip(
                    self.ra_min.tolist(),
                    self.ra_width.tolist(),
                    self.dec_min.tolist(),
                    self.dec_max.tolist(),
                    strict=True,
                )
            ):
                boxes[box].append(i)  # the five bands of a field share one box
            for (ra_min, width, dec_min, dec_max), members in boxes.items():
                d0 = int(np.floor((dec_min - 2 * MARGIN_DEG) / _CELL_DEG))
                d1 = int(np.floor((dec_max + 2 * MARGIN_DEG) / _CELL_DEG))
                # the grid holds boxes grown by twice the default margin (RA: over cos dec)
                cosd = np.cos(np.radians(min(max(abs(dec_min), abs(dec_max)) + 0.1, 89.9)))
                mra = 2 * MARGIN_DEG / cosd
                r0 = int(np.floor((ra_min - mra) / _CELL_DEG))
                r1 = int(np.floor((ra_min + width + mra) / _CELL_DEG))
                for dc in range(d0, d1 + 1):
                    for rc in range(r0, r1 + 1):
                        cells[(dc, rc % ncell)].extend(members)
            self._cells = dict(cells)
        return self._cells

    def search(
        self, ra: Iterable[float], dec: Iterable[float], margin_deg: float = MARGIN_DEG
    ) -> list[list[int]]:
        """For each position, the indices (into ``refs``) of frames whose box, grown by
        `margin_deg`, contains it."""
        if margin_deg > 2 * MARGIN_DEG:
            raise ValueError(f"margin_deg {margin_deg} exceeds the index grid's margin")
        grid = self._grid()
        ncell = int(round(360.0 / _CELL_DEG))
        ra_a = np.asarray(ra, dtype=float) % 360.0
        dec_a = np.asarray(dec, dtype=float)
        cells = (
            np.floor(dec_a / _CELL_DEG).astype(np.int64) * ncell
            + np.floor(ra_a / _CELL_DEG).astype(np.int64) % ncell
        )
        out: list[list[int]] = [[] for _ in range(ra_a.size)]
        order = np.argsort(cells, kind="stable")
        bounds = np.flatnonzero(np.diff(cells[order])) + 1
        # one broadcast test per occupied cell: its galaxies x its frames
        for grp in np.split(order, bounds):
            if grp.size == 0:
                continue
            cell = int(cells[grp[0]])
            cand = grid.get((cell // ncell, cell % ncell))
            if not cand:
                continue
            c = np.asarray(cand)
            a, d = ra_a[grp][:, None], dec_a[grp][:, None]
            mra = margin_deg / np.maximum(np.cos(np.radians(d)), 1e-3)
            inside = (d >= self.dec_min[c] - margin_deg) & (d <= self.dec_max[c] + margin_deg)
            inside &= (a - (self.ra_min[c] - mra)) % 360.0 <= self.ra_width[c] + 2 * mra
            for g, row in zip(grp, inside, strict=True):
                out[g] = c[row].tolist()
        return out


def _footprints(root: Path, cache_file: str | os.PathLike | None) -> dict[str, dict]:
    """Footprints of the frame-like files under `root` by resolved path (``{"skip": True}`` for
    files that are not frames), read from their headers or, where the path, size and mtime
    match, from `cache_file`, which is then updated."""
    cached: dict[str, dict] = {}
    if cache_file and Path(cache_file).is_file():
        try:
            cached = json.loads(Path(cache_file).read_text())
        except (OSError, ValueError):
            cached = {}
    entries: dict[str, dict] = {}
    for path in sorted(
        p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(_FRAME_SUFFIXES)
    ):
        st = path.stat()
        key = str(path.resolve())
        old = cached.get(key)
        if old and old.get("size") == st.st_size and old.get("mtime") == st.st_mtime:
            entries[key] = old
            continue
        info = footprint_from_file(path)
        if info is None:
            info = {"skip": True}  # not a frame: remembered too, not re-read
        info.update(size=st.st_size, mtime=st.st_mtime)
        entries[key] = info
    if cache_file and entries != cached:
        try:
            _atomic_write_text(Path(cache_file), json.dumps(entries))
        except OSError:  # a read-only cache only costs speed
            pass
    return entries


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_header_bytes(path: Path) -> bytes:
    """Just the first header's blocks of a (possibly compressed) FITS file."""
    raw = path.open("rb")
    with raw:
        magic = raw.read(3)
        raw.seek(0)
        f = (
            bz2.open(raw)
            if magic == b"BZh"
            else gzip.open(raw)
            if magic[:2] == b"\x1f\x8b"
            else raw
        )
        out = b""
        while True:
            block = f.read(2880)
            if len(block) < 2880:
                return out + block
            out += block
            if any(block[i : i + 8] == b"END     " for i in range(0, 2880, 80)):
                return out
            if len(out) > 2880 * 200:
                return out


def footprint_from_file(path: str | os.PathLike) -> dict | None:
    """Band, run, camcol, field, rerun and RA/Dec box of a frame file; None if not a frame."""
    from astropy.io import fits
    from astropy.wcs import WCS

    path = Path(path)
    try:
        data = _read_header_bytes(path)
        if not data.startswith(b"SIMPLE"):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.Header.fromstring(data.decode("ascii", "replace"))
            if int(header.get("NAXIS", 0)) != 2 or "CTYPE1" not in header:
                return None
            w = WCS(header, naxis=2)
            if not w.has_celestial:
                return None
    except (OSError, EOFError, ValueError, KeyError, fits.VerifyError):
        return None
    from photoz_tools.imaging.frames import FrameError, frame_band, frame_identity

    try:
        band = frame_band(header, path.name)
    except FrameError:
        return None
    nx, ny = int(header["NAXIS1"]), int(header["NAXIS2"])
    xs = np.array([1, nx / 2, nx, nx, nx, nx / 2, 1, 1], dtype=float)
    ys = np.array([1, 1, 1, ny / 2, ny, ny, ny, ny / 2], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ra, dec = w.all_pix2world(xs, ys, 1)
    ra0 = float(ra[0])
    dra = (ra - ra0 + 180.0) % 360.0 - 180.0
    run, camcol, field = frame_identity(header, path.name)
    return {
        "band": band,
        "run": run,
        "camcol": camcol,
        "field": field,
        "rerun": str(header.get("RERUN", "301")).strip(),
        "ra_min": (ra0 + float(dra.min())) % 360.0,
        "ra_max": (ra0 + float(dra.max())) % 360.0,
        "dec_min": float(dec.min()),
        "dec_max": float(dec.max()),
    }


def refs_to_json(refs: Sequence[FrameRef]) -> list[dict]:
    return [asdict(r) for r in refs]


def refs_from_json(items: Sequence[dict]) -> list[FrameRef]:
    return [FrameRef(**d) for d in items]
