"""pz-mock's renderer and frame writer: fluxes, reproducibility, the SDSS frame format."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("galsim")

from photoz_tools.mock import frames as fr  # noqa: E402
from photoz_tools.mock import render  # noqa: E402
from photoz_tools.mock.photometry import load_model, read_mgs  # noqa: E402
from photoz_tools.mock.survey import mock  # noqa: E402


def _galaxies(n: int = 12, seed: int = 3) -> render.Galaxies:
    rng = np.random.default_rng(seed)
    p = load_model().sample(n, rng)
    return render.make_galaxies(np.zeros(n), np.zeros(n), p.z, p.mag, rng.uniform(0, 0.1, n), rng)


def test_flux_per_band_matches_the_magnitude_to_one_percent():
    gal = _galaxies()
    for i in range(len(gal)):
        for b in range(5):
            size = render.stamp_sizes(gal.take(np.array([i])), b, 1.4)[0]
            stamp = render.render_stamp(gal, i, b, fwhm=1.4, size=size)
            expected = 10 ** (-0.4 * (gal.mag[i, b] + gal.extinction[i, b] - 22.5))
            assert stamp.sum() == pytest.approx(expected, rel=0.01), (i, "ugriz"[b])


def test_bulges_are_redder_than_disks():
    gal = _galaxies(200)
    bf = gal.bulge_frac
    mixed = (bf[:, 2] > 0.05) & (bf[:, 2] < 0.95)
    assert np.all(bf[mixed, 0] < bf[mixed, 2]) and np.all(bf[mixed, 4] > bf[mixed, 2])


def test_model_samples_obey_the_mgs_cuts():
    p = load_model().sample(5000, np.random.default_rng(0))
    assert np.all(p.mag[:, 2] <= 17.8) and np.all((p.z > 0) & (p.z <= 0.4))
    assert 0.07 < np.median(p.z) < 0.12 and np.all(p.err > 0)


def test_mgs_reader_fixes_the_missing_eu_header_name(shared_data: Path):
    p = read_mgs(shared_data / "mgs-photometry" / "SDSS_MGS.train")
    assert len(p) == 5000
    assert 0.04 < np.median(p.err[:, 0]) < 0.07  # eu, not eg
    assert np.median(p.err[:, 1]) < 0.01


def test_tan_projection_agrees_with_astropy(tmp_path: Path):
    from astropy.wcs import WCS

    spec = fr.FrameSpec(
        run=3900,
        camcol=3,
        field=20,
        band=2,
        crval1=150.2,
        crval2=0.3,
        fwhm=1.3,
        sky_counts=140.0,
        mjd=51075.0,
    )
    img = np.zeros((fr.NAXIS2, fr.NAXIS1), np.float32)
    path = fr.write_frame(tmp_path / spec.relpath(), img, spec, np.random.default_rng(0))
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as hdul:
            assert [h.__class__.__name__ for h in hdul] == [
                "PrimaryHDU",
                "ImageHDU",
                "BinTableHDU",
                "BinTableHDU",
            ]
            head = hdul[0].header
            assert head["BUNIT"] == "nanomaggy" and head["FILTER"] == "r"
            assert hdul[0].data.shape == (1489, 2048) and hdul[1].data.shape == (2048,)
            assert hdul[2].data["ALLSKY"].shape == (1, 192, 256)
            assert hdul[3].data["RUN"][0] == 3900
            w = WCS(head)
    xs, ys = np.array([1.0, 1024.3, 2048.0]), np.array([1.0, 700.7, 1489.0])
    ra, dec = fr.pixel_to_world(spec, xs, ys)
    x2, y2 = w.all_world2pix(ra, dec, 1)
    assert np.allclose(x2, xs, atol=1e-6) and np.allclose(y2, ys, atol=1e-6)
    # SDSS orientation: RA grows along rows, Dec along columns
    assert w.wcs.cd[0, 1] > 0 and w.wcs.cd[1, 0] > 0


def _small(out: Path, seed: int, jobs: int = 1, frames: bool = True):
    return mock(
        out,
        n=40,
        seed=seed,
        per_field=20,
        neighbours=5,
        stars=5,
        jobs=jobs,
        compress=False,
        frames=frames,
    )


def test_mock_is_seeded_and_reproducible_whatever_the_jobs(tmp_path: Path):
    import pyarrow.parquet as pq

    a = _small(tmp_path / "a", 7, jobs=1)
    b = _small(tmp_path / "b", 7, jobs=2)
    c = _small(tmp_path / "c", 8, frames=False)
    assert a.n_frames == 10 and a.frames_written == 10
    ta, tb, tc = (pq.read_table(r.catalog) for r in (a, b, c))
    assert ta.equals(tb)
    assert not np.allclose(ta["z"].to_numpy(), tc["z"].to_numpy())
    fa = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("frame-*.fits"))
    fb = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("frame-*.fits"))
    assert len(fa) == 10 and fa == fb
    for rel in fa:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_rendered_galaxies_sit_at_catalogue_positions_with_their_flux(tmp_path: Path):
    import fitsio
    import pyarrow.parquet as pq
    from astropy.wcs import WCS

    res = mock(
        tmp_path / "m", n=40, seed=2, per_field=40, neighbours=0, stars=0, jobs=1, compress=False
    )
    cat = pq.read_table(res.catalog).to_pandas()
    path = next((tmp_path / "m").rglob("frame-r-*.fits"))
    image, head = fitsio.read(str(path), header=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = WCS({k: head[k] for k in head.keys() if k.startswith(("C", "NAXIS"))})
    x, y = w.all_world2pix(cat["ra"], cat["dec"], 0)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    ok = 0
    for i in range(len(cat)):
        r = np.hypot(xx - x[i], yy - y[i])
        if (
            x[i] < 60
            or y[i] < 60
            or x[i] > image.shape[1] - 60
            or y[i] > image.shape[0] - 60
            or cat["r50_true"][i] > 1.5
        ):
            continue
        # no other catalogue galaxy within the aperture
        d = np.hypot(x - x[i], y - y[i])
        if np.sort(d)[1] < 120:
            continue
        flux = image[r < 50].sum()  # 20 arcsec: n=4 bulges have broad wings
        true = 10 ** (-0.4 * (cat["true_mag_r"][i] + cat["extinction_r"][i] - 22.5))
        assert flux == pytest.approx(true, rel=0.08), i
        ok += 1
    assert ok >= 2
    # noise: the sky-limited pixel scatter expected from sky, gain and dark variance
    sky, gain = head["SKYCNTS"], head["GAIN"]
    expected = np.sqrt(sky / gain + fr.DARK_VARIANCE[2]) * fr.NMGY[2]
    blank = image[:200, :200]
    mad = 1.4826 * np.median(np.abs(blank - np.median(blank)))
    assert mad == pytest.approx(expected, rel=0.08)


def test_photometry_from_a_pz_query_table(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from photoz_tools.mock.photometry import read_photometry

    cols = {"specObjID": [1, 2, 3], "z": [0.05, 0.5, 0.1]}
    for k, b in enumerate("ugriz"):
        cols[f"dered_petro_{b}"] = [19.0 - 0.5 * k, 18.0, 18.5 - 0.4 * k]
    pq.write_table(pa.table(cols), tmp_path / "q.parquet")
    p = read_photometry(tmp_path / "q.parquet")
    assert list(p.source_row) == [0, 2]  # z = 0.5 is outside the MGS range
    assert np.allclose(p.mag[:, 2], [18.0, 17.7]) and np.all(p.err > 0)  # errors drawn


def test_cached_psf_draws_exactly_what_galsim_draws():
    """psf_object caches the PSF's k-space images by overriding a GalSim internal; this holds it
    to a plain galsim.Kolmogorov bit for bit (repeats hit the cache), so a GalSim release that
    changes that internal fails here rather than altering the frames."""
    import galsim

    wcs = galsim.PixelScale(0.396)
    for fwhm in (1.1, 1.4, 1.1):
        for r50, q, size, x in ((1.5, 0.6, 41, 20.3), (3.0, 0.9, 65, 32.7), (1.5, 0.6, 41, 20.3)):
            gal = galsim.Sersic(n=4, half_light_radius=r50, flux=1e3).shear(
                q=q, beta=0.3 * galsim.radians
            )
            ours, plain = (
                galsim.Convolve(gal, psf)
                .drawImage(nx=size, ny=size, wcs=wcs, center=galsim.PositionD(x, x))
                .array
                for psf in (render.psf_object(fwhm), galsim.Kolmogorov(fwhm=fwhm))
            )
            np.testing.assert_array_equal(ours, plain)
