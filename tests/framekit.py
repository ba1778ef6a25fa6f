"""A small synthetic SDSS corrected frame for tests (imaging, options, hardening): one writer,
so every test frame has the same header and layout as the SAS's."""

from __future__ import annotations

import bz2
from pathlib import Path


def make_frame(
    path: Path,
    band: str = "r",
    run: int = 1000,
    camcol: int = 3,
    field: int = 42,
    ra0: float = 150.0,
    dec0: float = 2.0,
    nx: int = 200,
    ny: int = 150,
    data=None,
    seed: int = 0,
    compress: bool = True,
) -> Path:
    """A small SDSS-like corrected frame (rotated TAN WCS, nanomaggies, HDU 1 calib vector).

    Named and laid out as on the SAS when `path` is a folder: frame-B-RUN6-C-FIELD4.fits[.bz2].
    """
    import numpy as np
    from astropy.io import fits

    if path.is_dir() or not path.suffix:
        path.mkdir(parents=True, exist_ok=True)
        path = path / (
            f"frame-{band}-{run:06d}-{camcol}-{field:04d}.fits" + (".bz2" if compress else "")
        )
    if data is None:
        rng = np.random.default_rng(seed)
        data = rng.normal(0.0, 0.05, (ny, nx)).astype(np.float32)
    h = fits.Header()
    s = 0.396 / 3600
    h.update(
        {
            "CTYPE1": "RA---TAN",
            "CTYPE2": "DEC--TAN",
            "CRPIX1": (nx + 1) / 2,
            "CRPIX2": (ny + 1) / 2,
            "CRVAL1": ra0,
            "CRVAL2": dec0,
            "CD1_1": 0.0,
            "CD1_2": s,
            "CD2_1": s,
            "CD2_2": 0.0,
            "RADECSYS": "ICRS",
            "EQUINOX": 2000.0,
            "BUNIT": "nanomaggy",
            "FILTER": band,
            "RUN": run,
            "CAMCOL": camcol,
            "FRAME": field,
            "RERUN": "301",
            "NMGY": 0.005,
        }
    )
    hdul = fits.HDUList(
        [
            fits.PrimaryHDU(np.asarray(data, dtype=np.float32), header=h),
            fits.ImageHDU(np.full(nx, 0.005, dtype=np.float32)),
        ]
    )
    buf = __import__("io").BytesIO()
    hdul.writeto(buf)
    raw = buf.getvalue()
    path.write_bytes(bz2.compress(raw) if str(path).endswith(".bz2") else raw)
    return path
