"""Real SDSS frames (run 2583, camcol 2, field 136), decompressed once per test session."""

from __future__ import annotations

import bz2
import os
import shutil
from pathlib import Path

import pytest
from framekit import make_frame

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


@pytest.fixture(scope="session")
def frame_maker():
    """`make_frame(path, band=..., run=..., ...)`: write a small synthetic SDSS-like frame."""
    return make_frame


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Frame and index caches go to a temporary folder, never the user's ~/.cache."""
    monkeypatch.setenv("PZ_CACHE", str(tmp_path_factory.getbasetemp() / "pz-cache"))
