"""SDSS corrected frames ("frame-BAND-RUN6-CAMCOL-FIELD4.fits.bz2", rerun 301) for the mock survey.

Same HDU layout as the archive's, so pz-cutout cannot tell a mock frame from a real one:
HDU0 float32 image in nanomaggies, sky subtracted, TAN WCS with the real orientation (rows run
along RA, columns along Dec), floats truncated to 10 mantissa bits like SDSS's FLOATCOMPRESS;
HDU1 the calibration vector (nanomaggies per count, per column); HDU2 the sky in counts on the
coarse (192, 256) grid with XINTERP/YINTERP; HDU3 the asTrans astrometry row (RUN ... NUERR).
Noise is Poisson-like on sky + object counts through the band's gain, plus dark variance.
Band constants are the values of the real field 2583-2-0136 and SDSS survey medians.
"""

from __future__ import annotations

import bz2
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from photoz_tools import __version__

BANDS = "ugriz"
NAXIS1, NAXIS2 = 2048, 1489  # columns (along Dec), rows (along the scan, RA)
FIELD_ROWS = 1361  # new rows per field: consecutive fields overlap by 128 rows, as in SDSS
CRPIX = (1025.0, 745.0)
PIXEL_DEG = 0.396 / 3600.0
RERUN = "301"
GAIN = np.array([1.825, 3.855, 4.6, 5.195, 5.155])  # e-/count (camcol 2 of the real field)
DARK_VARIANCE = np.array([12.6025, 1.44, 1.0, 6.25, 1.0])  # counts^2
NMGY = np.array([0.0118724, 0.00446688, 0.00546689, 0.0065592, 0.038566])  # nmgy per count
SKY_MAG = np.array([22.0, 21.7, 20.8, 20.15, 18.8])  # typical sky, mag/arcsec^2
FWHM_REL = np.array([1.12, 1.06, 1.0, 0.96, 0.98])  # seeing in each band relative to r
CAMROW = {"r": 1, "i": 2, "u": 3, "z": 4, "g": 5}
BAND_TIME_OFFSET = {"r": 0.0, "i": 71.7, "u": 143.4, "z": 215.1, "g": 286.8}  # seconds


@dataclass
class FrameSpec:
    """One frame: where it is on the sky and the conditions it was observed in."""

    run: int
    camcol: int
    field: int
    band: int  # 0..4 (ugriz)
    crval1: float
    crval2: float
    fwhm: float  # arcsec
    sky_counts: float
    mjd: float
    airmass: float = 1.2
    stripe: int = 10
    rerun: str = RERUN

    @property
    def filter(self) -> str:
        return BANDS[self.band]

    @property
    def cd(self) -> np.ndarray:
        """CD matrix (deg/pixel): RA along rows, Dec along columns, as real SDSS frames."""
        return np.array([[0.0, PIXEL_DEG], [PIXEL_DEG, 0.0]])

    @property
    def nmgy(self) -> float:
        return float(NMGY[self.band])

    @property
    def gain(self) -> float:
        return float(GAIN[self.band])

    @property
    def dark_variance(self) -> float:
        return float(DARK_VARIANCE[self.band])

    def relpath(self) -> str:
        """The SAS path below the data release root."""
        return (
            f"frames/{self.rerun}/{self.run}/{self.camcol}/"
            f"frame-{self.filter}-{self.run:06d}-{self.camcol}-{self.field:04d}.fits.bz2"
        )


def sky_counts_for(band: int, rng: np.random.Generator) -> float:
    """A night's sky level in counts per pixel (log-normal around the dark-sky median)."""
    mu = SKY_MAG[band] - 0.15 * abs(rng.standard_normal())
    return float(10 ** (-0.4 * (mu - 22.5)) * 0.396**2 / NMGY[band])


# --------------------------------------------------------------------------- TAN projection


def world_to_pixel(spec: FrameSpec, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, ...]:
    """Gnomonic projection to 1-based FITS pixel coordinates (x = column, y = row)."""
    a0, d0 = np.radians(spec.crval1), np.radians(spec.crval2)
    a, d = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(a - a0)
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * np.cos(a - a0)) / cosc
    inv = np.linalg.inv(spec.cd)
    xi, eta = np.degrees(xi), np.degrees(eta)
    x = inv[0, 0] * xi + inv[0, 1] * eta + CRPIX[0]
    y = inv[1, 0] * xi + inv[1, 1] * eta + CRPIX[1]
    return x, y


def pixel_to_world(spec: FrameSpec, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Inverse of world_to_pixel (degrees)."""
    dx, dy = np.asarray(x, float) - CRPIX[0], np.asarray(y, float) - CRPIX[1]
    xi = np.radians(spec.cd[0, 0] * dx + spec.cd[0, 1] * dy)
    eta = np.radians(spec.cd[1, 0] * dx + spec.cd[1, 1] * dy)
    a0, d0 = np.radians(spec.crval1), np.radians(spec.crval2)
    den = np.cos(d0) - eta * np.sin(d0)
    a = a0 + np.arctan2(xi, den)
    d = np.arctan2(np.sin(d0) + eta * np.cos(d0), np.hypot(xi, den))
    return np.degrees(a) % 360.0, np.degrees(d)


def galsim_wcs(spec: FrameSpec):
    """The local Jacobian (arcsec/pixel) GalSim draws with: u west (-RA cos dec), v north."""
    import galsim

    cd = spec.cd * 3600.0
    return galsim.JacobianWCS(-cd[0, 0], -cd[0, 1], cd[1, 0], cd[1, 1])


def footprint(spec: FrameSpec) -> tuple[float, float, float, float]:
    """(ra_min, ra_max, dec_min, dec_max) of the frame's pixel corners."""
    ra, dec = pixel_to_world(
        spec,
        np.array([0.5, NAXIS1 + 0.5, 0.5, NAXIS1 + 0.5]),
        np.array([0.5, 0.5, NAXIS2 + 0.5, NAXIS2 + 0.5]),
    )
    return float(ra.min()), float(ra.max()), float(dec.min()), float(dec.max())


# --------------------------------------------------------------------------- noise and format


def flat_field(band: int, camcol: int) -> np.ndarray:
    """The calibration vector's shape along the columns: a smooth 1 % vignetting-like curve."""
    x = np.linspace(-1, 1, NAXIS1)
    return (1 + 0.01 * (1 - x**2) - 0.004 * (camcol - 3.5) / 3 * x) * NMGY[band]


def add_noise(
    image: np.ndarray, spec: FrameSpec, calib: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Sky-subtracted image with the noise of sky + object counts through the gain.

    As in SDSS, the detector reads whole counts (DN): the frame is (integer counts - sky) x
    calib, so its pixel values are discrete and compress like the real frames'.
    """
    # in place on two float64 buffers (a frame is 3 Mpix): the same operations and dtypes, in
    # the same order, as (sky + max(counts, 0)) / gain + dark and rint(sky + counts + noise)
    counts = image / calib[None, :]
    sd = np.maximum(counts, 0)
    sd += spec.sky_counts
    sd /= spec.gain
    sd += spec.dark_variance
    np.sqrt(sd, out=sd)
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    noise *= sd.astype(np.float32)
    del sd
    counts += spec.sky_counts
    counts += noise
    np.rint(counts, out=counts)
    counts -= spec.sky_counts
    counts *= calib[None, :]
    return counts.astype(np.float32)


def truncate_mantissa(image: np.ndarray, bits: int = 9) -> np.ndarray:
    """Round float32 to `bits` stored mantissa bits (10 significant binary digits with the
    implicit one), as SDSS's FLOATCOMPRESS does: the real frames' 14 low bits are all zero."""
    u = np.ascontiguousarray(image, dtype=np.float32).view(np.uint32).copy()
    drop = 23 - bits
    u += np.uint32(1 << (drop - 1))
    u &= np.uint32(~((1 << drop) - 1) & 0xFFFFFFFF)
    return u.view(np.float32)


def header_records(spec: FrameSpec, offset_seconds: float = 0.0) -> list[dict]:
    """HDU0 keywords of an SDSS corrected frame (values of this mock)."""
    tai = (spec.mjd * 86400.0) + offset_seconds
    from astropy.time import Time

    t = Time(tai / 86400.0, format="mjd", scale="tai")
    date, hms = t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S.%f")[:11]
    cd = spec.cd
    recs = [
        ("TAI", tai, "1st row - Number of seconds since Nov 17 1858"),
        ("RA", spec.crval1, "1st row - Right ascension of telescope boresight (deg)"),
        ("DEC", 0.0, "1st row - Declination of telescope boresight (deg)"),
        ("SPA", 90.0, "1st row - Camera col position angle wrt north (deg)"),
        ("IPA", 0.0, "1st row - Instrument rotator position angle (deg)"),
        ("IPARATE", 0.0, "1st row - Instrument rotator angular velocity (deg/sec)"),
        ("AZ", 180.0, "1st row - Azimuth  (encoder) of tele (0=N?) (deg)"),
        ("ALT", float(90.0 - np.degrees(np.arccos(1 / spec.airmass))), "1st row - Altitude (deg)"),
        ("DATE-OBS", date, "1st row - TAI date"),
        ("TAIHMS", hms, "1st row - TAI time (HH:MM:SS.SS)"),
        ("ORIGIN", "SDSS", ""),
        ("TELESCOP", "2.5m", ""),
        ("TIMESYS", "TAI", ""),
        ("RUN", spec.run, "Run number"),
        ("FRAME", spec.field, "Frame sequence number within the run"),
        ("CCDLOC", CAMROW[spec.filter] * 10 + spec.camcol, "Survey location of CCD (rowCol)"),
        ("STRIPE", spec.stripe, "Stripe index number"),
        ("STRIP", "N", "Strip in the stripe being tracked."),
        ("FLAVOR", "science", "Flavor of this run"),
        ("SYS_SCN", "mean", "System of the scan great circle (e.g., mean)"),
        ("EQNX_SCN", 2000.0, "Equinox of the scan great circle. (years)"),
        ("NODE", 95.0, "RA of the great circle's ascending node (deg)"),
        ("INCL", 0.0, "Great circle's inclination wrt cel. eq. (deg)"),
        ("EXPTIME", "53.907456", "Exposure time (seconds)"),
        ("OBJECT", f"{spec.stripe} N", "e.g., 'stripe 50.6 degrees, north strip'"),
        ("SYSTEM", "FK5", ""),
        ("CCDMODE", "DRIFT", "'STARING' or 'DRIFT'"),
        ("C_OBS", 26322, "CCD row clock rate (usec/row)"),
        ("COLBIN", 1, "Binning factor perpendicular to the columns"),
        ("ROWBIN", 1, "Binning factor perpendicular to the rows"),
        ("CAMROW", CAMROW[spec.filter], "Row in the imaging camera"),
        ("BADLINES", 0, "Number of bad lines in frame"),
        ("EQUINOX", 2000.0, ""),
        ("SOFTBIAS", 1000, 'software "bias" added to all DN'),
        ("BUNIT", "nanomaggy", "1 nanomaggy = 3.631e-6 Jy"),
        ("FILTER", spec.filter, "filter used"),
        ("CAMCOL", spec.camcol, "column in the imaging camera"),
        ("VERSION", "v5_6_3", ""),
        ("DERV_VER", "NOCVS:v8_23", ""),
        ("ASTR_VER", "NOCVS:v5_24", ""),
        ("RADECSYS", "ICRS", "International Celestial Ref. System"),
        ("CTYPE1", "RA---TAN", "Coordinate type"),
        ("CTYPE2", "DEC--TAN", "Coordinate type"),
        ("CUNIT1", "deg", "Units"),
        ("CUNIT2", "deg", "Units"),
        ("CRPIX1", CRPIX[0], "X of reference pixel"),
        ("CRPIX2", CRPIX[1], "Y of reference pixel"),
        ("CRVAL1", spec.crval1, "RA of reference pixel (deg)"),
        ("CRVAL2", spec.crval2, "Dec of reference pixel (deg)"),
        ("CD1_1", cd[0, 0], "RA deg per column pixel"),
        ("CD1_2", cd[0, 1], "RA deg per row pixel"),
        ("CD2_1", cd[1, 0], "Dec deg per column pixel"),
        ("CD2_2", cd[1, 1], "Dec deg per row pixel"),
        ("NMGY", spec.nmgy, "Calibration factor [nMgy per count]"),
        ("NMGYIVAR", 1.0 / (0.01 * spec.nmgy) ** 2, "Calibration factor inverse variance"),
        ("RERUN", spec.rerun, "rerun"),
        ("PSF_FWHM", spec.fwhm, "mock: PSF FWHM (arcsec), Kolmogorov profile"),
        ("SKYCNTS", spec.sky_counts, "mock: sky level (counts/pixel) subtracted"),
        ("GAIN", spec.gain, "mock: gain (electrons/count)"),
        ("MOCK", True, f"simulated by pz-mock (photoz-tools {__version__})"),
    ]
    return [{"name": n, "value": v, "comment": c} for n, v, c in recs]


def _sky_hdu(spec: FrameSpec, rng: np.random.Generator) -> np.ndarray:
    allsky = np.full((192, 256), spec.sky_counts, np.float32)  # the sky that was subtracted
    rec = np.zeros(
        1,
        dtype=[
            ("ALLSKY", ">f4", (192, 256)),
            ("XINTERP", ">f4", (NAXIS1,)),
            ("YINTERP", ">f4", (NAXIS2,)),
        ],
    )
    rec["ALLSKY"][0] = allsky
    rec["XINTERP"][0] = (np.arange(NAXIS1) + 0.5) / 8 - 0.5
    rec["YINTERP"][0] = (np.arange(NAXIS2) + 0.5) / 8 + 0.5
    return rec


def _astrometry_hdu(spec: FrameSpec) -> np.ndarray:
    names = [
        "RUN",
        "RERUN",
        "CAMCOL",
        "FILTER",
        "NODE",
        "INCL",
        "NAXIS",
        "FIELD",
        "A",
        "B",
        "C",
        "D",
        "E",
        "F",
        "DROW0",
        "DROW1",
        "DROW2",
        "DROW3",
        "DCOL0",
        "DCOL1",
        "DCOL2",
        "DCOL3",
        "CSROW",
        "CSCOL",
        "CCROW",
        "CCCOL",
        "RICUT",
        "MJD",
        "AIRMASS",
        "MUERR",
        "NUERR",
    ]
    dtype = [
        ("RUN", ">i4"),
        ("RERUN", "S3"),
        ("CAMCOL", ">i4"),
        ("FILTER", "S1"),
        ("NODE", ">f8"),
        ("INCL", ">f8"),
        ("NAXIS", ">i4", (2,)),
        ("FIELD", ">i4"),
    ]
    dtype += [(n, ">f8") for n in names[8:29]] + [("MUERR", ">f4"), ("NUERR", ">f4")]
    rec = np.zeros(1, dtype=dtype)
    # mu = A + B row + C col, nu = D + E row + F col (0-based pixels; great circle = equator)
    ra0, dec0 = pixel_to_world(spec, np.array([1.0]), np.array([1.0]))
    rec["RUN"], rec["RERUN"], rec["CAMCOL"] = spec.run, spec.rerun, spec.camcol
    rec["FILTER"], rec["NODE"], rec["INCL"] = spec.filter, 95.0, 0.0
    rec["NAXIS"][0] = (NAXIS1, NAXIS2)
    rec["FIELD"] = spec.field
    rec["A"], rec["B"], rec["C"] = ra0[0], spec.cd[0, 1], spec.cd[0, 0]
    rec["D"], rec["E"], rec["F"] = dec0[0], spec.cd[1, 1], spec.cd[1, 0]
    rec["RICUT"], rec["MJD"], rec["AIRMASS"] = 100.0, spec.mjd, spec.airmass
    rec["MUERR"], rec["NUERR"] = 0.03, 0.03
    return rec


def write_frame(
    path: str | Path,
    image: np.ndarray,
    spec: FrameSpec,
    rng: np.random.Generator,
    compress: bool = True,
) -> Path:
    """Write the frame atomically (temporary file in the same folder, then rename).

    `image` is the noisy, sky-subtracted float32 (NAXIS2, NAXIS1) array in nanomaggies.
    """
    import fitsio

    path = Path(path)
    if not compress and path.suffix == ".bz2":
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    calib = flat_field(spec.band, spec.camcol).astype(np.float32)
    fd, tmp = tempfile.mkstemp(suffix=".fits", prefix=".tmp-", dir=path.parent)
    os.close(fd)
    try:
        with fitsio.FITS(tmp, "rw", clobber=True) as f:
            f.write(
                truncate_mantissa(image), header=header_records(spec, BAND_TIME_OFFSET[spec.filter])
            )
            f[0].write_history("pz-mock: simulated SDSS corrected frame")
            f.write(calib)
            f.write(_sky_hdu(spec, rng))
            f.write(_astrometry_hdu(spec))
        if compress:
            raw = Path(tmp).read_bytes()
            Path(tmp).write_bytes(bz2.compress(raw, 9))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
