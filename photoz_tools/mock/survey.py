"""`mock(...)`: a simulated SDSS survey (catalogue, frame index, corrected frames, SAS layout).

The sky is laid out like SDSS imaging: runs scan along RA on the equator, six camcols side by
side in Dec (overlapping by 128 pixels), fields of 1361 new rows overlapping by 128 rows. A main
region sits at RA ~150 (an SDSS stripe-10-like area) and an optional deep region at RA ~330
("Stripe 82") is observed by several runs (epochs), each with its own seeing, sky, and a small
astrometric offset, so pz-cutout has several frames per band to combine there.

Everything is drawn from one seed: the catalogue and frames are identical whatever `jobs` is.
Frames are rendered field by field in worker processes (fork), written atomically, and a
rerun with the same parameters keeps the frames already written (resume after a kill).
The catalogue's photometry is measured from those frames in the same workers (measure.py;
per-field results kept under photometry/ for resume), so the catalogue is written after them.

`mock.json` marks a finished survey: it is renamed into place last, after the frame index,
every frame and the catalogue. Until then the folder holds `.mock.json.partial` (the same
manifest), by which a rerun with the same parameters recognises it and resumes; a folder
without `mock.json` is unfinished, whatever else it holds. A run holds a lock on the folder,
so a second pz-mock on it is refused, and a resume removes the temporaries of killed runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from photoz_tools import __version__
from photoz_tools.errors import PzError, PzUsageError
from photoz_tools.mock import frames as fr
from photoz_tools.mock import measure, render
from photoz_tools.mock.photometry import Photometry, load_model, read_photometry, skipped_line

CAMCOL_STEP = 1920  # pixels between camcol centres (2048 wide: 128 pixels of overlap)
EDGE_MARGIN = 110  # pixels kept free at the region's outer edges (cutouts + epoch offsets)
EPOCH_JITTER = 30  # pixels of astrometric offset between epochs
BAND_JITTER = 3.0  # pixels of offset between the five bands of a field
DRAW_PAD = 200  # pixels around a frame inside which objects are drawn (their light spills in)
MAIN_RUN, DEEP_RUN = 3900, 4200
MANIFEST = "mock.json"  # present only in a finished survey
PARTIAL = ".mock.json.partial"  # the manifest of a survey being made (resume)


@dataclass
class Region:
    """A block of fields scanned by one or several runs."""

    name: str
    ra0: float  # RA of the first field's centre
    dec0: float  # Dec of camcol 1's centre
    ncam: int
    nfields: int
    runs: list[int]
    stripe: int
    ebv_median: float
    field0: int = 11
    offsets: list[tuple[float, float]] = field(default_factory=list)  # per run (dx, dy) pixels
    mjds: list[float] = field(default_factory=list)

    @property
    def field_deg(self) -> float:
        return fr.FIELD_ROWS * fr.PIXEL_DEG

    def centre(self, camcol: int, fld: int) -> tuple[float, float]:
        return (
            self.ra0 + (fld - self.field0) * self.field_deg,
            self.dec0 + (camcol - 1) * CAMCOL_STEP * fr.PIXEL_DEG,
        )

    def bounds(self) -> tuple[float, float, float, float]:
        """(ra_lo, ra_hi, dec_lo, dec_hi) inside which galaxies are placed."""
        m = EDGE_MARGIN * fr.PIXEL_DEG
        half_ra, half_dec = fr.NAXIS2 / 2 * fr.PIXEL_DEG, fr.NAXIS1 / 2 * fr.PIXEL_DEG
        ra_lo = self.ra0 - half_ra + m
        ra_hi = self.ra0 + (self.nfields - 1) * self.field_deg + half_ra - m
        dec_lo = self.dec0 - half_dec + m
        dec_hi = self.dec0 + (self.ncam - 1) * CAMCOL_STEP * fr.PIXEL_DEG + half_dec - m
        return ra_lo, ra_hi, dec_lo, dec_hi

    def area(self) -> float:
        a, b, c, d = self.bounds()
        return (b - a) * (d - c)

    def primary(self, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """camcol and field (of the first run) whose unique area holds each position."""
        cam = np.clip(np.rint((dec - self.dec0) / (CAMCOL_STEP * fr.PIXEL_DEG)), 0, self.ncam - 1)
        fld = np.clip(np.rint((ra - self.ra0) / self.field_deg), 0, self.nfields - 1)
        return cam.astype(np.int64) + 1, fld.astype(np.int64) + self.field0


def _layout(
    name: str,
    n: int,
    per_field: float,
    ra0: float,
    runs: list[int],
    stripe: int,
    ebv_median: float,
    rng: np.random.Generator,
) -> Region:
    nfields_total = max(1, math.ceil(n / per_field))
    # the fewest fields holding them: camcols x fields per camcol, up to six camcols
    ncam = min(
        range(1, min(6, nfields_total) + 1), key=lambda c: (c * math.ceil(nfields_total / c), -c)
    )
    nf = math.ceil(nfields_total / ncam)
    dec0 = -(ncam - 1) / 2 * CAMCOL_STEP * fr.PIXEL_DEG
    reg = Region(name, ra0, dec0, ncam, nf, runs, stripe, ebv_median)
    for k, _ in enumerate(runs):
        off = (0.0, 0.0) if k == 0 else tuple(rng.uniform(-EPOCH_JITTER, EPOCH_JITTER, 2))
        reg.offsets.append((float(off[0]), float(off[1])))
        reg.mjds.append(float(51075 + 3 * k + rng.uniform(0, 2000) * (k > 0)))
    return reg


def _ebv_field(ra: np.ndarray, dec: np.ndarray, median: float, seed: int) -> np.ndarray:
    """A smooth, log-normal dust map (a few random waves of ~0.3-1 degree), like SFD at high
    latitude: E(B-V) varies across the survey, so a network that ignores ebv is biased."""
    rng = np.random.default_rng([seed, 77])
    s = np.zeros_like(ra)
    for _ in range(6):
        k = rng.normal(0, 2 * np.pi / 0.6, 2)
        s += np.cos(k[0] * ra + k[1] * dec + rng.uniform(0, 2 * np.pi))
    return median * np.exp(0.45 * s / np.sqrt(3))


@dataclass
class Stars:
    ra: np.ndarray
    dec: np.ndarray
    mag: np.ndarray  # (n, 5), before extinction
    ebv: np.ndarray

    @property
    def flux(self) -> np.ndarray:
        return render.nanomaggies(self.mag + self.ebv[:, None] * render.EXTINCTION_COEF)


def _stars(n: int, bounds, ebv_median: float, seed: int, rng: np.random.Generator) -> Stars:
    ra = rng.uniform(bounds[0], bounds[1], n)
    dec = rng.uniform(bounds[2], bounds[3], n)
    # number counts rising toward faint magnitudes, 14 < r < 22
    r = 14 + 8 * rng.power(2.2, n)
    gr = np.clip(rng.normal(0.8, 0.4, n), -0.2, 1.6)
    ug = 0.9 + 0.9 * gr + rng.normal(0, 0.15, n)
    ri = np.clip(0.45 * gr - 0.05 + rng.normal(0, 0.05, n), -0.2, 2)
    iz = 0.5 * ri + rng.normal(0, 0.03, n)
    g = r + gr
    mag = np.column_stack([g + ug, g, r, r - ri, r - ri - iz])
    return Stars(ra, dec, mag, _ebv_field(ra, dec, ebv_median, seed))


# --------------------------------------------------------------------------- the survey


@dataclass
class _Sky:
    """What the workers draw: all galaxies (catalogue first, then neighbours), stars, regions."""

    galaxies: render.Galaxies
    stars: Stars
    regions: list[Region]
    seed: int
    out: Path
    compress: bool
    conditions: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]]
    primary: tuple[np.ndarray, np.ndarray, np.ndarray]  # run, camcol, field of catalogue rows
    n_cat: int  # galaxies[:n_cat] are the catalogue's


_SKY: _Sky | None = None  # set before forking the workers


def _conditions(seed: int, run: int, camcol: int, fld: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeing FWHM (arcsec) and sky (counts/pixel) of the five frames of one field."""
    rng = np.random.default_rng([seed, run, camcol, fld, 1])
    r_fwhm = float(np.clip(1.3 * np.exp(0.15 * rng.standard_normal()), 0.9, 2.2))
    fwhm = r_fwhm * fr.FWHM_REL * np.exp(0.03 * rng.standard_normal(5))
    sky = np.array([fr.sky_counts_for(b, rng) for b in range(5)])
    return fwhm, sky


def frame_specs(
    reg: Region, k: int, camcol: int, fld: int, seed: int, conditions
) -> list[fr.FrameSpec]:
    """The five frames (ugriz) of field `fld` of run number k of a region."""
    run = reg.runs[k]
    fwhm, sky = conditions[(run, camcol, fld)]
    rng = np.random.default_rng([seed, run, camcol, fld, 2])
    ra_c, dec_c = reg.centre(camcol, fld)
    dx, dy = reg.offsets[k]
    specs = []
    for b in range(5):
        # whole pixels: the bands of a field stack without resampling for the photometry
        bx, by = np.rint(rng.uniform(-BAND_JITTER, BAND_JITTER, 2))
        specs.append(
            fr.FrameSpec(
                run=run,
                camcol=camcol,
                field=fld,
                band=b,
                crval1=(ra_c + (dy + by) * fr.PIXEL_DEG) % 360.0,
                crval2=dec_c + (dx + bx) * fr.PIXEL_DEG,
                fwhm=float(fwhm[b]),
                sky_counts=float(sky[b]),
                mjd=reg.mjds[k] + (fld - reg.field0) * 36.0 / 86400.0,
                stripe=reg.stripe,
            )
        )
    return specs


def _field_photometry_path(sky: _Sky, run: int, camcol: int, fld: int) -> Path:
    return sky.out / "photometry" / f"{run:06d}-{camcol}-{fld:04d}.npz"


def _render_field(task: tuple[int, int, int, int]) -> tuple[tuple, int, dict | None]:
    """Render and write the five frames of one field of one run, and measure the catalogue
    galaxies whose primary field it is (first run only). Returns (task, frames written,
    measurements or None); the measurements are also kept beside the frames, for resume."""
    import galsim

    sky = _SKY
    assert sky is not None
    ri, k, camcol, fld = task
    reg = sky.regions[ri]
    run = reg.runs[k]
    mine = (
        np.flatnonzero(
            (sky.primary[0] == run) & (sky.primary[1] == camcol) & (sky.primary[2] == fld)
        )
        if k == 0
        else np.empty(0, np.int64)
    )
    saved = _field_photometry_path(sky, run, camcol, fld)
    specs = frame_specs(reg, k, camcol, fld, sky.seed, sky.conditions)
    paths = [sky.out / s.relpath() for s in specs]
    if not sky.compress:
        paths = [p.with_suffix("") for p in paths]
    measuring = k == 0
    if measuring and saved.exists() and all(p.exists() for p in paths):
        with np.load(saved) as f:
            return task, 0, {key: f[key] for key in f.files}
    written = 0
    gal, st = sky.galaxies, sky.stars
    gflux, sflux = gal.flux, st.flux
    residuals, xs, ys, stamps = [], [], [], [[] for _ in mine]
    slot = {int(i): j for j, i in enumerate(mine)}
    labels = best = None
    for spec, path in zip(specs, paths, strict=True):
        b = spec.band
        gx, gy = fr.world_to_pixel(spec, gal.ra, gal.dec)
        xs.append(gx[mine] - 1.0)
        ys.append(gy[mine] - 1.0)
        if path.exists() and not measuring:
            continue
        wcs = fr.galsim_wcs(spec)
        image = galsim.ImageF(fr.NAXIS1, fr.NAXIS2, wcs=wcs)
        psf = render.psf_object(spec.fwhm)
        seg = None
        cat_model = np.zeros((fr.NAXIS2, fr.NAXIS1), np.float32) if measuring else None
        if measuring and b == 2:  # the segmentation map, on the r frame's grid
            labels = np.zeros((fr.NAXIS2, fr.NAXIS1), np.int32)
            best = np.zeros((fr.NAXIS2, fr.NAXIS1), np.float32)
            threshold = measure.SEGMENT_SIGMA * measure.sky_sigma(spec)
        near = (
            (gx > -DRAW_PAD)
            & (gx < fr.NAXIS1 + DRAW_PAD)
            & (gy > -DRAW_PAD)
            & (gy < fr.NAXIS2 + DRAW_PAD)
        )
        sizes = np.zeros(len(gx), np.int64)
        sizes[near] = render.stamp_sizes(gal.take(near), b, spec.fwhm)
        half = sizes / 2 + 1
        # only galaxies whose stamp reaches the frame (a third fewer draws than a fixed pad)
        inside = (
            near
            & (gx > 0.5 - half)
            & (gx < fr.NAXIS1 + 0.5 + half)
            & (gy > 0.5 - half)
            & (gy < fr.NAXIS2 + 0.5 + half)
        )
        for i in np.flatnonzero(inside):
            obj = render.galaxy_object(gal, int(i), b, float(gflux[i, b]))
            catalogued = i < sky.n_cat
            if labels is not None and b == 2:  # footprints of the uncatalogued objects
                seg = None if catalogued else (labels, best, int(i) + 1, threshold)
            stamp = render.draw_object(
                image, obj, psf, float(gx[i]), float(gy[i]), wcs, int(sizes[i]), seg
            )
            if cat_model is not None and catalogued:
                x0, y0 = stamp.bounds.xmin - 1, stamp.bounds.ymin - 1
                measure.add_stamp(cat_model, stamp.array, x0, y0)
                if int(i) in slot:
                    stamps[slot[int(i)]].append((stamp.array.copy(), x0, y0))
        sx, sy = fr.world_to_pixel(spec, st.ra, st.dec)
        ssize = np.where(sflux[:, b] < 100, 48, np.where(sflux[:, b] < 3000, 96, 192))
        inside = (
            (sx > 0.5 - ssize / 2)
            & (sx < fr.NAXIS1 + 0.5 + ssize / 2)
            & (sy > 0.5 - ssize / 2)
            & (sy < fr.NAXIS2 + 0.5 + ssize / 2)
        )
        for i in np.flatnonzero(inside):
            f = float(sflux[i, b])
            size = int(ssize[i])
            if labels is not None and b == 2:
                seg = (labels, best, len(gal) + int(i) + 1, threshold)
            render.draw_object(
                image, psf.withFlux(f), None, float(sx[i]), float(sy[i]), wcs, size, seg
            )
        rng = np.random.default_rng([sky.seed, spec.run, camcol, fld, 3, b])
        calib = fr.flat_field(b, camcol)
        noisy = fr.add_noise(image.array, spec, calib, rng)
        fr.write_frame(path, noisy, spec, rng, compress=sky.compress)
        written += 1
        if cat_model is not None:  # the pixels as the file holds them, less the catalogue
            residuals.append(fr.truncate_mantissa(noisy) - cat_model)
    if not measuring:
        return task, written, None
    meas = _measure(mine, residuals, stamps, xs, ys, labels, best, threshold, specs, gal)
    saved.parent.mkdir(parents=True, exist_ok=True)
    tmp = saved.with_name(f".tmp-{saved.name}")
    with open(tmp, "wb") as fh:
        np.savez(fh, **meas)
    os.replace(tmp, saved)
    return task, written, meas


def _measure(mine, residuals, stamps, xs, ys, labels, best, threshold, specs, gal) -> dict:
    """Stack the five bands on the r grid (whole-pixel offsets) and measure the catalogue."""
    stack = np.empty((5, fr.NAXIS2, fr.NAXIS1), np.float32)
    for b in range(5):
        dx = int(np.rint(np.median(xs[b] - xs[2]))) if len(mine) else 0
        dy = int(np.rint(np.median(ys[b] - ys[2]))) if len(mine) else 0
        stack[b] = measure.shift_into(residuals[b], dx, dy)
        for st in stamps:
            a, x0, y0 = st[b]
            st[b] = (a, x0 - dx, y0 - dy)
    size = render.stamp_sizes(gal.take(mine), 2, specs[2].fwhm) if len(mine) else np.zeros(0)
    meas = measure.measure_catalogued(
        stack, stamps, xs[2], ys[2], labels, best, threshold, specs, np.maximum(size / 2, 40.0)
    )
    meas["index"] = mine
    return meas


def _obj_ids(run: np.ndarray, camcol: np.ndarray, fld: np.ndarray) -> np.ndarray:
    """SDSS-style objIDs (skyVersion 1, rerun 301, run, camcol, field, id within the field)."""
    key = (run.astype(np.int64) << 20) | (camcol.astype(np.int64) << 16) | fld.astype(np.int64)
    order = np.argsort(key, kind="stable")
    ident = np.empty(len(key), dtype=np.int64)
    sk = key[order]
    start = np.r_[0, np.flatnonzero(np.diff(sk)) + 1]
    counts = np.diff(np.r_[start, len(sk)])
    ident[order] = np.arange(len(sk)) - np.repeat(start, counts) + 1
    return (
        (1 << 59)
        | (301 << 48)
        | (run.astype(np.int64) << 32)
        | (camcol.astype(np.int64) << 29)
        | (fld.astype(np.int64) << 16)
        | ident
    )


def _spec_ids(n: int, seed: int) -> np.ndarray:
    """Unique SDSS-style specObjIDs (plate, fiber, mjd bit fields), increasing with the row."""
    i = np.arange(n, dtype=np.int64)
    plate = 266 + i // 640
    fiber = i % 640 + 1
    return (plate << 50) | (fiber << 38) | (np.int64(1630) << 24) | (np.int64(26) << 10)


def _knn_zphot(
    mag: np.ndarray, z: np.ndarray, group: np.ndarray, k: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """A Beck et al. (2016)-like photometric redshift (kNN in magnitude + colour space), leave
    one out (and leaving out renders of the same photometry row): the `zphot_b16` column."""
    from scipy.spatial import cKDTree

    x = np.column_stack([mag[:, 2], -np.diff(mag, axis=1)])
    x = np.where(np.isfinite(x), x, np.nanmean(x, axis=0))  # a failed measurement: no pull
    x = (x - x.mean(0)) / x.std(0)
    reps = int(np.bincount(group).max()) if len(group) else 1
    kk = min(len(z), k + reps)
    _, idx = cKDTree(x).query(x, k=kk)
    idx = np.atleast_2d(idx)
    same = group[idx] == group[:, None]
    zz = np.where(same, np.nan, z[idx])[:, :kk]
    # the k nearest that are not the galaxy itself
    order = np.argsort(np.isnan(zz), axis=1, kind="stable")[:, :k]
    zz = np.take_along_axis(zz, order, axis=1)
    return np.nanmean(zz, axis=1), np.nanstd(zz, axis=1)


def _primary(gal: render.Galaxies, regions: list[Region], region_of: np.ndarray):
    """run, camcol, field whose unique area holds each catalogue galaxy (its first run)."""
    n = len(region_of)
    run, cam, fld = (np.empty(n, np.int64) for _ in range(3))
    for ri, reg in enumerate(regions):
        sel = region_of == ri
        c, f = reg.primary(gal.ra[sel], gal.dec[sel])
        run[sel], cam[sel], fld[sel] = reg.runs[0], c, f
    return run, cam, fld


def _catalogue(
    phot: Photometry,
    gal: render.Galaxies,
    regions: list[Region],
    region_of,
    conditions,
    seed: int,
    rng: np.random.Generator,
    measured: dict[str, np.ndarray] | None = None,
):
    """The pz-query columns (plus the truth a simulation knows) as an Arrow table.

    `measured`: the Petrosian photometry of the frames (flux, flux_err, petro_rad, petro_r50,
    flags per catalogue row). Without frames there is nothing to measure: the magnitudes are
    then the intrinsic Petrosian ones plus noise drawn from the real error law.
    """
    import pyarrow as pa

    from photoz_tools.sdss.queries import MGS_UNITS

    n = len(phot)
    run, cam, fld = _primary(gal, regions, region_of)
    fwhm = np.empty((n, 5))
    sky_nmgy = np.empty((n, 5))
    for j in range(n):
        fw, sk = conditions[(int(run[j]), int(cam[j]), int(fld[j]))]
        fwhm[j] = fw
        sky_nmgy[j] = sk * fr.NMGY / 0.396**2
    ext = gal.extinction
    if measured is None:
        err = phot.err
        dered = phot.mag + err * rng.standard_normal(err.shape)
        petro_rad = petro_r50 = np.full(n, np.nan)
        flags = np.zeros(n, np.int64)
    else:
        dered, err = measure.catalogue_magnitudes(measured["flux"], measured["flux_err"], ext)
        petro_rad, petro_r50 = measured["petro_rad"], measured["petro_r50"]
        flags = measured["flags"]
    zphot_b16, zphot_b16_err = _knn_zphot(dered, phot.z, phot.source_row)
    cols: dict[str, np.ndarray] = {
        "specObjID": _spec_ids(n, seed),
        "objID": _obj_ids(run, cam, fld),
        "ra": gal.ra,
        "dec": gal.dec,
        "z": phot.z,
        "zErr": np.abs(1.5e-5 * (1 + phot.z) * np.exp(0.4 * rng.standard_normal(n))),
    }
    for k, b in enumerate("ugriz"):
        cols[f"dered_petro_{b}"] = dered[:, k]
    for k, b in enumerate("ugriz"):
        cols[f"petroMagErr_{b}"] = err[:, k]
    for k, b in enumerate("ugriz"):
        cols[f"extinction_{b}"] = ext[:, k]
    cols["ebv"] = gal.ebv
    cols["ba"] = gal.ba
    cols["petroRad_r"] = petro_rad
    cols["petroR50_r"] = petro_r50
    cols["flags"] = flags
    for k, b in enumerate("ugriz"):
        cols[f"psfFWHM_{b}"] = fwhm[:, k]
    for k, b in enumerate("ugriz"):
        cols[f"sky_{b}"] = sky_nmgy[:, k]
    cols.update(
        {
            "run": run,
            "rerun": np.full(n, "301"),
            "camcol": cam,
            "field": fld,
            "primtarget": np.full(n, 64, np.int64),
            "zphot_b16": zphot_b16,
            "zphot_b16_err": zphot_b16_err,
        }
    )
    # the truth only a simulation has (pass through to pz-score for binned statistics)
    for k, b in enumerate("ugriz"):
        cols[f"true_mag_{b}"] = gal.mag[:, k]
    cols.update(
        {
            "r50_true": gal.r50,
            "bulge_frac_r": gal.bulge_frac[:, 2],
            "early_type": gal.early,
            "source_row": phot.source_row,
            "region": np.array([regions[i].name for i in region_of]),
        }
    )
    units = {
        **MGS_UNITS,
        "r50_true": "arcsec",
        "petroRad_r": "arcsec",
        "petroR50_r": "arcsec",
        **{f"true_mag_{b}": "mag" for b in "ugriz"},
    }
    fields = []
    arrays = []
    for name, v in cols.items():
        arr = pa.array(v)
        meta = {"unit": units[name]} if name in units else None
        fields.append(pa.field(name, arr.type, metadata=meta))
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _frame_index(regions: list[Region], seed: int, conditions):
    import pyarrow as pa

    from photoz_tools.sdss.queries import FRAMES_UNITS

    rows: dict[str, list] = {
        c: []
        for c in (
            "fieldID",
            "run",
            "rerun",
            "camcol",
            "field",
            "ra_min",
            "ra_max",
            "dec_min",
            "dec_max",
            "mjd",
            "stripe",
        )
    }
    for reg in regions:
        for k, run in enumerate(reg.runs):
            for cam in range(1, reg.ncam + 1):
                for f in range(reg.field0, reg.field0 + reg.nfields):
                    boxes = np.array(
                        [fr.footprint(s) for s in frame_specs(reg, k, cam, f, seed, conditions)]
                    )
                    rows["fieldID"].append((301 << 48) | (run << 32) | (cam << 29) | (f << 16))
                    rows["run"].append(run)
                    rows["rerun"].append("301")
                    rows["camcol"].append(cam)
                    rows["field"].append(f)
                    rows["ra_min"].append(boxes[:, 0].min())
                    rows["ra_max"].append(boxes[:, 1].max())
                    rows["dec_min"].append(boxes[:, 2].min())
                    rows["dec_max"].append(boxes[:, 3].max())
                    rows["mjd"].append(reg.mjds[k])
                    rows["stripe"].append(reg.stripe)
    fields = [
        pa.field(
            c, pa.array(v).type, metadata={"unit": FRAMES_UNITS[c]} if c in FRAMES_UNITS else None
        )
        for c, v in rows.items()
    ]
    return pa.Table.from_arrays([pa.array(v) for v in rows.values()], schema=pa.schema(fields))


@dataclass
class MockResult:
    """What mock() made, for the CLI's summary and for notebooks."""

    out: Path
    catalog: Path
    frames_index: Path
    n_galaxies: int
    n_fields: int
    n_frames: int
    frames_written: int
    area_deg2: float
    density_deg2: float
    seconds: float
    manifest: dict
    skipped: str | None = None  # a line naming the photometry rows left out, if any


def mock(
    out: str | os.PathLike,
    n: int | None = None,
    photometry: str | None = None,
    seed: int = 0,
    per_field: float = 200.0,
    neighbours: float = 60.0,
    stars: float = 30.0,
    repeat: int = 1,
    deep_fraction: float = 0.0,
    epochs: int = 4,
    jobs: int | None = None,
    compress: bool = True,
    catalog: str = "catalog.parquet",
    ebv_median: float = 0.03,
    frames: bool = True,
    command: str = "",
    progress: Callable[[int, int], None] | None = None,
    photometry_mode: str = "conditioned",
) -> MockResult:
    """Simulate an SDSS-like survey into folder `out` and return what was made.

    Parameters
    ----------
    n : galaxies to render (default: every photometry row, or 1000 from the shipped model).
    photometry : a table with z and ugriz (the MGS files, or a pz-query output); without it the
        shipped colour-magnitude-redshift model is sampled.
    per_field : catalogue galaxies per field (sets the density; SDSS's MGS has ~3 per field).
    neighbours, stars : fainter galaxies (17.8 < r < 22, not catalogued) and stars per field.
    repeat : render each photometry row this many times (new shape, position, E(B-V), noise).
    deep_fraction, epochs : share of galaxies in the deep "Stripe 82" region, and its runs.
    progress : called with (frames done, frames total) as fields finish.
    photometry_mode : with `photometry`, "conditioned" (default): each row keeps its z (and
        its place in a split) and its intrinsic ugriz is drawn from the shipped deconvolved
        model given that z and an intrinsic r drawn given the row's measured r and error, so
        no row's measurement noise is frozen into the truth; "as-measured": render the row's
        measured magnitudes as the truth (the behaviour before issue 12).

    The catalogue's dered_petro_* and petroMagErr_* are measured from the rendered frames
    (measure.py); the truth is in true_mag_* and r50_true.
    """
    import time

    t0 = time.perf_counter()
    out = Path(out)
    if per_field <= 0 or repeat < 1 or epochs < 1 or not 0 <= deep_fraction <= 1:
        raise PzUsageError(
            "--per-field must be > 0, --repeat and --epochs >= 1, --deep-fraction within 0..1"
        )
    if photometry_mode not in ("conditioned", "as-measured"):
        raise PzUsageError("photometry_mode must be 'conditioned' or 'as-measured'")
    rng = np.random.default_rng([seed, 0])
    skipped = None
    if photometry is not None:
        phot = read_photometry(photometry)
        skipped = skipped_line(str(photometry), phot)
        if n is not None and n != len(phot):  # a subset, or resampled rows when n is larger
            phot = phot.take(np.sort(rng.choice(len(phot), n, replace=n > len(phot))))
        source = str(photometry)
    else:
        phot = load_model().sample(1000 if n is None else n, rng)
        source = "shipped model (photoz_tools/data/mock_model.json)"
    if repeat > 1:
        phot = phot.take(np.repeat(np.arange(len(phot)), repeat))
    ntot = len(phot)
    if ntot == 0:
        raise PzUsageError("nothing to render: -n must be at least 1")
    order = rng.permutation(ntot)
    phot = phot.take(order)  # repeats scattered over the sky
    if photometry is not None and photometry_mode == "conditioned":
        mag = load_model().sample_given(phot.z, phot.mag[:, 2], phot.err[:, 2], rng)
        phot = Photometry(phot.z, mag, phot.err, phot.source_row, phot.skipped)
    n_deep = int(round(deep_fraction * ntot))
    in_deep = np.zeros(ntot, bool)
    in_deep[:n_deep] = True
    rng.shuffle(in_deep)
    regions = []
    region_of = np.zeros(ntot, np.int64)
    lrng = np.random.default_rng([seed, 5])
    if ntot - n_deep > 0:
        regions.append(
            _layout("main", ntot - n_deep, per_field, 150.0, [MAIN_RUN], 10, ebv_median, lrng)
        )
    if n_deep > 0:
        region_of[in_deep] = len(regions)
        regions.append(
            _layout(
                "stripe82",
                n_deep,
                per_field,
                330.0,
                [DEEP_RUN + 7 * k for k in range(epochs)],
                82,
                1.5 * ebv_median,
                lrng,
            )
        )
    ra = np.empty(ntot)
    dec = np.empty(ntot)
    ebv = np.empty(ntot)
    for ri, reg in enumerate(regions):
        sel = region_of == ri
        a, b, c, d = reg.bounds()
        ra[sel] = rng.uniform(a, b, sel.sum())
        dec[sel] = rng.uniform(c, d, sel.sum())
        ebv[sel] = _ebv_field(ra[sel], dec[sel], reg.ebv_median, seed)
    gal = render.make_galaxies(ra, dec, phot.z, phot.mag, ebv, rng)

    # fainter neighbours and stars, per region (the same sky in every epoch and band)
    model = load_model()
    nb_parts, st_parts = [], []
    for reg in regions:
        nfields = reg.ncam * reg.nfields
        a, b, c, d = reg.bounds()
        m = int(rng.poisson(neighbours * nfields))
        base = model.sample(m, rng)
        r_new = 17.8 + 4.2 * rng.power(2.5, m)
        dm = r_new - base.mag[:, 2]
        nra, ndec = rng.uniform(a, b, m), rng.uniform(c, d, m)
        nb_parts.append(
            render.make_galaxies(
                nra,
                ndec,
                base.z,
                base.mag + dm[:, None],
                _ebv_field(nra, ndec, reg.ebv_median, seed),
                rng,
            )
        )
        st_parts.append(
            _stars(int(rng.poisson(stars * nfields)), (a, b, c, d), reg.ebv_median, seed, rng)
        )
    allgal = _concat_galaxies([gal, *nb_parts])
    allstars = Stars(
        *(np.concatenate([getattr(s, k) for s in st_parts]) for k in ("ra", "dec", "mag", "ebv"))
    )

    conditions = {}
    tasks = []
    for ri, reg in enumerate(regions):
        for k, run in enumerate(reg.runs):
            for cam in range(1, reg.ncam + 1):
                for f in range(reg.field0, reg.field0 + reg.nfields):
                    conditions[(run, cam, f)] = _conditions(seed, run, cam, f)
                    tasks.append((ri, k, cam, f))

    area = sum(r.area() for r in regions)
    params = {
        "seed": seed,
        "n": ntot,
        "photometry": source,
        "per_field": per_field,
        "neighbours": neighbours,
        "stars": stars,
        "repeat": repeat,
        "deep_fraction": deep_fraction,
        "epochs": epochs,
        "ebv_median": ebv_median,
        "compress": compress,
        "photometry_mode": photometry_mode if photometry is not None else "model",
    }
    manifest = {
        "tool": f"photoz-tools {__version__}",
        "command": command,
        "parameters": params,
        "regions": [asdict(r) for r in regions],
        "area_deg2": area,
        "density_deg2": ntot / area,
        "catalog": catalog,
        "frames_index": "frames.parquet",
        "catalog_photometry": "measured from the frames" if frames else "intrinsic + drawn errors",
        "photometry_rows_skipped": phot.skipped,
    }
    with _writing(out, manifest) as lock:  # the folder prepared and locked
        from photoz_tools.tables import provenance_metadata, write_table

        prov = provenance_metadata(command or "photoz_tools.mock.mock()", [source])
        meta = {"pz_mock": json.dumps({"seed": seed, "density_deg2": ntot / area})}
        write_table(
            _frame_index(regions, seed, conditions),
            out / "frames.parquet",
            metadata=meta,
            provenance=prov,
        )
        primary = _primary(gal, regions, region_of)
        written = 0
        measured = None
        if frames:
            global _SKY
            _SKY = _Sky(allgal, allstars, regions, seed, out, compress, conditions, primary, ntot)
            total = 5 * len(tasks)
            jobs = jobs or os.cpu_count() or 1
            done = 0
            parts = []
            try:
                if jobs == 1 or len(tasks) == 1:
                    results = map(_render_field, tasks)
                    pool = None
                else:
                    import multiprocessing as mp

                    pool = mp.get_context("fork").Pool(
                        min(jobs, len(tasks)), initializer=_release_in_worker, initargs=(lock,)
                    )
                    results = pool.imap_unordered(_render_field, tasks)
                try:
                    for _, w, meas in results:
                        written += w
                        done += 5
                        if meas is not None:
                            parts.append(meas)
                        if progress:
                            progress(done, total)
                except BaseException:  # interrupted: stop the workers now (resume redoes them)
                    if pool is not None:
                        pool.terminate()
                    raise
                finally:
                    if pool is not None:
                        pool.close()
                        pool.join()
            finally:
                _SKY = None
            measured = _assemble(parts, ntot)
        table = _catalogue(
            phot,
            gal,
            regions,
            region_of,
            conditions,
            seed,
            np.random.default_rng([seed, 9]),
            measured,
        )
        write_table(table, out / catalog, metadata=meta, provenance=prov)
        _finish(out)
        seconds = time.perf_counter() - t0
        return MockResult(
            out,
            out / catalog,
            out / "frames.parquet",
            ntot,
            len(tasks),
            5 * len(tasks),
            written,
            area,
            ntot / area,
            seconds,
            manifest,
            skipped,
        )


def _assemble(parts: list[dict[str, np.ndarray]], n: int) -> dict[str, np.ndarray]:
    """Per-field measurements back in catalogue order (whatever order the workers finished)."""
    out: dict[str, np.ndarray] = {}
    for part in parts:
        idx = part["index"]
        for key, v in part.items():
            if key == "index":
                continue
            if key not in out:
                out[key] = np.full(
                    (n, *v.shape[1:]), -1 if v.dtype.kind == "i" else np.nan, v.dtype
                )
            out[key][idx] = v
    return out


def _concat_galaxies(parts: list[render.Galaxies]) -> render.Galaxies:
    names = render.Galaxies.__dataclass_fields__
    return render.Galaxies(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in names})


def _read_parameters(path: Path) -> dict | None:
    """The parameters recorded in a manifest, or None when it cannot be read."""
    try:
        got = json.loads(path.read_text()).get("parameters")
    except (OSError, ValueError, AttributeError):
        return None
    return got if isinstance(got, dict) else None


def _prepare(out: Path, manifest: dict) -> None:
    """Check that `out` is empty or holds this survey (finished or not), mark it unfinished.

    A rerun with the same parameters resumes (keeps the frames written). The manifest goes to
    PARTIAL first; a finished survey's `mock.json` is removed only once PARTIAL is in place, so
    the folder always says which survey it holds, and says "finished" only at the end (_finish).
    """
    done, partial = out / MANIFEST, out / PARTIAL
    if any(p.name != ".mock.json.tmp" for p in out.iterdir()):  # (a first run killed at once)
        found = [p for p in (done, partial) if p.exists()]
        if not found:
            raise PzError(
                f"{out}: folder exists and is not a pz-mock survey; choose a new folder or empty it"
            )
        for p in found:
            if _read_parameters(p) != manifest["parameters"]:
                raise PzError(
                    f"{out}: holds a survey made with other parameters; choose a new "
                    "folder or remove it"
                )
    _remove_stale(out, manifest.get("catalog", "catalog.parquet"))
    tmp = out / ".mock.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, partial)
    done.unlink(missing_ok=True)
    _sync_folder(out)


def _finish(out: Path) -> None:
    """Mark the survey finished: PARTIAL renamed to mock.json, after everything else."""
    os.replace(out / PARTIAL, out / MANIFEST)
    _sync_folder(out)


def _sync_folder(out: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(out, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# temporaries this module's writers leave when killed: frames (mock/frames.py), per-field
# photometry (.tmp-NAME.npz), the manifest's; and the table writer's beside the two tables
_FRAME_TMP = re.compile(r"\.tmp-.*\.(fits|npz)\Z")


def _remove_stale(out: Path, catalog: str) -> None:
    """Remove the temporaries of killed runs (the caller holds the folder's lock: no live
    pz-mock is writing here)."""
    tables = re.compile(
        rf"\.({re.escape(Path(catalog).name)}|frames\.parquet)\.[A-Za-z0-9_]+\.tmp\Z"
    )
    stale = [out / ".mock.json.tmp"]
    stale += [p for p in out.iterdir() if tables.match(p.name)]
    for sub in ("frames", "photometry"):
        if (out / sub).is_dir():
            stale += [p for p in (out / sub).rglob(".tmp-*") if _FRAME_TMP.match(p.name)]
    for p in stale:
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)


@contextlib.contextmanager
def _writing(out: Path, manifest: dict) -> Iterator[int | None]:
    """Create `out`, hold an exclusive lock on the folder itself while the survey is written
    (no lock file is left), and prepare it. Yields the lock's descriptor (None where the file
    system has no flock), which the workers close."""
    import errno

    out.mkdir(parents=True, exist_ok=True)
    fd: int | None = None
    try:
        import fcntl

        fd = os.open(out, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise PzError(
                    f"{out}: another pz-mock is writing this survey; wait for it, or choose "
                    "another folder"
                ) from None
            # no flock on this file system: unlocked
    except ImportError:  # no fcntl (Windows): unlocked
        pass
    try:
        _prepare(out, manifest)
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _release_in_worker(fd: int | None) -> None:
    """In a forked worker: close the inherited lock, so that it goes with the main process
    (a worker left behind by a kill must not hold the folder)."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
