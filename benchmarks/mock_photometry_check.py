"""Is the mock catalogue's photometry measured like the real MGS's? (catalogue - true) per band
and magnitude bin, beside the mock's own petroMagErr and the real MGS's listed petroMagErr.

Run: .venv/bin/python benchmarks/mock_photometry_check.py [SURVEY_DIR] [-n 1000] [-j 2]
Without SURVEY_DIR a survey of n rows of the real SDSS_MGS.test photometry is rendered into a
temporary folder (seed 12, --per-field 200, plain frames). (catalogue - true) holds the
measurement noise and what a Petrosian aperture misses of the total light (a few per cent for
disks, ~10 % for de Vaucouleurs bulges, as on the sky: true_mag_* are total magnitudes); its
robust spread is what to compare with the listed errors.

Then the noise itself: the per-pixel sky sigma of the survey's frames against the real corrected
frames of 2583-2-0136 (../shared/data/sdss-frames), and the r-band Petrosian error that the real
frame's sky noise gives over each mock galaxy's own aperture (radius 2 petroRad_r; sky noise
only, which dominates at these magnitudes) beside the mock's petroMagErr_r. If those agree, the
mock's errors are what the real sky gives for apertures of the mock's sizes. (The MLZ file's
listed errors are those of its model magnitudes, per the MLZ documentation, not Petrosian ones.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from photoz_tools.mock.photometry import read_mgs

ROOT = Path(__file__).resolve().parents[1]
MGS = ROOT.parent / "shared" / "data" / "mgs-photometry"
REAL_FRAMES = ROOT.parent / "shared" / "data" / "sdss-frames" / "2583-2-0136"
PIXEL = 0.396  # arcsec
BINS = {
    "u": [16, 18, 19, 20, 21, 23],
    "g": [13, 16, 17, 18, 19],
    "r": [12, 15.5, 16.5, 17.2, 17.8, 18.5],
    "i": [12, 15, 16, 17, 17.6],
    "z": [12, 15, 16, 16.8, 17.5],
}


def rsd(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x)))) if len(x) else float("nan")


def pixel_sigma(image: np.ndarray) -> float:
    """Robust per-pixel noise from neighbouring-pixel differences (blind to smooth light)."""
    d = np.diff(image.astype(np.float64), axis=1).ravel() / np.sqrt(2.0)
    return rsd(d)


def noise_check(cat, frames: Path) -> None:
    """Sky noise of the real frames against the mock's, and what it means for petroMagErr_r."""
    import bz2
    import io

    from astropy.io import fits

    if not REAL_FRAMES.is_dir():
        print(f"(no real frames at {REAL_FRAMES}: noise check skipped)")
        return
    real, mock = {}, {}
    for b in "ugriz":
        raw = bz2.decompress((REAL_FRAMES / f"frame-{b}-002583-2-0136.fits.bz2").read_bytes())
        with fits.open(io.BytesIO(raw)) as h:
            real[b] = pixel_sigma(h[0].data)
        files = sorted(frames.rglob(f"frame-{b}-*.fits*"))[:10]
        mock[b] = float(np.median([pixel_sigma(fits.getdata(f)) for f in files]))
    print("\nPer-pixel sky sigma (nanomaggies): real 2583-2-0136 / mock (median of 10 frames)")
    print("| band | real | mock | mock / real |\n|---|---|---|---|")
    for b in "ugriz":
        print(f"| {b} | {real[b]:.4f} | {mock[b]:.4f} | {mock[b] / real[b]:.2f} |")
    m = cat["dered_petro_r"].to_numpy()
    flux = 10 ** (-0.4 * (m + cat["extinction_r"].to_numpy() - 22.5))
    area = np.pi * (2 * cat["petroRad_r"].to_numpy() / PIXEL) ** 2
    expect = 1.0857 * np.sqrt(area) * real["r"] / flux
    print(
        "\nr band: petroMagErr_r expected from the real frame's sky noise over each mock "
        f"galaxy's aperture (median petroRad_r {np.median(cat['petroRad_r']):.2f} arcsec)"
    )
    print("| r bin | N | expected (real sky) | mock petroMagErr_r |\n|---|---|---|---|")
    edges = BINS["r"][:-1]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        s = (m >= lo) & (m < hi)
        e = cat["petroMagErr_r"].to_numpy()[s]
        print(f"| {lo}-{hi} | {s.sum()} | {np.median(expect[s]):.4f} | {np.median(e):.4f} |")


def main() -> None:
    import pyarrow.parquet as pq

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("survey", nargs="?", help="a pz-mock folder (default: render one)")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    args = ap.parse_args()
    tmp = None
    if args.survey is None:
        from photoz_tools.mock.survey import mock

        tmp = tempfile.TemporaryDirectory(prefix="pz-mock-phot-")
        t0 = time.perf_counter()
        res = mock(
            Path(tmp.name) / "sky",
            n=args.n,
            photometry=str(MGS / "SDSS_MGS.test"),
            seed=12,
            per_field=200,
            jobs=args.jobs,
            compress=False,
        )
        print(
            f"rendered {res.n_galaxies} galaxies, {res.n_fields} fields in "
            f"{time.perf_counter() - t0:.0f} s wall"
        )
        cat_path = res.catalog
    else:
        cat_path = Path(args.survey) / "catalog.parquet"
    cat = pq.read_table(cat_path).to_pandas()
    real = read_mgs(MGS / "SDSS_MGS.test")
    flags = cat["flags"].to_numpy()
    print(
        f"{len(cat)} mock rows ({cat_path}); Petrosian flags set on {np.mean(flags != 0):.1%}; "
        f"median petroR50_r {np.median(cat['petroR50_r']):.2f} arcsec, r50_true "
        f"{np.median(cat['r50_true']):.2f}; {len(real)} real rows (SDSS_MGS.test)"
    )
    print(
        "| band | catalogue mag bin | N mock | median (cat - true) | spread (cat - true) "
        "| mock petroMagErr median | N real | real petroMagErr median (p84) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for k, b in enumerate("ugriz"):
        m = cat[f"dered_petro_{b}"].to_numpy()
        d = m - cat[f"true_mag_{b}"].to_numpy()
        e = cat[f"petroMagErr_{b}"].to_numpy()
        edges = BINS[b]
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            s = (m >= lo) & (m < hi)
            rs = (real.mag[:, k] >= lo) & (real.mag[:, k] < hi)
            if not s.any() and not rs.any():
                continue
            re = real.err[rs, k]
            real_txt = f"{np.median(re):.4f} ({np.percentile(re, 84):.4f})" if rs.any() else "-"
            mock_txt = (
                f"{np.median(d[s]):+.4f} | {rsd(d[s]):.4f} | {np.median(e[s]):.4f}"
                if s.any()
                else "- | - | -"
            )
            print(f"| {b} | {lo}-{hi} | {s.sum()} | {mock_txt} | {rs.sum()} | {real_txt} |")
    noise_check(cat, Path(cat_path).parent / "frames")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
