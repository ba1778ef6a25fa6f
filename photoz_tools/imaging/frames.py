"""SDSS corrected frames: the calibrated image (HDU 0) with its WCS, and the calibration HDUs.

A corrected frame (``frame-r-002583-2-0136.fits.bz2``, rerun 301) holds in HDU 0 a 2048x1489
float32 image already calibrated in nanomaggies, with a plain TAN WCS (CD matrix, no distortion
keywords); HDU 1 the calibration vector (nanomaggies per count, per column); HDU 2 the sky model;
HDU 3 the astrometry. Frames are decompressed once, in memory, and parsed directly (the header
blocks, then the big-endian pixels): the fastest way to get a 12 MB frame into numpy.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from photoz_tools.errors import PzError
from photoz_tools.imaging.resample import TanWcs

BANDS = "ugriz"
_BLOCK = 2880


class FrameError(PzError):
    """A frame file that cannot be read or is not an SDSS corrected frame."""


def decompress(data: bytes, name: str = "frame") -> bytes:
    """The FITS bytes of a plain, gzip or bzip2 file (by magic bytes, not by name)."""
    try:
        if data[:3] == b"BZh":
            return bz2.decompress(data)
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
    except (OSError, EOFError, ValueError) as exc:
        raise FrameError(
            f"{name}: corrupt compressed file ({exc}); delete it and fetch again"
        ) from exc
    return data


def read_bytes(path: str | os.PathLike) -> bytes:
    """A frame file's FITS bytes, decompressed in memory."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise FrameError(f"{path}: cannot read frame ({exc.strerror})") from exc
    return decompress(data, str(path))


def _header_end(data: bytes, start: int, name: str) -> int:
    """Offset just past the header that begins at `start` (header blocks end with an END card)."""
    pos = start
    while pos + _BLOCK <= len(data):
        block = data[pos : pos + _BLOCK]
        pos += _BLOCK
        for i in range(0, _BLOCK, 80):
            if block[i : i + 8] == b"END     ":
                return pos
    raise FrameError(f"{name}: truncated or not a FITS file (no END card)")


def parse_header(data: bytes, start: int = 0, name: str = "frame"):
    """(astropy Header, offset of the data) of the HDU whose header starts at `start`."""
    from astropy.io import fits

    if data[start : start + 6] != b"SIMPLE" and data[start : start + 8] != b"XTENSION":
        raise FrameError(f"{name}: not a FITS file")
    end = _header_end(data, start, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = fits.Header.fromstring(data[start:end].decode("ascii", "replace"))
    except (ValueError, fits.VerifyError) as exc:
        raise FrameError(f"{name}: unreadable FITS header ({_clean(exc)})") from None
    return header, end


def _clean(exc: BaseException, limit: int = 120) -> str:
    """An astropy message as one short printable line (it may quote the header's odd bytes)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"[^\x20-\x7e]", "?", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _card(header, key: str, name: str, default: Any = None, kind: type = int) -> Any:
    """Header value `key` as `kind` (int, float or str), `default` where it is absent.

    astropy parses a card when it is first read, so an unparsable card (a corrupt BITPIX,
    RUN = 'abc') raises here: FrameError naming the frame and the card, never astropy's error.
    """
    from astropy.io.fits import VerifyError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = header.get(key, default)
        if value is None:  # absent with no default, or a card with no value
            if default is None:
                raise KeyError(key)
            value = default
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{value!r} is not an integer")
            if isinstance(value, str):
                value = value.strip()
            return int(value)
        if kind is str:
            return str(value)
        return kind(value)
    except KeyError:
        raise FrameError(f"{name}: no {key} card in the header") from None
    except (ValueError, TypeError, OverflowError, VerifyError) as exc:
        raise FrameError(f"{name}: unreadable {key} card in the header ({_clean(exc)})") from None


def _data_size(header, name: str = "frame") -> int:
    naxis = _card(header, "NAXIS", name, 0)
    if naxis == 0:
        return 0
    if not 0 < naxis <= 999:
        raise FrameError(f"{name}: NAXIS = {naxis} in the header is not a FITS axis count")
    n = abs(_card(header, "BITPIX", name)) // 8
    for i in range(1, naxis + 1):
        size = _card(header, f"NAXIS{i}", name)
        if size < 0:
            raise FrameError(f"{name}: NAXIS{i} = {size} in the header is negative")
        n *= size
    n = (n + _card(header, "PCOUNT", name, 0)) * _card(header, "GCOUNT", name, 1)
    return n


def _padded(n: int) -> int:
    return (n + _BLOCK - 1) // _BLOCK * _BLOCK


def frame_wcs(header) -> tuple[Any, Any]:
    """(world_to_pixel, pixel_to_world) for a frame header, 1-based pixel coordinates."""
    w2p, p2w, _ = _frame_wcs(header)
    return w2p, p2w


def _frame_wcs(header) -> tuple[Any, Any, TanWcs | None]:
    """(world_to_pixel, pixel_to_world, the plain TanWcs or None) for a frame header.

    A plain TAN header (the SDSS case) uses the numpy TAN of the resampler, which agrees with
    WCSLIB to ~1e-10 pixel and needs no per-call overhead; anything else (SIP, TPV, other
    projections) goes through astropy.wcs with all distortions applied.
    """
    from astropy.io.fits.verify import VerifyWarning
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        warnings.simplefilter("ignore", VerifyWarning)  # a card astropy fixed on its own
        w = WCS(header, naxis=2)
    ctype = [c.upper() for c in w.wcs.ctype]
    plain = (
        ctype == ["RA---TAN", "DEC--TAN"]
        and w.sip is None
        and w.cpdis1 is None
        and w.cpdis2 is None
        and w.det2im1 is None
        and w.det2im2 is None
        and not w.wcs.get_pv()
        and float(w.wcs.lonpole) == 180.0
    )
    if plain:
        tan = TanWcs(tuple(w.wcs.crpix), tuple(w.wcs.crval), w.pixel_scale_matrix)
        return tan.world_to_pixel, tan.pixel_to_world, tan

    def world_to_pixel(ra, dec):
        x, y = w.all_world2pix(np.asarray(ra, float), np.asarray(dec, float), 1)
        return x, y

    def pixel_to_world(x, y):
        ra, dec = w.all_pix2world(np.asarray(x, float), np.asarray(y, float), 1)
        return ra, dec

    return world_to_pixel, pixel_to_world, None


@dataclass
class Frame:
    """One band's corrected frame in memory: image[y, x] (nanomaggies) and its WCS."""

    image: np.ndarray
    header: Any
    name: str
    band: str
    run: int
    rerun: str
    camcol: int
    field: int
    world_to_pixel: Any = field(repr=False)
    pixel_to_world: Any = field(repr=False)
    raw: bytes | None = field(default=None, repr=False)
    tan: TanWcs | None = field(default=None, repr=False)  # set for plain TAN headers

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        return int(self.image.nbytes)

    def calibration(self) -> np.ndarray:
        """HDU 1: nanomaggies per count for each column (x), length NAXIS1."""
        if self.raw is None:
            raise FrameError(f"{self.name}: calibration HDUs were not kept (read with keep_raw)")
        header, start = parse_header(self.raw, 0, self.name)
        pos = start + _padded(_data_size(header, self.name))
        h1, start1 = parse_header(self.raw, pos, self.name)
        n = _card(h1, "NAXIS1", self.name)
        return np.frombuffer(self.raw, dtype=">f4", count=n, offset=start1).astype(np.float64)

    def sky(self) -> np.ndarray:
        """HDU 2's sky model bilinearly interpolated onto the frame, in counts (image[y, x])."""
        if self.raw is None:
            raise FrameError(f"{self.name}: calibration HDUs were not kept (read with keep_raw)")
        from astropy.io import fits
        from scipy.ndimage import map_coordinates

        with fits.open(io.BytesIO(self.raw)) as hdul:
            row = hdul[2].data[0]
            allsky = np.asarray(row["ALLSKY"], dtype=np.float64)
            xi = np.asarray(row["XINTERP"], dtype=np.float64)
            yi = np.asarray(row["YINTERP"], dtype=np.float64)
        if allsky.shape != (yi.size, xi.size):  # stored (192, 256) for (ny, nx) interp grids
            allsky = allsky.reshape(-1, allsky.shape[-1])
        yy, xx = np.meshgrid(yi, xi, indexing="ij")
        return map_coordinates(allsky, [yy, xx], order=1, mode="nearest")

    def counts(self) -> np.ndarray:
        """The frame back in raw counts (DN): image / calib + sky, the SDSS recipe."""
        return self.image / self.calibration()[None, :] + self.sky()


def load_frame(
    source: str | os.PathLike | bytes, name: str | None = None, keep_raw: bool = False
) -> Frame:
    """Read a corrected frame (plain, .gz or .bz2) from a path or its bytes.

    The pixels are copied out of the decompressed buffer as native float32; `keep_raw` keeps
    the FITS bytes for :meth:`Frame.calibration` and :meth:`Frame.sky` (tests, diagnostics).
    """
    if isinstance(source, bytes | bytearray):
        name = name or "frame"
        data = decompress(bytes(source), name)
    else:
        name = name or str(source)
        data = read_bytes(source)
    header, start = parse_header(data, 0, name)
    bitpix = _card(header, "BITPIX", name, 0)
    if _card(header, "NAXIS", name, 0) != 2 or bitpix not in (-32, -64):
        raise FrameError(f"{name}: HDU 0 is not a 2-D floating-point image")
    nx, ny = _card(header, "NAXIS1", name), _card(header, "NAXIS2", name)
    if nx < 1 or ny < 1:
        raise FrameError(f"{name}: HDU 0 is an empty image ({nx} x {ny} pixels)")
    dtype = ">f4" if bitpix == -32 else ">f8"
    if len(data) < start + nx * ny * np.dtype(dtype).itemsize:
        raise FrameError(f"{name}: truncated frame (image data incomplete); fetch it again")
    image = np.frombuffer(data, dtype=dtype, count=nx * ny, offset=start).reshape(ny, nx)
    image = image.astype(np.float32)
    bscale = _card(header, "BSCALE", name, 1.0, float)
    bzero = _card(header, "BZERO", name, 0.0, float)
    if bscale != 1.0 or bzero != 0.0:
        image = image * np.float32(bscale) + np.float32(bzero)
    from astropy.io.fits import VerifyError

    try:
        w2p, p2w, tan = _frame_wcs(header)
    except (ValueError, KeyError, TypeError, MemoryError, VerifyError) as exc:
        raise FrameError(f"{name}: unreadable header or WCS ({_clean(exc)})") from None
    run, camcol, fieldno = frame_identity(header, Path(name).name)
    return Frame(
        image=image,
        header=header,
        name=name,
        band=frame_band(header, name),
        run=run,
        rerun=_card(header, "RERUN", name, "301", str).strip(),
        camcol=camcol,
        field=fieldno,
        world_to_pixel=w2p,
        pixel_to_world=p2w,
        raw=data if keep_raw else None,
        tan=tan,
    )


def frame_band(header, name: str = "") -> str:
    """The band (u, g, r, i, z) from FILTER, else from an SDSS file name ``frame-r-...``."""
    band = _card(header, "FILTER", name, "", str).strip().lower()
    if band in BANDS and band:
        return band
    base = Path(name).name
    if base.startswith("frame-") and len(base) > 7 and base[6] in BANDS:
        return base[6]
    raise FrameError(f"{name}: cannot tell the band (no FILTER keyword, not named frame-B-...)")


def frame_identity(header, name: str) -> tuple[int, int, int]:
    """run, camcol, field from the SDSS file name, else the header (RUN, CAMCOL, FRAME).

    The name wins: FRAME is the frame's sequence number in its own camera row, which differs
    from the field number outside r (the i frame of field 136 says FRAME = 138).
    FrameError when a card that is needed is not an integer.
    """
    parts = name.split(".")[0].split("-")
    from_name = None
    if len(parts) == 5 and parts[0] == "frame":
        try:
            from_name = (int(parts[2]), int(parts[3]), int(parts[4]))
        except ValueError:
            from_name = None
    if from_name:
        return from_name
    field_key = "FIELD" if "FIELD" in header else "FRAME"
    return (
        _card(header, "RUN", name, -1),
        _card(header, "CAMCOL", name, -1),
        _card(header, field_key, name, -1),
    )


def noise_rms(image: np.ndarray) -> float:
    """Robust noise RMS of a frame: 1.4826 x the median absolute deviation of its pixels."""
    v = image[np.isfinite(image)]
    return float(1.4826 * np.median(np.abs(v - np.median(v))))
