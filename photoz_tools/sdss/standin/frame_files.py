"""The stand-in's Field table from SDSS frame files on disk (any layout), read from headers."""

from __future__ import annotations

import bz2
import gzip
import os
import re
import warnings
from pathlib import Path

import numpy as np

from photoz_tools.sdss.standin.catalog import field_id

_FRAME_NAME = re.compile(r"frame-([ugriz])-(\d{6})-(\d)-(\d{4})\.fits(?:\.bz2|\.gz)?$")


def _open_any(path: Path):
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def frame_index_from_files(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Index SDSS frames under `folder` (any layout) from their headers: one row per field.

    Bounds are the min/max of the sky positions of each band's image corners and edge midpoints,
    over all bands found, so the box contains every band's pixels.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    rows: dict[tuple[int, int, int, int], list[float]] = {}
    for path in sorted(Path(folder).rglob("frame-*")):
        m = _FRAME_NAME.search(path.name)
        if m is None:
            continue
        run, camcol, fld = int(m.group(2)), int(m.group(3)), int(m.group(4))
        parent = path.parts
        rerun = 301
        if len(parent) >= 4 and parent[-3] == str(run) and parent[-4].isdigit():
            rerun = int(parent[-4])
        with _open_any(path) as fh:
            header = fits.Header.fromfile(fh)
        nx, ny = header.get("NAXIS1", 2048), header.get("NAXIS2", 1489)
        with warnings.catch_warnings():  # SDSS frames still write RADECSYS
            warnings.simplefilter("ignore")
            w = WCS(header, naxis=2)
        xs = np.array([0.5, nx / 2 + 0.5, nx + 0.5])
        ys = np.array([0.5, ny / 2 + 0.5, ny + 0.5])
        gx, gy = np.meshgrid(xs, ys)
        ra, dec = w.all_pix2world(gx.ravel(), gy.ravel(), 1)
        ra = np.asarray(ra) % 360.0
        if ra.max() - ra.min() > 180.0:  # a field across RA = 0: express it as raMin > raMax
            lo, hi = ra[ra > 180].min(), ra[ra < 180].max()
        else:
            lo, hi = ra.min(), ra.max()
        key = (run, rerun, camcol, fld)
        b = [float(lo), float(hi), float(np.min(dec)), float(np.max(dec))]
        if key in rows:
            old = rows[key]
            b = [min(old[0], b[0]), max(old[1], b[1]), min(old[2], b[2]), max(old[3], b[3])]
        rows[key] = b
    keys = sorted(rows)
    out = {
        "run": np.array([k[0] for k in keys], dtype=np.int64),
        "rerun": np.array([k[1] for k in keys], dtype=np.int64),
        "camcol": np.array([k[2] for k in keys], dtype=np.int64),
        "field": np.array([k[3] for k in keys], dtype=np.int64),
        "ra_min": np.array([rows[k][0] for k in keys]),
        "ra_max": np.array([rows[k][1] for k in keys]),
        "dec_min": np.array([rows[k][2] for k in keys]),
        "dec_max": np.array([rows[k][3] for k in keys]),
    }
    out["fieldID"] = field_id(out["run"], out["rerun"], out["camcol"], out["field"])
    return out
