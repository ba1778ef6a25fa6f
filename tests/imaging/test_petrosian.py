"""SDSS Petrosian photometry (photoz_tools.imaging.petrosian) against closed forms and integrals.

The references are independent of the module: the Petrosian ratio of an exponential disc from its
closed-form curve of growth, of a de Vaucouleurs profile from a numerical integral (scipy quad),
on images that GalSim draws with exact pixel integration; noise errors against the scatter over
many noise realisations. All images are small; the whole file runs in a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

galsim = pytest.importorskip("galsim")
pytest.importorskip("photutils")

from photoz_tools.imaging import petrosian as P  # noqa: E402

LO, HI = 0.8, 1.25


# --------------------------------------------------------------------------- references


def exp_growth(r, h):
    """Fraction of an exponential disc's flux within r (closed form)."""
    x = np.asarray(r, dtype=float) / h
    return 1.0 - (1.0 + x) * np.exp(-x)


def ratio_from_growth(growth, r):
    """Petrosian ratio from a curve of growth: annulus 0.8r-1.25r mean over the mean within r."""
    return (growth(HI * r) - growth(LO * r)) / (HI**2 - LO**2) / growth(r)


def roots(f, lo, hi, n=4000):
    """All sign changes of f on a log grid, refined with brentq."""
    from scipy.optimize import brentq

    r = np.geomspace(lo, hi, n)
    v = np.array([f(x) for x in r])
    i = np.flatnonzero(np.sign(v[:-1]) != np.sign(v[1:]))
    return [brentq(f, r[k], r[k + 1]) for k in i]


def devauc_growth(re):
    """Curve of growth of a de Vaucouleurs profile by numerical integration (not gammainc)."""
    from scipy.integrate import quad

    b = 7.669249  # b_4, from gammaincinv(8, 0.5)

    def sb(r):
        return math.exp(-b * ((r / re) ** 0.25 - 1.0))

    total = quad(lambda r: 2 * math.pi * r * sb(r), 0, np.inf, limit=400)[0]

    def growth(r):
        r = float(r)
        return quad(lambda t: 2 * math.pi * t * sb(t), 0, r, limit=400, points=[re])[0] / total

    return growth


def draw(profile, n):
    """A noiseless n x n GalSim image (pixel-integrated), profile at the centre pixel."""
    return profile.drawImage(nx=n, ny=n, scale=1.0).array.astype(float)


# --------------------------------------------------------------------------- closed forms


def test_ratio_matches_exponential_closed_form():
    h, n = 6.0, 201
    img = draw(galsim.Exponential(scale_radius=h, flux=1000.0), n)
    radii, ratio = P.petrosian_ratio(img, 100.0, 100.0, radii=np.geomspace(5, 40, 12))
    want = ratio_from_growth(lambda r: exp_growth(r, h), radii)
    np.testing.assert_allclose(ratio, want, atol=0.004)


def test_exponential_radius_flux_and_r50():
    """r_P = 3.546 h, 99.33 % of the flux within 2 r_P, r50 = 1.668 h (from the closed form)."""
    from scipy.optimize import brentq

    h, n, total = 6.0, 201, 1000.0
    rp_true = brentq(lambda r: ratio_from_growth(lambda t: exp_growth(t, h), r) - 0.2, h, 10 * h)
    frac = exp_growth(2 * rp_true, h)
    r50_true = brentq(lambda r: exp_growth(r, h) - 0.5 * frac, 0.1, 10 * h)
    assert rp_true / h == pytest.approx(3.546, abs=0.001)
    assert frac == pytest.approx(0.9933, abs=1e-4)

    img = draw(galsim.Exponential(scale_radius=h, flux=total), n)
    assert P.petrosian_radius(img, 100.0, 100.0) == pytest.approx(rp_true, rel=0.005)
    out = P.measure(img[None], [100.0], [100.0], sky_sigma=0.0, ref_band=0)
    assert out["petro_rad"][0] == pytest.approx(rp_true, rel=0.005)
    assert out["flux"][0, 0] / total == pytest.approx(frac, abs=0.001)
    assert out["petro_r50"][0, 0] == pytest.approx(r50_true, rel=0.01)
    assert out["flags"][0] == 0
    assert out["flux_err"][0, 0] == 0.0


def test_de_vaucouleurs_radius_and_flux_fraction():
    """r_P = 1.714 r_e and ~81.6 % of the flux within 2 r_P (numerical integral)."""
    from scipy.optimize import brentq

    re, n, total = 6.0, 301, 1000.0
    growth = devauc_growth(re)
    rp_true = brentq(lambda r: ratio_from_growth(growth, r) - 0.2, 0.5 * re, 5 * re)
    frac = growth(2 * rp_true)
    assert rp_true / re == pytest.approx(1.714, abs=0.002)
    assert frac == pytest.approx(0.8165, abs=0.001)

    img = draw(galsim.DeVaucouleurs(half_light_radius=re, flux=total), n)
    out = P.measure(img[None], [150.0], [150.0], sky_sigma=0.0, ref_band=0)
    assert out["petro_rad"][0] == pytest.approx(rp_true, rel=0.01)
    assert out["flux"][0, 0] / total == pytest.approx(frac, abs=0.003)
    assert out["flags"][0] == 0


def test_radius_from_reference_band_applies_to_all_bands():
    """r_P comes from band 2 (r); every band's flux is its own profile within 2 r_P(r)."""
    hs, n = [3.0, 4.0, 5.0, 7.0, 9.0], 201
    images = np.stack([draw(galsim.Exponential(scale_radius=h, flux=100.0), n) for h in hs])
    out = P.measure(images, [100.0], [100.0], sky_sigma=0.0)
    rp = out["petro_rad"][0]
    assert rp == pytest.approx(P.petrosian_radius(images[2], 100.0, 100.0), rel=1e-9)
    assert rp == pytest.approx(3.546 * hs[2], rel=0.005)
    want = 100.0 * exp_growth(2 * rp, np.array(hs))
    np.testing.assert_allclose(out["flux"][0], want, rtol=0.003)
    # the z band is the widest: its aperture misses visibly more than 1 %
    assert out["flux"][0, 4] < 0.95 * 100.0
    # and r_P follows ref_band when it is moved
    other = P.measure(images, [100.0], [100.0], sky_sigma=0.0, ref_band=4)
    assert other["petro_rad"][0] == pytest.approx(3.546 * hs[4], rel=0.005)


# --------------------------------------------------------------------------- noise


@pytest.mark.parametrize("gain", [None, 50.0])
def test_errors_match_scatter_over_realisations(gain):
    """225 copies of one galaxy, each with its own noise: flux_err ~ the flux's scatter."""
    rng = np.random.default_rng(12)
    h, step, m = 3.0, 72, 15
    stamp = draw(galsim.Exponential(scale_radius=h, flux=40.0), step - 1)
    c = (step - 2) / 2
    model = np.zeros((m * step, m * step))
    xs, ys = [], []
    for i in range(m):
        for j in range(m):
            model[i * step : i * step + step - 1, j * step : j * step + step - 1] = stamp
            xs.append(j * step + c)
            ys.append(i * step + c)
    sky = np.array([0.08, 0.05, 0.04, 0.05, 0.1])
    images = np.empty((5,) + model.shape)
    for b in range(5):
        mean = model if gain is None else rng.poisson(np.maximum(model, 0) * gain) / gain
        images[b] = mean + rng.normal(0.0, sky[b], model.shape)
    out = P.measure(images, xs, ys, sky_sigma=sky, gain=gain)
    assert np.all(out["flags"] & (P.NOPETRO | P.EDGE) == 0)
    scatter = out["flux"].std(axis=0, ddof=1)
    err = np.median(out["flux_err"], axis=0)
    np.testing.assert_allclose(err, scatter, rtol=0.15)
    np.testing.assert_allclose(out["flux"].mean(axis=0), 40.0 * 0.9933, rtol=0.03)


def test_poisson_term_adds_to_sky_term():
    img = draw(galsim.Exponential(scale_radius=4.0, flux=500.0), 121)[None]
    sky_only = P.measure(img, [60.0], [60.0], sky_sigma=0.1, ref_band=0)
    both = P.measure(img, [60.0], [60.0], sky_sigma=0.1, gain=10.0, ref_band=0)
    # Poisson variance of the source: about its flux / gain (exact-overlap weights ~ 1 inside)
    extra = both["flux_err"][0, 0] ** 2 - sky_only["flux_err"][0, 0] ** 2
    assert extra == pytest.approx(both["flux"][0, 0] / 10.0, rel=0.01)
    area = math.pi * (2 * sky_only["petro_rad"][0]) ** 2
    assert sky_only["flux_err"][0, 0] == pytest.approx(0.1 * math.sqrt(area), rel=0.02)


# --------------------------------------------------------------------------- flags and rules


def test_edge_flags():
    img = draw(galsim.Exponential(scale_radius=4.0, flux=100.0), 101)
    big = np.zeros((101, 201))
    big[:, :101] = img  # galaxy at x=50; a copy of the image's centre near the right edge
    out = P.measure(big[None], [50.0, 195.0], [50.0, 50.0], sky_sigma=0.0, ref_band=0)
    assert out["flags"][0] == 0
    assert out["flags"][1] & P.EDGE
    # r_P = 3.55 h = 14 px reaches past the right edge (200.5) from x = 195 too
    assert out["flags"][1] & P.INCOMPLETE_PROFILE


def test_no_crossing_big_object_uses_outermost_point():
    """Larger than max_radius: NOPETRO | NOPETRO_BIG, r_P the outermost point of the profile."""
    img = draw(galsim.Exponential(scale_radius=40.0, flux=1000.0), 121)
    radii = P.default_radii(20.0)
    out = P.measure(img[None], [60.0], [60.0], sky_sigma=0.0, ref_band=0, radii=radii)
    assert out["flags"][0] & P.NOPETRO and out["flags"][0] & P.NOPETRO_BIG
    assert out["petro_rad"][0] == pytest.approx(radii[-1])
    assert np.isnan(P.petrosian_radius(img, 60.0, 60.0, radii=radii))


def test_no_signal_falls_back_to_3_arcsec():
    """No measurable profile (S/N < 1 in the first annulus): NOPETRO, r_P = 3 arcsec."""
    img = np.zeros((3, 64, 64))
    out = P.measure(img, [32.0], [32.0], sky_sigma=0.05)
    assert out["flags"][0] & P.NOPETRO
    assert not out["flags"][0] & P.NOPETRO_BIG
    assert out["petro_rad"][0] == pytest.approx(3.0 / 0.396)
    assert out["flux_err"][0, 0] == pytest.approx(
        0.05 * math.sqrt(math.pi) * 2 * 3.0 / 0.396, rel=0.03
    )
    assert np.all(np.isnan(out["petro_r50"]))  # no positive flux: no half-light radius


def test_footprint_end_falls_back_to_larger_of_3_arcsec_and_outermost_point():
    """The profile ends where the object's own label ends; no crossing before: the fallback."""
    img = draw(galsim.Exponential(scale_radius=10.0, flux=1000.0), 101)
    yy, xx = np.mgrid[:101, :101]
    labels = np.where(np.hypot(xx - 50, yy - 50) < 5, 7, 0)
    out = P.measure(img[None], [50.0], [50.0], sky_sigma=0.01, ref_band=0, labels=labels)
    assert out["flags"][0] & P.NOPETRO and not out["flags"][0] & P.NOPETRO_BIG
    assert out["petro_rad"][0] == pytest.approx(3.0 / 0.396)
    # a wider footprint: the outermost point (beyond 3") is the fallback
    labels = np.where(np.hypot(xx - 50, yy - 50) < 16, 7, 0)
    out = P.measure(img[None], [50.0], [50.0], sky_sigma=0.01, ref_band=0, labels=labels)
    assert out["flags"][0] & P.NOPETRO
    assert 16 / 1.25 < out["petro_rad"][0] < 16.8 / 0.8


def test_several_crossings_take_the_largest():
    """A compact core in a faint extended halo: the ratio crosses 0.2 three times."""
    h1, f1, h2, f2, n = 1.0, 1000.0, 15.0, 1900.0, 201
    prof = galsim.Exponential(scale_radius=h1, flux=f1) + galsim.Exponential(
        scale_radius=h2, flux=f2
    )
    img = draw(prof, n)

    def growth(r):
        return (f1 * exp_growth(r, h1) + f2 * exp_growth(r, h2)) / (f1 + f2)

    found = roots(lambda r: ratio_from_growth(growth, r) - 0.2, 1.0, 120.0)
    assert len(found) == 3  # down, up, down
    out = P.measure(img[None], [100.0], [100.0], sky_sigma=0.0, ref_band=0)
    assert out["flags"][0] & P.MANYPETRO
    assert out["petro_rad"][0] == pytest.approx(found[-1], rel=0.01)
    assert out["flux"][0, 0] / (f1 + f2) == pytest.approx(growth(2 * found[-1]), abs=0.003)


def test_labels_keep_a_neighbour_out():
    """A 5x brighter neighbour 30 px away: with a segmentation map (each pixel to the brighter
    model, as a deblender would split them), the isolated galaxy's values come back."""
    h, n = 4.0, 161
    gal = galsim.Exponential(scale_radius=h, flux=100.0)
    alone = draw(gal, n)
    other = draw(gal.shift(30, 0) * 5.0, n)
    both = alone + other
    labels = np.where(alone >= other, 1, 2) * (np.maximum(alone, other) > 1e-4)
    ref = P.measure(alone[None], [80.0], [80.0], sky_sigma=0.0, ref_band=0)
    raw = P.measure(both[None], [80.0], [80.0], sky_sigma=0.0, ref_band=0)
    seg = P.measure(both[None], [80.0], [80.0], sky_sigma=0.0, ref_band=0, labels=labels)
    assert raw["flux"][0, 0] > 1.5 * ref["flux"][0, 0]  # the neighbour inflates r_P and flux
    assert seg["flags"][0] & P.NOPETRO == 0
    # the neighbour's light on the galaxy's own pixels stays: a few per cent
    assert seg["petro_rad"][0] == pytest.approx(ref["petro_rad"][0], rel=0.05)
    assert seg["flux"][0, 0] == pytest.approx(ref["flux"][0, 0], rel=0.07)


def test_bad_inputs_are_refused():
    img = np.zeros((5, 32, 32))
    with pytest.raises(ValueError, match="bands"):
        P.measure(np.zeros(5), [1.0], [1.0], sky_sigma=0.1)
    with pytest.raises(ValueError, match="sky_sigma"):
        P.measure(img, [1.0], [1.0], sky_sigma=[0.1, 0.1])
    with pytest.raises(ValueError, match="gain"):
        P.measure(img, [1.0], [1.0], sky_sigma=0.1, gain=0.0)
    with pytest.raises(ValueError, match="radii"):
        P.petrosian_radius(img[0], 1.0, 1.0, radii=[3.0, 2.0])


# --------------------------------------------------------------------------- magnitudes


def test_asinh_and_pogson_magnitudes():
    """Luptitudes: 24.80 in r at zero flux (SDSS), Pogson's value for bright objects."""
    m0, _ = P.asinh_mag(0.0, 1.0, "r")
    assert float(m0) == pytest.approx(-2.5 / math.log(10) * math.log(1.2e-10), abs=1e-9)
    assert float(m0) == pytest.approx(24.80, abs=0.005)
    flux, err = np.array([100.0, 1000.0]), np.array([1.0, 3.0])
    ma, ea = P.asinh_mag(flux, err, "r")
    mp, ep = P.pogson_mag(flux, err)
    np.testing.assert_allclose(mp, 22.5 - 2.5 * np.log10(flux))
    np.testing.assert_allclose(ma, mp, atol=1e-5)
    np.testing.assert_allclose(ea, ep, rtol=1e-5)
    # the asinh error is the derivative times the flux error, also at low flux
    f, df = 0.3, 1e-6
    d = (P.asinh_mag(f + df, 0, "g")[0] - P.asinh_mag(f - df, 0, "g")[0]) / (2 * df)
    assert float(P.asinh_mag(f, 0.2, "g")[1]) == pytest.approx(abs(float(d)) * 0.2, rel=1e-5)
    assert np.isnan(P.pogson_mag(-1.0, 1.0)[0])
