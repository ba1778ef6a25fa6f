"""Real SDSS frames (run 2583, camcol 2, field 136), decompressed once per test session."""

from __future__ import annotations

import bz2
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
    """The SWarp binary, or skip with the reason."""
    exe = shutil.which("SWarp")
    if exe is None:
        pytest.skip("SWarp not on PATH (Debian: apt-get install swarp; `make test` installs it "
                    "as root)")
    return exe
