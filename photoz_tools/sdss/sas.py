"""Fetching corrected frames from the SDSS Science Archive Server into a verified local cache.

A frame lives at ``BASE/frames/301/RUN/CAMCOL/frame-BAND-RUN6-CAMCOL-FIELD4.fits.bz2``. A
download is checked before it is cached: the byte count against Content-Length, the whole
bzip2 stream (its block CRCs), and the FITS structure of the decompressed frame (the image data
complete). Only then is it renamed into the cache (written to a temporary file in the same
folder), so a truncated or corrupt download is never cached and a killed run leaves nothing
half-written. Timeouts, dropped connections, HTTP 5xx and truncated bodies are retried with
backoff; a 404 is final (the frame does not exist).
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from http.client import HTTPException, IncompleteRead
from pathlib import Path

from photoz_tools.errors import PzError

#: DR12's photoObj tree (frames/301/...); DR13+ serve the same frames under .../dr17/eboss/photoObj.
DEFAULT_SAS_URL = "https://data.sdss.org/sas/dr12/boss/photoObj"


class FetchError(PzError):
    """A frame that could not be fetched (after retries) or does not exist."""


def default_cache_dir() -> Path:
    """$PZ_CACHE, else $XDG_CACHE_HOME/photoz-tools, else ~/.cache/photoz-tools."""
    if os.environ.get("PZ_CACHE"):
        return Path(os.environ["PZ_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "photoz-tools"


class SasClient:
    """Frames from a SAS base URL, through a cache folder that mirrors the SAS layout."""

    def __init__(
        self,
        base_url: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        retries: int = 4,
        timeout: float = 60.0,
        backoff: float = 1.0,
    ) -> None:
        self.base_url = (base_url or DEFAULT_SAS_URL).rstrip("/")
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.downloaded_bytes = 0

    def url(self, sas_path: str) -> str:
        return f"{self.base_url}/{sas_path}"

    def cache_path(self, sas_path: str) -> Path:
        return self.cache_dir / sas_path

    def get(self, sas_path: str) -> tuple[bytes, bytes]:
        """(compressed bytes, decompressed FITS bytes) of a frame, from the cache or the SAS.

        A cached file that fails verification (a disk fault, an old bug) is fetched again.
        """
        from photoz_tools.imaging.frames import FrameError

        path = self.cache_path(sas_path)
        if path.is_file():
            data = path.read_bytes()
            try:
                return data, verify_frame_bytes(data, str(path))
            except FrameError:
                path.unlink(missing_ok=True)
        data, fits_bytes = self.download(sas_path)
        _atomic_write(path, data)
        return data, fits_bytes

    def download(self, sas_path: str) -> tuple[bytes, bytes]:
        """(body, decompressed FITS) of BASE/sas_path, complete and verified, with retries."""
        from photoz_tools.imaging.frames import FrameError

        url = self.url(sas_path)
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                req = urllib.request.Request(url, headers={"User-Agent": "photoz-tools"})
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    expected = resp.headers.get("Content-Length")
                    data = resp.read()
                if expected is not None and len(data) != int(expected):
                    last = f"truncated body ({len(data)} of {expected} bytes)"
                    continue
                fits_bytes = verify_frame_bytes(data, url)  # also catches chunked truncation
                self.downloaded_bytes += len(data)
                return data, fits_bytes
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise FetchError(
                        f"{url}: not found (HTTP 404); check --sas-url and the frames table"
                    ) from exc
                last = f"HTTP {exc.code}"
                if exc.code < 500 and exc.code != 429:
                    break
            except IncompleteRead as exc:
                last = f"truncated body ({len(exc.partial)} bytes, {exc.expected} missing)"
            except (
                HTTPException,
                urllib.error.URLError,
                TimeoutError,
                ConnectionError,
                OSError,
            ) as exc:
                last = f"{type(exc).__name__}: {exc}"
            except FrameError as exc:
                last = str(exc)
        raise FetchError(
            f"{url}: download failed after {self.retries + 1} tries ({last}); "
            "check the network or --sas-url, then rerun (finished work is kept)"
        )


def verify_frame_bytes(data: bytes, name: str) -> bytes:
    """The decompressed FITS bytes if `data` is a complete frame; FrameError otherwise."""
    from photoz_tools.imaging.frames import FrameError, _data_size, decompress, parse_header

    fits_bytes = decompress(data, name)
    header, start = parse_header(fits_bytes, 0, name)
    if len(fits_bytes) < start + _data_size(header):
        raise FrameError(f"{name}: truncated frame (image data incomplete)")
    return fits_bytes


def _atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
