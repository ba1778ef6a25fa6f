"""pz-cutout's work as plain functions: 64x64x5 ugriz cutouts of SDSS corrected frames.

For each catalogue row, the frames overlapping its cutout are found per band (a frame index),
each is resampled onto the galaxy's gnomonic grid (SWarp's conventions, Lanczos-3, see
:mod:`photoz_tools.imaging.resample`) and overlapping frames are combined per band with the
median, SWarp's default COMBINE_TYPE, with no background subtraction.

The work is grouped by frame: galaxies are sorted by the frames they need and cut into tasks, and
each task reads (and decompresses) each of its frames once and resamples all its galaxies on it
in one vectorised pass. Tasks run in worker processes and write their rows straight into
memory-mapped arrays in a partial folder next to the output, recording each finished task, so a
killed run resumes where it stopped; the table is assembled from those arrays in input order and
written atomically at the end.

Flags (``cutout_flags``, a bitmask) say what went wrong instead of a silent zero: see FLAG_*.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from photoz_tools.errors import PzError, PzUsageError
from photoz_tools.imaging.frames import BANDS, Frame, load_frame
from photoz_tools.imaging.resample import (
    PIXEL_SCALE_ARCSEC,
    SIZE,
    cutout_world,
    flux_scales,
    lanczos3,
    tan_to_tan,
)
from photoz_tools.paths import require_parent_folder
from photoz_tools.sdss.frameindex import FrameIndex, FrameRef

#: Some pixels of some band have no frame (filled, see ``fill``).
FLAG_EDGE = 1
#: At least one band has no frame at all (the whole band is filled).
FLAG_MISSING_BAND = 2
#: NaN/inf frame pixels reached the cutout (treated as uncovered there).
FLAG_NAN = 4
#: The galaxy's centre is uncovered in at least one band.
FLAG_OFF_FRAME = 8
#: A frame the cutout needs could not be fetched or read.
FLAG_FETCH_FAILED = 16
FLAG_NAMES = {
    FLAG_EDGE: "edge",
    FLAG_MISSING_BAND: "missing_band",
    FLAG_NAN: "nan",
    FLAG_OFF_FRAME: "off_frame",
    FLAG_FETCH_FAILED: "fetch_failed",
}

RESAMPLERS = ("native", "swarp")
FILLS = ("zero", "nan")  # the value of uncovered pixels

#: galaxies resampled in one vectorised gather (bounds the 6x6-block buffer to ~40 MB)
_GATHER_GALAXIES = 64


# --------------------------------------------------------------------------- frame access


class FrameStore:
    """Frames by reference: local files or the SAS cache, decompressed once, a few kept in RAM.

    ``load(ref)`` returns the :class:`Frame` or None when it cannot be had (the error is kept in
    ``errors`` and the affected cutouts are flagged). For the SWarp backend ``fits_path(ref)``
    writes the decompressed frame to a scratch folder once.
    """

    def __init__(
        self,
        sas_url: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        keep: int = 10,
        scratch: str | os.PathLike | None = None,
    ) -> None:
        self.sas_url = sas_url
        self.cache_dir = cache_dir
        self.keep = keep
        self._frames: OrderedDict[str, Frame] = OrderedDict()
        self._client = None
        self.scratch = Path(scratch) if scratch else None
        self.errors: dict[str, str] = {}
        self.reads = 0
        self.bytes_read = 0

    def _sas(self):
        if self._client is None:
            from photoz_tools.sdss.sas import SasClient

            self._client = SasClient(self.sas_url, self.cache_dir)
        return self._client

    def load(self, ref: FrameRef) -> Frame | None:
        if ref.key in self._frames:
            self._frames.move_to_end(ref.key)
            return self._frames[ref.key]
        if ref.key in self.errors:
            return None
        try:
            if ref.path:
                data = Path(ref.path).read_bytes()
                self.bytes_read += len(data)
                frame = load_frame(data, name=ref.path)
            else:  # verified (hence decompressed) by the cache: parse those bytes
                data, fits_bytes = self._sas().get(ref.sas_path)
                self.bytes_read += len(data)
                frame = load_frame(fits_bytes, name=ref.sas_path)
        except (PzError, OSError) as exc:
            self.errors[ref.key] = str(exc)
            return None
        self.reads += 1
        self._frames[ref.key] = frame
        while len(self._frames) > self.keep:
            self._frames.popitem(last=False)
        return frame

    def fits_path(self, ref: FrameRef) -> Path | None:
        """A plain (uncompressed) FITS file of the frame, for SWarp."""
        from photoz_tools.imaging.frames import decompress

        local = Path(ref.path) if ref.path else None
        if local is not None and local.is_file() and not ref.path.endswith((".bz2", ".gz")):
            return local
        if self.scratch is None:
            self.scratch = Path(tempfile.mkdtemp(prefix="pz-swarp-"))
        out = self.scratch / f"frame-{ref.key}.fits"
        if not out.exists():
            tmp = out.with_suffix(".part")
            if local is not None and local.is_file():
                tmp.write_bytes(decompress(local.read_bytes(), ref.path or ""))
            elif local is None:
                tmp.write_bytes(decompress(self._sas().get(ref.sas_path)[0], ref.sas_path))
            else:  # a frame given in memory
                from astropy.io import fits

                frame = self.load(ref)
                if frame is None:
                    return None
                fits.PrimaryHDU(frame.image, header=frame.header).writeto(tmp)
            os.replace(tmp, out)
        return out


# --------------------------------------------------------------------------- the core


def resample_on_frame(
    frame: Frame,
    ra: np.ndarray,
    dec: np.ndarray,
    world: tuple[np.ndarray, np.ndarray] | None = None,
    size: int = SIZE,
    scale_arcsec: float = PIXEL_SCALE_ARCSEC,
) -> tuple[np.ndarray, np.ndarray]:
    """One frame onto the cutout grids of galaxies at (ra, dec): (values, valid), (n, size, size).

    Values are flux-scaled nanomaggies (SWarp's FSCALASTRO FIXED); `valid` is False where
    SWarp gives weight 0 and where the frame holds NaN. `world` (RA, Dec of every cutout pixel,
    from :func:`cutout_world`) can be passed in when it is shared by several frames.
    """
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    if world is None and frame.tan is None:
        world = cutout_world(ra, dec, size, scale_arcsec)
    ny, nx = frame.shape
    scales = flux_scales(frame.pixel_to_world, nx, ny, ra, dec, size, scale_arcsec)
    values = np.empty((ra.size, size, size), dtype=np.float32)
    valid = np.empty((ra.size, size, size), dtype=bool)
    for a in range(0, ra.size, _GATHER_GALAXIES):
        b = min(a + _GATHER_GALAXIES, ra.size)
        if frame.tan is not None:
            x, y = tan_to_tan(frame.tan, ra[a:b], dec[a:b], size, scale_arcsec)
        else:
            x, y = frame.world_to_pixel(world[0][a:b], world[1][a:b])
        v, ok = lanczos3(frame.image, x, y, fill=np.nan)
        v *= scales[a:b, None, None].astype(np.float32)
        values[a:b] = v
        valid[a:b] = ok
    return values, valid


def frame_positions(
    frame: Frame,
    ra: np.ndarray,
    dec: np.ndarray,
    size: int = SIZE,
    scale_arcsec: float = PIXEL_SCALE_ARCSEC,
) -> tuple[np.ndarray, np.ndarray]:
    """1-based frame pixel positions (n, size, size) of the cutout pixels of galaxies."""
    if frame.tan is not None:
        return tan_to_tan(frame.tan, ra, dec, size, scale_arcsec)
    return frame.world_to_pixel(*cutout_world(ra, dec, size, scale_arcsec))


def coverage_on_frame(
    frame: Frame,
    ra: np.ndarray,
    dec: np.ndarray,
    size: int = SIZE,
    scale_arcsec: float = PIXEL_SCALE_ARCSEC,
) -> np.ndarray:
    """Where SWarp would have frame pixels for the cutout pixels (geometry only)."""
    x, y = frame_positions(frame, ra, dec, size, scale_arcsec)
    ny, nx = frame.shape
    with np.errstate(invalid="ignore"):
        fx, fy = np.floor(x), np.floor(y)
        return (fx >= 3) & (fx <= nx - 3) & (fy >= 3) & (fy <= ny - 3)


@dataclass
class RenderResult:
    images: np.ndarray  # (n, size, size, 5) float32
    n_frames: np.ndarray  # (n, 5) int16
    flags: np.ndarray  # (n,) int32 (per-band flags OR-ed; see finish_flags)


def finish_flags(flags: np.ndarray, n_frames: np.ndarray) -> np.ndarray:
    """The row flags from per-band flags (n, 5) or (n,), adding missing bands from n_frames."""
    out = np.bitwise_or.reduce(flags, axis=1) if flags.ndim == 2 else flags.copy()
    out[(n_frames == 0).any(axis=1)] |= FLAG_MISSING_BAND | FLAG_OFF_FRAME
    return out.astype(np.int32)


def render(
    ra: np.ndarray,
    dec: np.ndarray,
    candidates: Sequence[Sequence[int]],
    refs: Sequence[FrameRef],
    store: FrameStore,
    fill: float = 0.0,
    resampler: str = "native",
    size: int = SIZE,
    scale_arcsec: float = PIXEL_SCALE_ARCSEC,
    bands: str = BANDS,
) -> RenderResult:
    """Cutouts of galaxies given, per galaxy, the indices (into `refs`) of candidate frames.

    Each candidate frame is loaded once and resampled for all galaxies that list it; per band
    the frames that cover a pixel are combined with the median (one frame: itself). Only
    `bands` are rendered (the others stay `fill`); the flags are those of these bands, without
    the missing-band flag unless all five bands are rendered (see :func:`finish_flags`).
    """
    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    n = ra.size
    images = np.full((n, size, size, len(BANDS)), fill, dtype=np.float32)
    n_frames = np.zeros((n, len(BANDS)), dtype=np.int16)
    flags = np.zeros(n, dtype=np.int32)
    c0, c1 = (size - 1) // 2, size // 2  # the central pixel(s) around FITS (size+1)/2
    for b, band in enumerate(BANDS):
        if band not in bands:
            continue
        users: dict[int, list[int]] = {}
        for g, cand in enumerate(candidates):
            for f in cand:
                if refs[f].band == band:
                    users.setdefault(f, []).append(g)
        kmax = max((sum(1 for f in cand if refs[f].band == band) for cand in candidates), default=0)
        if kmax == 0:
            continue
        stack = np.full((kmax, n, size, size), np.nan, dtype=np.float32)
        slot = np.zeros(n, dtype=np.intp)
        swarp_inputs: dict[int, list[Path]] = {}
        for f in sorted(users, key=lambda i: refs[i].key):
            gals = np.asarray(users[f], dtype=np.intp)
            frame = store.load(refs[f])
            if frame is None:
                flags[gals] |= FLAG_FETCH_FAILED
                continue
            if resampler == "swarp":
                ok = coverage_on_frame(frame, ra[gals], dec[gals], size, scale_arcsec)
                touched = ok.any(axis=(1, 2))
                path = store.fits_path(refs[f])
                for g in gals[touched]:
                    swarp_inputs.setdefault(int(g), []).append(path)
                n_frames[gals[touched], b] += 1
                continue
            vals, ok = resample_on_frame(frame, ra[gals], dec[gals], None, size, scale_arcsec)
            bad = ok & ~np.isfinite(vals)
            if bad.any():
                flags[gals[bad.any(axis=(1, 2))]] |= FLAG_NAN
                ok &= ~bad
            vals[~ok] = np.nan
            touched = ok.any(axis=(1, 2))
            gt = gals[touched]
            stack[slot[gt], gt] = vals[touched]
            slot[gt] += 1
            n_frames[gt, b] += 1
        if resampler == "swarp":
            from photoz_tools.imaging.swarp import swarp_cutout

            for g, paths in swarp_inputs.items():
                img, weight = swarp_cutout(paths, ra[g], dec[g], size, scale_arcsec)
                img = img.astype(np.float32)
                img[weight <= 0] = np.nan
                stack[0, g] = img
            combined = stack[0]
        elif kmax == 1:
            combined = stack[0]
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                combined = np.nanmedian(stack, axis=0) if kmax > 2 else np.nanmean(stack, axis=0)
        uncovered = np.isnan(combined)
        has = n_frames[:, b] > 0
        partial = uncovered.any(axis=(1, 2)) & has
        flags[partial] |= FLAG_EDGE
        flags[uncovered[:, c0 : c1 + 1, c0 : c1 + 1].any(axis=(1, 2))] |= FLAG_OFF_FRAME
        combined[uncovered] = fill
        images[..., b] = combined
    if bands == BANDS:
        flags = finish_flags(flags, n_frames)
    return RenderResult(images, n_frames, flags)


def cutouts_from_frames(
    ra: Sequence[float] | np.ndarray,
    dec: Sequence[float] | np.ndarray,
    frames: Sequence[Frame | str | os.PathLike],
    fill: float = 0.0,
    resampler: str = "native",
) -> RenderResult:
    """Cutouts of every position from frames in memory or on disk (all tried for all galaxies).

    For notebooks and simulations: ``cutouts_from_frames(ra, dec, ["frame-r-...fits", ...])``.
    """
    loaded = [f if isinstance(f, Frame) else load_frame(f) for f in frames]
    refs = [
        FrameRef(f.band, f.run, f.camcol, f.field, f.rerun, f"{f.name}#{i}")
        for i, f in enumerate(loaded)
    ]  # distinct keys even for frames of one identity
    store = FrameStore(keep=len(loaded))
    for r, f in zip(refs, loaded, strict=True):
        store._frames[r.key] = f
    n = np.atleast_1d(np.asarray(ra)).size
    return render(
        np.asarray(ra), np.asarray(dec), [list(range(len(refs)))] * n, refs, store, fill, resampler
    )


# --------------------------------------------------------------------------- planning


def plan_tasks(
    candidates: Sequence[Sequence[int]],
    refs: Sequence[FrameRef],
    task_rows: int = 256,
    stack_budget: int = 4096,
) -> list[np.ndarray]:
    """Cut the rows into tasks of galaxies that share frames (sorted by the frames they need).

    A task holds at most `task_rows` galaxies and at most `stack_budget` galaxy-frames per band
    (what the per-band median must hold at once), so memory stays bounded on deep fields.
    """
    order_key = {
        i: k
        for k, i in enumerate(
            sorted(
                range(len(refs)),
                key=lambda i: (refs[i].run, refs[i].camcol, refs[i].field, refs[i].band),
            )
        )
    }
    keys = [tuple(sorted(order_key[f] for f in cand)) for cand in candidates]
    order = sorted(range(len(keys)), key=lambda g: keys[g])
    tasks: list[np.ndarray] = []
    cur: list[int] = []
    kmax = 0
    for g in order:
        k = max(1, len(keys[g]) // len(BANDS) + 1)
        if cur and (len(cur) >= task_rows or max(kmax, k) * (len(cur) + 1) > stack_budget):
            tasks.append(np.asarray(cur, dtype=np.int64))
            cur, kmax = [], 0
        cur.append(g)
        kmax = max(kmax, k)
    if cur:
        tasks.append(np.asarray(cur, dtype=np.int64))
    return tasks


# --------------------------------------------------------------------------- the partial folder


@dataclass
class Partial:
    """Memory-mapped results and the finished-task log, next to the output (resume after kill)."""

    folder: Path
    nrows: int
    size: int = SIZE

    def create_or_open(self, signature: dict) -> set[int]:
        """Open a matching partial folder (returns the finished task ids) or start a new one."""
        meta = self.folder / "plan.json"
        if meta.is_file():
            try:
                old = json.loads(meta.read_text())
            except ValueError:
                old = None
            if old == signature and (self.folder / "flags.npy").is_file():
                return self.done()
            shutil.rmtree(self.folder)
        self.folder.mkdir(exist_ok=True)  # beside the output, whose folder must exist
        n, s = self.nrows, self.size
        for band in BANDS:  # one file per band: a task writes one contiguous block
            np.lib.format.open_memmap(
                self.folder / f"image_{band}.npy", "w+", np.float32, (n, s, s)
            ).flush()
        np.lib.format.open_memmap(
            self.folder / "n_frames.npy", "w+", np.int16, (n, len(BANDS))
        ).flush()
        np.lib.format.open_memmap(
            self.folder / "flags.npy", "w+", np.int32, (n, len(BANDS))
        ).flush()
        (self.folder / "done.txt").write_text("")
        tmp = meta.with_suffix(".tmp")
        tmp.write_text(json.dumps(signature))
        os.replace(tmp, meta)
        return set()

    def done(self) -> set[int]:
        out = set()
        for line in (self.folder / "done.txt").read_text().splitlines():
            if line.strip().isdigit():
                out.add(int(line))
        return out

    def write(self, rows: np.ndarray, result: RenderResult, band: str) -> None:
        b = BANDS.index(band)
        for name, arr in (
            (f"image_{band}", result.images[..., b]),
            ("n_frames", result.n_frames[:, b]),
            ("flags", result.flags),
        ):
            mm = np.load(self.folder / f"{name}.npy", mmap_mode="r+")
            if mm.ndim == 2:
                mm[rows, b] = arr
            else:
                mm[rows] = arr
            mm.flush()
            del mm

    def mark_done(self, task: int) -> None:
        with open(self.folder / "done.txt", "a") as f:
            f.write(f"{task}\n")
            f.flush()
            os.fsync(f.fileno())

    def every_row_failed(self, chunk: int = 65536) -> bool:
        """True when frames failed to be fetched and no row got any frame: every cutout would be
        blank (rows that got some bands are flagged, not failed)."""
        flags = np.load(self.folder / "flags.npy", mmap_mode="r")
        nfr = np.load(self.folder / "n_frames.npy", mmap_mode="r")
        any_failed = False
        for a in range(0, self.nrows, chunk):
            if np.asarray(nfr[a : a + chunk]).any():
                return False
            any_failed = any_failed or bool(
                (np.asarray(flags[a : a + chunk]) & FLAG_FETCH_FAILED).any()
            )
        return any_failed

    def rows(self, a: int, b: int, fill: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """images (k, S, S, 5), n_frames (k, 5) and row flags (k,) of rows a..b-1."""
        images = np.stack(
            [np.load(self.folder / f"image_{band}.npy", mmap_mode="r")[a:b] for band in BANDS],
            axis=-1,
        )
        nfr = np.array(np.load(self.folder / "n_frames.npy", mmap_mode="r")[a:b])
        if fill != 0.0:  # bands no task touched (no frame at all) hold the file's zeros
            empty = nfr == 0
            images[np.broadcast_to(empty[:, None, None, :], images.shape)] = fill
        flags = np.array(np.load(self.folder / "flags.npy", mmap_mode="r")[a:b])
        return images, nfr, finish_flags(flags, nfr)


# --------------------------------------------------------------------------- workers


@dataclass
class _Job:
    folder: str
    nrows: int
    refs: list[FrameRef]
    sas_url: str | None
    cache_dir: str | None
    fill: float
    resampler: str
    size: int = SIZE
    store_keep: int = 10  # two fields x five bands: neighbouring groups share frames
    extra: dict = field(default_factory=dict)


_worker_job: _Job | None = None
_worker_store: FrameStore | None = None


def _worker_init(job: _Job) -> None:
    global _worker_job, _worker_store
    _worker_job = job
    _worker_store = FrameStore(job.sas_url, job.cache_dir, keep=job.store_keep)
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _worker_run(
    task: int, band: str, rows: np.ndarray, ra: np.ndarray, dec: np.ndarray, cands: list[list[int]]
) -> tuple[int, int, int, dict[str, str]]:
    job, store = _worker_job, _worker_store
    assert job is not None and store is not None
    reads0, bytes0 = store.reads, store.bytes_read
    result = render(ra, dec, cands, job.refs, store, job.fill, job.resampler, job.size, bands=band)
    Partial(Path(job.folder), job.nrows, job.size).write(rows, result, band)
    errors = {k: v for k, v in store.errors.items()}
    return task, store.reads - reads0, store.bytes_read - bytes0, errors


# --------------------------------------------------------------------------- the command's work


def _candidates_own_field(
    table_cols: dict[str, np.ndarray],
) -> tuple[list[FrameRef], list[list[int]]]:
    """Without a frame index: each galaxy's own field (run, camcol, field[, rerun] columns)."""
    refs: list[FrameRef] = []
    ids: dict[FrameRef, int] = {}
    cands: list[list[int]] = []
    run, camcol, fld = (table_cols[c].astype(int) for c in ("run", "camcol", "field"))
    rerun = table_cols.get("rerun")
    for i in range(run.size):
        rr = str(rerun[i]).strip() if rerun is not None else "301"
        row = []
        for band in BANDS:
            ref = FrameRef(band, int(run[i]), int(camcol[i]), int(fld[i]), rr)
            if ref not in ids:
                ids[ref] = len(refs)
                refs.append(ref)
            row.append(ids[ref])
        cands.append(row)
    return refs, cands


def cutout(
    catalog: Any,
    output: str | os.PathLike | None = None,
    *,
    frames: str | os.PathLike | None = None,
    frame_index: Any = None,
    sas_url: str | None = None,
    cache: str | os.PathLike | None = None,
    ra: str = "ra",
    dec: str = "dec",
    id: str | None = None,
    resampler: str = "native",
    workers: int | None = None,
    fill: str = "zero",
    task_rows: int = 256,
    batch_rows: int = 1024,
    format: str | None = None,
    resume: bool = True,
    preview: str | os.PathLike | None = None,
    preview_count: int = 16,
    command_line: str | None = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
    progress: Any = None,
    partial: str | os.PathLike | None = None,
    extra_metadata: dict[str, str] | None = None,
) -> Any:
    """Cut 64x64x5 ugriz cutouts (nanomaggies) for every row of `catalog`.

    Parameters
    ----------
    catalog : path, '-' or a pyarrow Table with `ra`, `dec` (deg) and id columns.
    output : path or '-' to write a table (atomically); None returns a pyarrow Table.
    frames : folder of frame files (any layout, .fits/.bz2/.gz): no network.
    frame_index : a ``pz-query frames`` table (path or pyarrow Table) to find frames on the
        SAS; without it (and without `frames`), each row's own run/camcol/field columns.
    sas_url, cache : SAS base URL and the local frame cache folder.
    resampler : "native" (numpy Lanczos-3, SWarp's conventions) or "swarp" (Debian's SWarp).
    fill : "zero" (SWarp's convention) or "nan" for uncovered pixels; both are flagged.
    workers : processes (default: all cores); 1 runs in this process.
    partial : the resume folder of a path output [default: ``OUTPUT.partial``]; the
        partitioned run puts it at ``.NAME.partial`` so the output folder stays a dataset.
    extra_metadata : added to the output's metadata (the partitioned run's record).

    Returns the table (output None) or a summary dict. Raises PzError, before anything is
    written, when frames could not be fetched and no row got any frame (every cutout blank).
    """
    import pyarrow as pa

    from photoz_tools import tables

    log = log or (lambda m: None)
    warn = warn or (lambda m: None)
    require_parent_folder(output, "-o")
    require_parent_folder(preview, "--preview")
    check_choices(resampler, fill)
    if resampler == "swarp":
        from photoz_tools.imaging.swarp import swarp_binary

        swarp_binary()  # fails early with a clear line when SWarp is absent
    fill_value = 0.0 if fill == "zero" else float("nan")
    t0 = time.perf_counter()

    # ---- the catalogue's positions (O(N) floats; the rest streams later)
    if not isinstance(catalog, str | os.PathLike | pa.Table) and catalog is not None:
        catalog = _as_arrow(catalog, pa)
    if isinstance(catalog, pa.Table):
        cat_table, reader, cat_name = catalog, None, "catalogue"
        names = catalog.column_names
    else:
        reader = tables.open_table(catalog)
        cat_table, cat_name = None, reader.name
        names = reader.column_names
    lower = {c.lower(): c for c in names}
    ra_col, dec_col = lower.get(ra.lower()), lower.get(dec.lower())
    for want, got, opt in ((ra, ra_col, "--ra"), (dec, dec_col, "--dec")):
        if got is None:
            raise PzError(
                f"{cat_name}: no column {want!r} (columns: {', '.join(names)}); name it with {opt}"
            )
    schema = cat_table.schema if cat_table is not None else reader.schema
    _require_numbers(schema, ra_col, "--ra", cat_name)
    _require_numbers(schema, dec_col, "--dec", cat_name)
    for taken in ("image", "n_frames", "cutout_flags"):
        if taken in lower:
            raise PzError(f"{cat_name}: already has a column {lower[taken]!r}; drop it first")
    id_col = tables.find_id_column(names, id)
    if id is not None and id_col is None:
        raise PzError(f"{cat_name}: no id column {id!r} (columns: {', '.join(names)})")
    own = [lower.get(c) for c in ("run", "camcol", "field", "rerun")]
    pos_cols = [ra_col, dec_col] + [c for c in own if c]

    def batches(columns=None):
        if cat_table is not None:
            t = cat_table if columns is None else cat_table.select(columns)
            yield from t.to_batches(max_chunksize=batch_rows)
        else:
            yield from reader.iter_batches(batch_rows, columns=columns)

    parts: dict[str, list[np.ndarray]] = {c: [] for c in pos_cols}
    for batch in batches(pos_cols):
        for c in pos_cols:
            parts[c].append(np.asarray(tables.column_array(batch, c)))
    cols = {c: (np.concatenate(v) if v else np.zeros(0)) for c, v in parts.items()}
    ra_v = cols[ra_col].astype(np.float64)
    dec_v = cols[dec_col].astype(np.float64)
    nrows = ra_v.size
    bad = ~(np.isfinite(ra_v) & np.isfinite(dec_v)) | (np.abs(dec_v) > 90)
    if bad.any():
        raise PzError(
            f"{cat_name}: {int(bad.sum())} rows with missing or invalid {ra_col}/"
            f"{dec_col} (first at row {int(np.argmax(bad))}); drop them first"
        )

    # ---- which frames each galaxy needs
    if frames is not None:
        index = FrameIndex.from_directory(frames, cache_file=_index_cache(frames, cache))
        refs, candidates = index.refs, index.search(ra_v, dec_v)
        source = f"{len(refs)} frames under {frames}"
    elif frame_index is not None:
        ftab = frame_index if isinstance(frame_index, pa.Table) else tables.read_table(frame_index)
        index = FrameIndex.from_table(ftab, name=str(frame_index))
        refs, candidates = index.refs, index.search(ra_v, dec_v)
        source = f"{len(refs)} frames in the frame index, from {sas_url or 'the SAS'}"
    elif all(own[:3]):
        for c in own[:3]:
            _require_numbers(schema, c, "", cat_name, what="numbers (SDSS run, camcol, field)")
        own_cols = {k: cols[lower[k]] for k in ("run", "camcol", "field")}
        if own[3]:
            own_cols["rerun"] = cols[own[3]]
        refs, candidates = _candidates_own_field(own_cols)
        source = "each row's own field (run, camcol, field)"
        warn(
            "no --frame-index: using each row's own field only; overlapping frames of "
            "neighbouring fields and other epochs are not combined"
        )
    else:
        raise PzError(
            "no frames: give --frames DIR (local frames) or --frame-index FILE (a "
            "'pz-query frames' table), or a catalogue with run, camcol, field columns"
        )
    log(f"{nrows} rows; frames: {source}")

    # ---- tasks, partial folder, resume
    groups = plan_tasks(candidates, refs, task_rows)
    # a task is one group of galaxies in one band: bands need disjoint frames, so the five
    # run in parallel and each frame is still read once per group
    tasks = [
        (g, band)
        for g in range(len(groups))
        for band in BANDS
        if any(refs[f].band == band for row in groups[g] for f in candidates[row])
    ]
    signature = {
        "rows": nrows,
        "ra": float(ra_v.sum()) if nrows else 0.0,
        "dec": float(dec_v.sum()) if nrows else 0.0,
        "refs": len(refs),
        "frames": str(frames),
        "index": str(frame_index)
        if isinstance(frame_index, str | os.PathLike)
        else type(frame_index).__name__,
        "resampler": resampler,
        "fill": fill,
        "groups": [int(t[0]) for t in groups],
        "task_rows": task_rows,
        "ntasks": len(tasks),
    }
    to_stdout = output is None or str(output) == "-"
    tmpdir = None
    if output is not None and not to_stdout and resume:
        folder = Path(partial) if partial is not None else Path(f"{output}.partial")
    else:
        tmpdir = tempfile.mkdtemp(prefix="pz-cutout-")
        folder = Path(tmpdir) / "partial"
    partial = Partial(folder, nrows)
    done = partial.create_or_open(signature)
    todo = [i for i in range(len(tasks)) if i not in done]
    if done:
        log(f"resuming: {len(done)} of {len(tasks)} tasks already done in {folder}")

    # ---- run
    # fetching from the SAS waits on the network as much as on the CPU: twice the cores
    nworkers = workers or (_cores() if frames is not None else max(4, 2 * _cores()))
    nworkers = max(1, min(nworkers, len(todo))) if todo else 1
    job = _Job(
        str(folder), nrows, refs, sas_url, str(cache) if cache else None, fill_value, resampler
    )
    reads = nbytes = 0
    errors: dict[str, str] = {}
    # progress in galaxies: a (group, band) task is 1/5 of its group's galaxies
    from collections import Counter

    bands_of = Counter(g for g, _ in tasks)

    def share(i: int) -> float:
        g = tasks[i][0]
        return len(groups[g]) / bands_of[g]

    if progress is not None:
        progress.update(total=nrows, completed=sum(share(i) for i in done))

    def args(i):
        g, band = tasks[i]
        rows = groups[g]
        return (i, band, rows, ra_v[rows], dec_v[rows], [candidates[r] for r in rows])

    def finished(res):
        nonlocal reads, nbytes
        i, r, b, errs = res
        partial.mark_done(i)
        reads += r
        nbytes += b
        errors.update(errs)
        if progress is not None:
            progress.advance(share(i))

    try:
        if nworkers == 1:
            _worker_init(job)
            for i in todo:
                finished(_worker_run(*args(i)))
        elif todo:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            pool = ProcessPoolExecutor(
                nworkers, mp_context=ctx, initializer=_worker_init, initargs=(job,)
            )
            try:
                pending = [pool.submit(_worker_run, *args(i)) for i in todo]
                for fut in pending:
                    finished(fut.result())
            except BaseException:
                # stop at once: finished tasks are recorded, the rest resume next time
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
        t_render = time.perf_counter() - t0

        for key, msg in list(errors.items())[:3]:
            warn(f"frame {key}: {msg}")
        if len(errors) > 3:
            warn(f"... and {len(errors) - 3} more frames could not be read")
        if nrows and partial.every_row_failed():
            # nothing worth keeping: a rerun (network back, --frames fixed) fetches them again
            shutil.rmtree(folder, ignore_errors=True)
            first = next(iter(errors.items()), None)
            why = (
                f"{len(errors)} frames failed; first: frame {first[0]}: {first[1]}"
                if first
                else "they failed in the run this one resumed"
            )
            raise PzError(
                f"{cat_name}: no frame could be fetched for any of the {nrows} rows ({why}): "
                "check --sas-url, the network or --frames, then rerun"
            )

        # ---- assemble in input order
        meta = {
            "pz_cutout_size": str(SIZE),
            "pz_cutout_pixel_scale_arcsec": str(PIXEL_SCALE_ARCSEC),
            "pz_cutout_bands": BANDS,
            "pz_cutout_resampler": resampler,
            "pz_cutout_fill": fill,
            "pz_cutout_flags": json.dumps({name: bit for bit, name in FLAG_NAMES.items()}),
        }
        meta.update(extra_metadata or {})
        prov = None
        if command_line is not None:
            prov = tables.provenance_metadata(command_line, [str(catalog)] if reader else [])
        out_batches = []
        writer = None
        start = 0
        n_flagged = dict.fromkeys(FLAG_NAMES.values(), 0)
        shown: list[np.ndarray] = []
        cell = (SIZE, SIZE, len(BANDS))
        try:
            for batch in batches():
                stop = start + batch.num_rows
                images, nfr, flg = partial.rows(start, stop, fill_value)
                for bit, name in FLAG_NAMES.items():
                    n_flagged[name] += int(((flg & bit) != 0).sum())
                if preview is not None and sum(len(x) for x in shown) < preview_count:
                    shown.append(images[:preview_count])
                ext = pa.RecordBatch.from_arrays(
                    [*batch.columns, tables.to_arrow(images), tables.to_arrow(nfr), pa.array(flg)],
                    schema=_out_schema(batch.schema, cell, pa, tables),
                )
                del images
                start = stop
                if output is None:
                    out_batches.append(ext)
                    continue
                if writer is None:
                    writer = tables.TableWriter(
                        output, ext.schema, format=format, metadata=meta, provenance=prov
                    )
                writer.write(ext)
            if output is not None:
                if writer is None:  # an empty catalogue still gets a (empty) table
                    import pyarrow as pa2

                    empty = _out_schema(
                        reader.schema if reader else cat_table.schema, cell, pa2, tables
                    )
                    writer = tables.TableWriter(
                        output, empty, format=format, metadata=meta, provenance=prov
                    )
                writer.close()
                writer = None
        finally:
            if writer is not None:
                writer.abort()
        if preview is not None and shown:
            from photoz_tools.imaging.preview import preview_grid

            preview_grid(np.concatenate(shown)[:preview_count], preview)
    finally:
        if reader is not None:
            reader.close()
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    if not tmpdir and output is not None:
        shutil.rmtree(folder, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    summary = {
        "rows": nrows,
        "tasks": len(tasks),
        "frames_read": reads,
        "frames": len({f for cand in candidates for f in cand}),
        "bytes_read": nbytes,
        "frames_failed": len(errors),
        "flagged": n_flagged,
        "seconds": elapsed,
        "render_seconds": t_render,
    }
    for name, count in n_flagged.items():
        if count:
            warn(f"{count} rows flagged {name}")
    distinct = len({f for cand in candidates for f in cand})
    log(
        f"{nrows} cutouts in {elapsed:.1f} s ({nrows / max(elapsed, 1e-9):.1f}/s); "
        f"{reads} frame reads of {distinct} frames, {nbytes / 1e6:.0f} MB"
    )
    if output is None:
        return pa.Table.from_batches(out_batches) if out_batches else None
    return summary


def check_choices(resampler: str, fill: str) -> None:
    """PzUsageError for a --resampler or --fill value outside its choices (a usage error)."""
    for option, value, choices in (("--resampler", resampler, RESAMPLERS), ("--fill", fill, FILLS)):
        if value not in choices:
            raise PzUsageError(f"{option} {value}: use {' or '.join(choices)}")


def _require_numbers(
    schema: Any, column: str, option: str, where: str, what: str = "numbers (degrees)"
) -> None:
    """PzError naming the column when it does not hold plain numbers (strings, lists): checked
    from the schema, before any row is read (a stream on stdin has no header to peek at)."""
    import pyarrow as pa

    t = schema.field(column).type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return
    kind = "strings" if pa.types.is_string(t) or pa.types.is_large_string(t) else str(t)
    about = f" ({option})" if option else ""
    raise PzError(f"{where}: column '{column}'{about} holds {kind}; expected {what}")


def _as_arrow(catalog: Any, pa) -> Any:
    """A dict of arrays, pandas DataFrame or astropy Table as a pyarrow Table."""
    if hasattr(catalog, "colnames"):  # astropy
        return pa.table({c: np.asarray(catalog[c]) for c in catalog.colnames})
    try:
        return pa.table(catalog)
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise PzError(
            f"catalogue: cannot read a {type(catalog).__name__} as a table "
            "(give a path, a pyarrow/astropy Table, a DataFrame or a dict)"
        ) from exc


def _cores() -> int:
    """Cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _index_cache(folder, cache) -> Path | None:
    """Where the footprints of a --frames folder are remembered (by path, size and mtime)."""
    import hashlib

    from photoz_tools.sdss.sas import default_cache_dir

    key = hashlib.sha1(str(Path(folder).resolve()).encode()).hexdigest()[:16]
    return Path(cache or default_cache_dir()) / "frameindex" / f"{key}.json"


def _out_schema(schema, cell_shape, pa, tables):
    """The catalogue's fields + image (fixed-shape tensor) + n_frames (int16[5]) + cutout_flags."""
    img_type = tables.to_arrow(np.zeros((1, *cell_shape), dtype=np.float32)).type
    nfr_type = tables.to_arrow(np.zeros((1, len(BANDS)), dtype=np.int16)).type
    return pa.schema(
        list(schema)
        + [
            pa.field("image", img_type, metadata={"unit": "nanomaggy"}),
            pa.field("n_frames", nfr_type),
            pa.field("cutout_flags", pa.int32()),
        ],
        metadata=schema.metadata,
    )
