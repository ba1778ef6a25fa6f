"""Small builders shared by the hardening tests and the benchmarks (no pytest inside)."""

from __future__ import annotations

import bz2
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def write_frame(
    folder: Path,
    band: str,
    data: np.ndarray,
    run: int = 1000,
    camcol: int = 3,
    field: int = 42,
    ra0: float = 150.0,
    dec0: float = 2.0,
) -> Path:
    """A small SDSS-like corrected frame, bz2-compressed and named as on the SAS."""
    from astropy.io import fits

    folder.mkdir(parents=True, exist_ok=True)
    ny, nx = data.shape
    s = 0.396 / 3600
    h = fits.Header()
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
            fits.PrimaryHDU(data.astype(np.float32), header=h),
            fits.ImageHDU(np.full(nx, 0.005, dtype=np.float32)),
        ]
    )
    buf = io.BytesIO()
    hdul.writeto(buf)
    path = folder / f"frame-{band}-{run:06d}-{camcol}-{field:04d}.fits.bz2"
    path.write_bytes(bz2.compress(buf.getvalue()))
    return path


def pz(
    command: str,
    *args: str,
    timeout: float = 120,
    env: dict | None = None,
    cwd: Path | None = None,
    input: bytes | None = None,
) -> subprocess.CompletedProcess:
    """Run a pz-* command as a subprocess (its module, with this interpreter)."""
    from photoz_tools.cli.manpages import module_name

    module = module_name(command.removeprefix("pz-"))
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        input=input,
    )


def one_clear_line(stderr: bytes) -> bool:
    """True when stderr is one non-empty line with no traceback."""
    text = stderr.decode("utf-8", "replace").strip()
    return bool(text) and "\n" not in text and "Traceback" not in text
