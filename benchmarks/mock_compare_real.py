"""Compare a pz-mock frame with the real SDSS frames of field 2583-2-0136 (../shared/data):
noise level, PSF size, pixel statistics, file size and header keywords, band by band.

Run: .venv/bin/python benchmarks/mock_compare_real.py [MOCK_DIR]
(without MOCK_DIR a one-field mock is rendered into a temporary folder first)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import fitsio
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "sdss-frames" / "2583-2-0136"


def robust_noise(image: np.ndarray) -> float:
    """Pixel noise from the median absolute deviation of pixel differences (insensitive to
    sources and to crowding, which inflates a plain MAD in this field near M2)."""
    d = (image[:, 1:] - image[:, :-1]).ravel()
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def star_fwhm(image: np.ndarray, noise: float) -> float:
    """Median FWHM (arcsec) of isolated, unsaturated, round peaks: the area above half the
    peak, as a circle's diameter (the same estimator on both, whatever the PSF's wings)."""
    from scipy import ndimage

    peaks = (
        (image == ndimage.maximum_filter(image, 21)) & (image > 50 * noise) & (image < 1000 * noise)
    )
    ys, xs = np.nonzero(peaks)
    out = []
    for y, x in zip(ys, xs, strict=True):
        if y < 12 or x < 12 or y > image.shape[0] - 12 or x > image.shape[1] - 12:
            continue
        s = image[y - 10 : y + 11, x - 10 : x + 11].astype(np.float64)
        above = s > 0.5 * s[10, 10]
        lab, _ = ndimage.label(above)
        blob = lab == lab[10, 10]
        by, bx = np.nonzero(blob)
        if np.ptp(by) > 1.5 * np.ptp(bx) + 1 or np.ptp(bx) > 1.5 * np.ptp(by) + 1:
            continue  # elongated: a galaxy
        out.append(2 * np.sqrt(blob.sum() / np.pi) * 0.396)
    # stars are the most compact sources: the lower quartile of the sizes
    return float(np.percentile(out, 25)) if out else float("nan")


def stars_only_fwhm(fwhm: float, noise: float) -> float:
    """The estimator on the mock's PSF alone (stars on noise, no galaxies): what a star-only
    field like the real one near M2 would give."""
    import galsim

    from photoz_tools.mock import render

    rng = np.random.default_rng(0)
    img = galsim.ImageF(600, 600, scale=0.396)
    psf = render.psf_object(fwhm)
    for k in range(60):
        x, y = 30 + 70 * (k % 8) + rng.uniform(0, 1), 30 + 70 * (k // 8) + rng.uniform(0, 1)
        render.draw_object(
            img, psf.withFlux(rng.uniform(50, 300) * noise * 20), None, x, y, img.wcs, 48
        )
    arr = img.array + rng.normal(0, noise, img.array.shape)
    return star_fwhm(arr, noise)


def main() -> None:
    if len(sys.argv) > 1:
        mock_dir = Path(sys.argv[1])
    else:
        from photoz_tools.mock.survey import mock

        mock_dir = Path(tempfile.mkdtemp(prefix="pz-mock-compare-"))
        mock(mock_dir, n=200, seed=4, per_field=200, jobs=1)
    psfield = fitsio.read(str(REAL / "psField-002583-2-0136.fit"), ext=6)
    print(
        f"{'band':4s} {'noise real':>10s} {'(skysig)':>8s} {'noise mock':>10s} "
        f"{'FWHM real':>9s} {'(psField)':>9s} {'FWHM mock':>9s} {'(stars)':>7s} "
        f"{'(header)':>8s} {'MB real':>7s} {'MB mock':>7s}"
    )
    real_keys: set[str] = set()
    mock_keys: set[str] = set()
    for b, band in enumerate("ugriz"):
        rpath = REAL / f"frame-{band}-002583-2-0136.fits.bz2"
        mpath = sorted(mock_dir.rglob(f"frame-{band}-*.fits*"))[0]
        rim, rh = fitsio.read(str(rpath), header=True)
        mim, mh = fitsio.read(str(mpath), header=True)
        real_keys |= set(rh.keys())
        mock_keys |= set(mh.keys())
        rn, mn = robust_noise(rim), robust_noise(mim)
        skysig = psfield["skysig"][0][b] * rh["NMGY"]
        print(
            f"{band:4s} {rn:10.4f} {skysig:8.4f} {mn:10.4f} {star_fwhm(rim, rn):9.2f} "
            f"{psfield['psf_width'][0][b]:9.2f} {star_fwhm(mim, mn):9.2f} "
            f"{stars_only_fwhm(mh['PSF_FWHM'], mn):7.2f} "
            f"{mh['PSF_FWHM']:8.2f} {rpath.stat().st_size / 1e6:7.2f} "
            f"{mpath.stat().st_size / 1e6:7.2f}"
        )
    print(
        "HDU0 keywords in the real frames, not in the mock:",
        " ".join(sorted(real_keys - mock_keys)),
    )
    print("HDU0 keywords in the mock only:", " ".join(sorted(mock_keys - real_keys)))


if __name__ == "__main__":
    main()
