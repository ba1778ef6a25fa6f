"""The numpy core against closed forms: kernel, taps, validity, projections, flux scale."""

from __future__ import annotations

import numpy as np
import pytest

from photoz_tools.imaging.resample import (
    TanWcs,
    cutout_world,
    flux_scale,
    flux_scales,
    lanczos3,
    lanczos3_weights,
)


def test_weights_normalised_symmetric_and_delta():
    f = np.linspace(0, 0.999, 200)
    w = lanczos3_weights(f)
    assert w.shape == (6, 200) and np.allclose(w.sum(axis=0), 1.0)
    half = lanczos3_weights(np.array([0.5]))[:, 0]
    assert np.allclose(half, half[::-1])  # taps -2..3 around 0.5 are symmetric
    for frac in (0.0, 5e-6):  # SWarp: below 1e-5 the kernel is a delta on tap 0
        assert np.array_equal(lanczos3_weights(np.array([frac]))[:, 0], [0, 0, 1, 0, 0, 0])
    assert lanczos3_weights(np.array([2e-5]))[2, 0] < 1.0
    # against the textbook kernel sinc(d) sinc(d/3), normalised
    d = f[:, None] - np.arange(-2, 4)
    ref = np.sinc(d) * np.sinc(d / 3)
    ref /= ref.sum(axis=1, keepdims=True)
    ok = f >= 1e-5
    assert np.abs(w.T[ok] - ref[ok]).max() < 1e-6


def test_fraction_just_below_one_is_a_delta_on_the_next_tap_not_nan():
    # 1 - 1e-9 rounds to 1.0 in float32: it once gave 0/0 and NaN cutout pixels (flag 4) for
    # ~1 galaxy in 1,000 of a mock survey; it is the next pixel, as in double-precision SWarp
    for frac in (1 - 1e-9, 1 - 5e-6):
        w = lanczos3_weights(np.array([frac]))[:, 0]
        assert np.array_equal(w, [0, 0, 0, 1, 0, 0])
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    v, ok = lanczos3(img, np.array([5.0 - 1e-9]), np.array([6.0]))  # 1-based: pixel (5, 6)
    assert ok.all() and v[0] == img[5, 4]


def test_lanczos_copies_pixels_on_the_grid_and_keeps_constants():
    rng = np.random.default_rng(1)
    img = rng.normal(size=(40, 50)).astype(np.float32)
    y, x = np.mgrid[5:30, 6:40].astype(float) + 1.0  # 1-based pixel centres
    v, ok = lanczos3(img, x, y)
    assert ok.all() and np.array_equal(v, img[5:30, 6:40])
    const = np.full((40, 50), 3.25, np.float32)
    v, ok = lanczos3(const, x + 0.37, y + 0.81)
    assert np.allclose(v[ok], 3.25, rtol=1e-6)


def test_validity_follows_swarp():
    img = np.ones((20, 30), np.float32)
    # valid iff 3 <= floor(v) <= naxis-3 on both axes
    x = np.array([2.99, 3.0, 27.99, 28.0, 10.0])
    y = np.array([10.0, 10.0, 10.0, 10.0, 17.5])
    v, ok = lanczos3(img, x, y, fill=-1)
    assert ok.tolist() == [False, True, True, False, True]
    assert v[0] == -1 and v[3] == -1
    v, ok = lanczos3(img, np.array([10.0]), np.array([18.0]))
    assert not ok[0]
    v, ok = lanczos3(img, np.array([np.nan]), np.array([5.0]))
    assert not ok[0]


def test_cutout_grid_is_swarps():
    ra, dec = cutout_world(np.array([150.0]), np.array([2.0]))
    assert ra.shape == (1, 64, 64)
    wcs = TanWcs.cutout(150.0, 2.0)
    x, y = wcs.world_to_pixel(ra[0], dec[0])
    yy, xx = np.mgrid[1:65, 1:65]
    assert np.abs(x - xx).max() < 1e-8 and np.abs(y - yy).max() < 1e-8
    # the centre is FITS (32.5, 32.5); east is left (RA decreases with x), north is up
    cx, cy = wcs.world_to_pixel(150.0, 2.0)
    assert (cx, cy) == pytest.approx((32.5, 32.5))
    assert ra[0, 0, 1] < ra[0, 0, 0] and dec[0, 1, 0] > dec[0, 0, 0]
    assert (dec[0, 1, 0] - dec[0, 0, 0]) * 3600 == pytest.approx(0.396, rel=1e-6)


def test_tan_roundtrip_and_flux_scale():
    w = TanWcs((1024.5, 745.0), (323.3, -0.7), np.array([[0, 0.00011], [0.00011, 0]]))
    x = np.array([1.0, 500.3, 2048.0])
    y = np.array([1.0, 700.1, 1489.0])
    xb, yb = w.world_to_pixel(*w.pixel_to_world(x, y))
    assert np.allclose(xb, x, atol=1e-9) and np.allclose(yb, y, atol=1e-9)
    # a frame with exactly the cutout's pixel scale: factor 1 up to the TAN area term
    same = TanWcs((32.5, 32.5), (10.0, 0.0), np.diag([-0.396 / 3600, 0.396 / 3600]))
    assert flux_scale(same.pixel_to_world, 64, 64, 10.0, 0.0) == pytest.approx(1.0, abs=1e-12)
    # 0.4" pixels into 0.396" ones: the flux per pixel scales with the area ratio
    big = TanWcs((32.5, 32.5), (10.0, 0.0), np.diag([-0.4 / 3600, 0.4 / 3600]))
    f = flux_scales(big.pixel_to_world, 64, 64, np.array([10.0, 10.001]), np.array([0.0, 0.0]))
    assert f == pytest.approx((0.396 / 0.4) ** 2, rel=1e-6)


def test_sip_frames_go_through_astropy(tmp_path, frame_maker):
    """A TAN-SIP header (zero distortion here) takes astropy's all_world2pix path and lands on
    the same positions as the plain TAN fast path."""
    from astropy.io import fits

    from photoz_tools.imaging.cutouts import resample_on_frame
    from photoz_tools.imaging.frames import load_frame

    rng = np.random.default_rng(2)
    data = rng.normal(size=(150, 200)).astype(np.float32)
    plain = frame_maker(tmp_path / "a", data=data, compress=False)
    with fits.open(plain) as hdul:
        h = hdul[0].header
        h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
        h.update({"A_ORDER": 2, "B_ORDER": 2, "A_2_0": 0.0, "B_0_2": 0.0})
        hdul.writeto(tmp_path / "sip.fits")
    fa, fb = load_frame(plain), load_frame(tmp_path / "sip.fits")
    assert fa.tan is not None and fb.tan is None
    va, oka = resample_on_frame(fa, [150.001], [2.0005])
    vb, okb = resample_on_frame(fb, [150.001], [2.0005])
    assert np.array_equal(oka, okb) and np.abs(va - vb)[oka].max() < 1e-4
