"""Fetching corrected frames from the SDSS Science Archive Server into a verified local cache.

A frame lives at ``BASE/frames/301/RUN/CAMCOL/frame-BAND-RUN6-CAMCOL-FIELD4.fits.bz2``. A
download is checked before it is cached: the byte count against Content-Length, the whole
bzip2 stream (its block CRCs), and the FITS structure of the decompressed frame (the image data
complete). Only then is it renamed into the cache (written to a temporary file in the same
folder), so a truncated or corrupt download is never cached and a killed run leaves nothing
half-written. Timeouts, dropped connections, HTTP 5xx, truncated bodies and HTML error pages
are retried with backoff (capped at `max_backoff`); a 404 or another 4xx is final. Each try is
bounded as a whole by `timeout`, a server trickling its answer included. After `dead_after`
frames in a row got no answer at all, each further frame gets one try only, so a dead SAS costs
one timeout per frame rather than (retries + 1) timeouts and the backoffs.
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
        max_backoff: float = 30.0,
        dead_after: int = 3,
    ) -> None:
        self.base_url = (base_url or DEFAULT_SAS_URL).rstrip("/")
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        # after this many frames in a row got no answer at all, try each further frame once:
        # a dead SAS then costs one timeout per frame, not (retries + 1) timeouts and backoffs
        self.dead_after = dead_after
        self.unanswered = 0
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
        try:
            _atomic_write(path, data)
        except OSError as exc:  # a full disk, a read-only cache: say where, never half a file
            raise FetchError(
                f"{path}: cannot write the frame cache ({exc.strerror or exc}); free space "
                "there or point --cache / $PZ_CACHE elsewhere"
            ) from None
        return data, fits_bytes

    def download(self, sas_path: str) -> tuple[bytes, bytes]:
        """(body, decompressed FITS) of BASE/sas_path, complete and verified, with retries.

        Each try is bounded by `timeout` as a whole (a trickling server included), the waits
        between tries by `max_backoff`, so a failing frame costs bounded time.
        """
        url = self.url(sas_path)
        last, answered = "", False
        tries = self.retries + 1 if self.unanswered < self.dead_after else 1
        for attempt in range(tries):
            if attempt:
                time.sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
            try:
                data, fits_bytes = self._try(url)
                self.unanswered = 0
                return data, fits_bytes
            except _Final as exc:
                raise FetchError(str(exc)) from None
            except _Failed as exc:
                last, answered = str(exc), answered or exc.answered
        self.unanswered = 0 if answered else self.unanswered + 1
        raise FetchError(
            f"{url}: download failed after {tries} tr{'ies' if tries > 1 else 'y'} ({last}); "
            "check the network or --sas-url, then rerun (finished work is kept)"
        )

    def _try(self, url: str) -> tuple[bytes, bytes]:
        """One verified download, or _Failed (worth retrying) / _Final (not)."""
        from photoz_tools.imaging.frames import FrameError

        try:
            req = urllib.request.Request(url, headers={"User-Agent": "photoz-tools"})
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                expected = resp.headers.get("Content-Length")
                data = _read_within(resp, time.monotonic() + self.timeout, self.timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise _Final(
                    f"{url}: not found (HTTP 404); check --sas-url and the frames table"
                ) from None
            if exc.code < 500 and exc.code not in (408, 429):
                raise _Final(f"{url}: HTTP {exc.code}; check --sas-url") from None
            raise _Failed(f"HTTP {exc.code}", answered=True) from None
        except IncompleteRead as exc:
            raise _Failed(f"truncated body ({len(exc.partial)} bytes)", answered=True) from None
        except (HTTPException, urllib.error.URLError, TimeoutError, OSError) as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}") from None
        if expected is not None and expected.strip().isdigit() and len(data) != int(expected):
            raise _Failed(f"truncated body ({len(data)} of {expected} bytes)", answered=True)
        try:
            fits_bytes = verify_frame_bytes(data, url)  # also catches chunked truncation
        except FrameError as exc:
            raise _Failed(str(exc), answered=True) from None
        self.downloaded_bytes += len(data)
        return data, fits_bytes


class _Failed(Exception):
    """One failed try that may succeed when repeated (`answered`: the server did answer)."""

    def __init__(self, message: str, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class _Final(Exception):
    """A failure that repeating cannot fix (404, other 4xx)."""


def _read_within(resp, deadline: float, timeout: float, chunk: int = 1 << 16) -> bytes:
    """The whole body, or TimeoutError once `deadline` passes (socket timeouts bound each read
    only, so a trickling server would otherwise hold the download for ever)."""
    parts = []
    while block := resp.read1(chunk):
        parts.append(block)
        if time.monotonic() > deadline:
            raise TimeoutError(f"no complete answer within {timeout:g} s (a trickle)")
    return b"".join(parts)


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
