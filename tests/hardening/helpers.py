"""Small builders shared by the hardening tests and the benchmarks (no pytest inside)."""

from __future__ import annotations

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
    from framekit import make_frame

    ny, nx = data.shape
    return make_frame(
        folder, band, run, camcol, field, ra0, dec0, nx=nx, ny=ny, data=data, compress=True
    )


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
