"""Real SDSS frames (run 2583, camcol 2, field 136), decompressed once per test session."""

from __future__ import annotations

import bz2
import os
import shutil
from pathlib import Path

import pytest

BANDS = "ugriz"
FIELD = "2583-2-0136"


@pytest.fixture(scope="session")
def field_dir(shared_data: Path) -> Path:
    """The folder of the five real .fits.bz2 frames (skips where ../shared/data is absent)."""
    d = shared_data / "sdss-frames" / FIELD
    if not d.is_dir():
        pytest.skip(f"real SDSS frames not found at {d}")
    return d


@pytest.fixture(scope="session")
def plain_frames(field_dir: Path, tmp_path_factory) -> dict[str, Path]:
    """band -> the uncompressed frame file (SWarp cannot read .bz2)."""
    out = tmp_path_factory.mktemp("frames")
    paths = {}
    for b in BANDS:
        src = field_dir / f"frame-{b}-002583-2-0136.fits.bz2"
        dst = out / src.name.removesuffix(".bz2")
        with bz2.open(src) as fin, open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        paths[b] = dst
    return paths


@pytest.fixture(scope="session")
def real_frames(plain_frames):
    """band -> Frame (with its calibration HDUs kept)."""
    from photoz_tools.imaging.frames import load_frame

    return {b: load_frame(p, keep_raw=True) for b, p in plain_frames.items()}


@pytest.fixture(scope="session")
def swarp():
    """The SWarp binary the product would run ($PZ_SWARP, `SWarp` or `swarp`), or skip with the
    reason; in CI, where `make test` installs it, its absence fails instead of skipping."""
    from photoz_tools.errors import PzError
    from photoz_tools.imaging.swarp import swarp_binary

    try:
        return swarp_binary()
    except PzError:
        why = "SWarp not found ($PZ_SWARP, SWarp or swarp on PATH; Debian: apt-get install swarp)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}: `make test` installs it in CI")
        pytest.skip(why)


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


@pytest.fixture(scope="session")
def frame_maker():
    """`make_frame(path, band=..., run=..., ...)`: write a small synthetic SDSS-like frame."""
    return make_frame


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Frame and index caches go to a temporary folder, never the user's ~/.cache."""
    monkeypatch.setenv("PZ_CACHE", str(tmp_path_factory.getbasetemp() / "pz-cache"))
