"""A full disk and a read-only output folder: one clear line, exit 1, and no partial file.

Real mounts (tmpfs), because the suite runs as root and chmod restricts nothing for root;
each test skips with the reason where mounting is refused.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import one_clear_line, pz


def _mount(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True
    )
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs ({r.stderr.strip() or 'not root?'})")


@pytest.fixture
def full_dir(tmp_path):
    """A 256 kB tmpfs with about 8 kB left free."""
    where = tmp_path / "full"
    _mount(where, "size=256k")
    try:
        with open(where / "ballast", "wb") as f:
            try:
                f.write(b"\0" * (256 * 1024 - 8192))
            except OSError:
                pass
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def ro_dir(tmp_path):
    """A read-only tmpfs."""
    where = tmp_path / "ro"
    _mount(where, "size=64k,ro")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_pz_query_on_a_full_disk(standin, full_dir):
    before = _files(full_dir)
    r = pz("pz-query", "--url", standin.url, "-q", "-o", str(full_dir / "cat.parquet"))
    assert r.returncode == 1, r.stderr
    assert one_clear_line(r.stderr), r.stderr
    assert "space" in r.stderr.decode().lower()
    assert _files(full_dir) == before


def test_pz_query_into_a_read_only_folder(standin, ro_dir):
    r = pz("pz-query", "--url", standin.url, "-q", "-o", str(ro_dir / "cat.parquet"))
    assert r.returncode in (1, 2), r.stderr
    assert one_clear_line(r.stderr), r.stderr
    assert "read-only" in r.stderr.decode().lower()
    assert _files(ro_dir) == set()


def test_frame_cache_on_a_full_disk(standin, full_dir, tmp_path):
    """A frame that cannot be cached is an error naming the cache, and leaves no part file."""
    from photoz_tools.sdss.sas import FetchError, SasClient

    (full_dir / "cache").mkdir()
    fd = os.open(full_dir / "more-ballast", os.O_WRONLY | os.O_CREAT)
    try:  # fill it to the last byte
        while os.write(fd, b"\0" * 512):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    client = SasClient(standin.sas_url, full_dir / "cache", retries=0, timeout=5)
    with pytest.raises(FetchError, match="cache") as info:
        client.get("frames/301/1000/3/frame-r-001000-3-0042.fits.bz2")
    assert "\n" not in str(info.value)
    parts = [p for p in (full_dir / "cache").rglob("*") if p.is_file()]
    assert not parts


def test_bundle_json_into_a_read_only_folder(ro_dir):
    from photoz_tools.model.bundle import write_json_atomic

    with pytest.raises(OSError):
        write_json_atomic(ro_dir / "manifest.json", {"a": 1})
    assert os.listdir(ro_dir) == []
