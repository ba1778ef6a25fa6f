"""The redshift-PDF core against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from photoz_tools import pdf as P
from photoz_tools.pdf import Bins


def gaussian_pdf(bins: Bins, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Exact bin probabilities of N(mu, sigma) (integrals of the density over each bin)."""
    from scipy.special import ndtr

    cdf = ndtr((bins.edges[None, :] - mu[:, None]) / sigma[:, None])
    return np.diff(cdf, axis=1)


def gaussian_crps(mu: np.ndarray, sigma: np.ndarray, z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    x = (z - mu) / sigma
    phi = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return sigma * (x * (2 * ndtr(x) - 1) + 2 * phi - 1 / math.sqrt(math.pi))


def test_default_bins_and_json_round_trip():
    b = Bins.default()
    assert (b.n, b.lo, b.hi) == (180, 0.0, 0.4)
    assert np.allclose(b.widths, 0.4 / 180)
    assert np.allclose(b.midpoints[:2], [0.2 / 180, 0.6 / 180])
    assert Bins.from_json(b.to_json()) == b
    assert Bins.linear(0, 0.4, 90) != b
    assert Bins.linear(0, 0.4, 180) == b
    with pytest.raises(ValueError):
        Bins(np.array([0.0, 0.1, 0.1]))
    with pytest.raises(ValueError):
        Bins.from_json("not json")


def test_bin_index_last_bin_closed():
    b = Bins.default()
    assert b.index(0.4) == 179
    assert b.index(0.0) == 0
    assert b.index(0.4 + 1e-12) == -1
    assert b.index(-1e-12) == -1
    assert b.index(b.edges[1]) == 1  # an inner edge opens the next bin
    assert list(b.index([0.1, np.nan, 0.5])) == [45, -1, -1]


def test_delta_pdf_returns_its_midpoint():
    b = Bins.default()
    k = np.array([0, 17, 90, 179])
    pdf = np.zeros((4, 180), dtype=np.float32)
    pdf[np.arange(4), k] = 1
    assert np.allclose(P.zphot(pdf, b), b.midpoints[k], rtol=0, atol=1e-15)
    assert np.allclose(P.zmode(pdf, b), b.midpoints[k])
    # the within-bin uniform variance: a delta PDF has the std of a bin
    assert np.allclose(P.zstd(pdf, b), b.widths[0] / math.sqrt(12))
    lo, hi = P.interval(pdf, b, 0.68)
    assert np.allclose(lo, b.edges[k] + 0.16 * b.widths[0])
    assert np.allclose(hi, b.edges[k] + 0.84 * b.widths[0])
    s = P.summarize(pdf, b)
    assert s["zphot"].dtype == np.float32 and s["pz_flags"].dtype == np.uint16
    assert list(s) == list(P.SUMMARY_COLUMNS)
    assert list(s["pz_flags"]) == [P.FLAG_EDGE_LOW, 0, 0, P.FLAG_EDGE_HIGH]


def test_single_row_gives_scalars_and_normalises():
    b = Bins.linear(0, 1, 4)
    p = np.array([1.0, 1.0, 2.0, 0.0])  # not normalised
    assert P.zphot(p, b) == pytest.approx((0.125 + 0.375 + 2 * 0.625) / 4)
    assert P.normalize(p).sum() == pytest.approx(1)
    assert P.cdf_at(p, b, 0.5) == pytest.approx(0.5)
    assert P.cdf_at(p, b, 0.625) == pytest.approx(0.75)
    assert P.cdf_at(p, b, -1) == 0 and P.cdf_at(p, b, 2) == 1
    assert P.quantile(p, b, 0.75) == pytest.approx(0.625)
    assert P.quantile(p, b, 1.0) == pytest.approx(0.75)  # the zero bin after is not support
    assert P.quantile(p, b, 0.25) == pytest.approx(0.25)


def test_quantile_inverts_cdf():
    rng = np.random.default_rng(0)
    b = Bins.default()
    pdf = rng.random((200, 180)) ** 4
    q = rng.random(7)
    zq = P.quantile(pdf, b, q)
    assert zq.shape == (200, 7)
    for j in range(7):
        assert np.allclose(P.cdf_at(pdf, b, zq[:, j]), q[j], atol=1e-12)
    mid = P.quantile(pdf, b, 0.5)
    assert np.allclose(mid, zq[:, 0] * 0 + P.quantile(pdf, b, [0.5])[:, 0])


def test_gaussian_moments_and_interval():
    b = Bins.linear(0, 0.4, 4000)
    mu, sig = np.array([0.2, 0.1]), np.array([0.02, 0.01])
    pdf = gaussian_pdf(b, mu, sig)
    assert np.allclose(P.zphot(pdf, b), mu, atol=1e-7)
    assert np.allclose(P.zstd(pdf, b), sig, rtol=1e-4)
    lo, hi = P.interval(pdf, b, 0.68)
    half = 0.994457883 * sig  # Phi^-1(0.84)
    assert np.allclose(lo, mu - half, atol=1e-6) and np.allclose(hi, mu + half, atol=1e-6)


def test_crps_matches_gaussian_closed_form():
    rng = np.random.default_rng(1)
    b = Bins.linear(0, 0.4, 1000)
    n = 500
    mu = rng.uniform(0.12, 0.28, n)
    sig = rng.uniform(0.005, 0.02, n)
    z = mu + rng.normal(0, 2, n) * sig
    got = P.crps(gaussian_pdf(b, mu, sig), b, z)
    assert np.max(np.abs(got - gaussian_crps(mu, sig, z))) < 1e-4
    # also with the default 180 bins
    b = Bins.default()
    got = P.crps(gaussian_pdf(b, mu, sig), b, z)
    assert np.max(np.abs(got - gaussian_crps(mu, sig, z))) < 1e-4


def test_crps_outside_range_and_uniform():
    b = Bins.linear(0, 1, 10)
    u = np.ones((3, 10))
    z = np.array([0.5, -0.5, 1.5])
    # uniform on [0,1]: CRPS(z) = z^3/3 + (1-z)^3/3 inside; + distance outside
    want = [0.25 / 3, 1 / 3 + 0.5, 1 / 3 + 0.5]
    assert np.allclose(P.crps(u, b, z), want)
    pit, crps = P.pit_crps(u, b, z)
    assert np.allclose(pit, [0.5, 0, 1]) and np.allclose(crps, want)


def sample_from_histogram(rng, pdf, bins):
    """Draw one z per row from the piecewise-constant density itself."""
    p = P.normalize(pdf)
    c = np.cumsum(p, axis=1)
    k = np.minimum((c < rng.random(len(p))[:, None]).sum(axis=1), bins.n - 1)
    return bins.edges[k] + rng.random(len(p)) * bins.widths[k]


def test_pit_of_true_distributions_is_uniform():
    from scipy.stats import kstest

    rng = np.random.default_rng(2)
    b = Bins.default()
    n = 100_000
    mu = rng.uniform(0.02, 0.35, n)
    sig = rng.uniform(0.003, 0.03, n)
    pdf = gaussian_pdf(b, mu, sig).astype(np.float32)
    pdf[: n // 4] += 0.5 * gaussian_pdf(b, mu[: n // 4] / 2, sig[: n // 4])  # bimodal quarter
    z = sample_from_histogram(rng, pdf, b)
    pit = P.pit(pdf, b, z)
    assert kstest(pit, "uniform").pvalue > 0.01
    # and a biased PDF fails
    assert kstest(P.pit(pdf, b, z + 0.01), "uniform").pvalue < 1e-6


def test_nan_rows_give_nan_and_chunking_is_invisible(monkeypatch):
    b = Bins.default()
    rng = np.random.default_rng(3)
    pdf = rng.random((50, 180))
    pdf[3] = np.nan
    pdf[4] = 0
    z = rng.uniform(0, 0.4, 50)
    full = P.crps(pdf, b, z), P.zphot(pdf, b), P.summarize(pdf, b)["z_hi68"]
    assert np.isnan(full[0][[3, 4]]).all() and np.isnan(full[1][[3, 4]]).all()
    monkeypatch.setattr(P, "_CHUNK_CELLS", 7 * 180)  # 7-row chunks
    again = P.crps(pdf, b, z), P.zphot(pdf, b), P.summarize(pdf, b)["z_hi68"]
    for a, c in zip(full, again, strict=True):
        assert np.allclose(a, c, rtol=1e-13, atol=0, equal_nan=True)


def test_flags():
    b = Bins.default()
    mid = b.midpoints

    def g(m, s):
        return np.exp(-0.5 * ((mid - m) / s) ** 2)

    pdf = np.stack(
        [g(0.1, 0.01), g(0.0, 0.01), g(0.4, 0.01), g(0.1, 0.01) + 0.6 * g(0.25, 0.01), g(0.2, 0.08)]
    )
    f = P.pdf_flags(pdf, b)
    both = P.FLAG_MULTIMODAL | P.FLAG_BROAD  # two peaks 0.15 apart: a wide 68 % interval too
    assert list(f) == [0, P.FLAG_EDGE_LOW, P.FLAG_EDGE_HIGH, both, P.FLAG_BROAD]
    assert np.array_equal(P.summarize(pdf, b)["pz_flags"], f)


def test_wrong_bin_count_is_an_error():
    with pytest.raises(ValueError, match="180"):
        P.zphot(np.ones((2, 10)), Bins.default())


def test_pit_crps_width_is_the_three_functions():
    rng = np.random.default_rng(5)
    b = Bins.default()
    pdf = rng.random((300, 180)).astype(np.float32) ** 6
    z = rng.uniform(-0.05, 0.45, 300)
    pit, crps, width = P.pit_crps_width(pdf, b, z)
    lo, hi = P.interval(pdf, b, 0.68)
    assert np.allclose(pit, P.pit(pdf, b, z), rtol=1e-12)
    assert np.allclose(crps, P.crps(pdf, b, z), rtol=1e-12)
    assert np.allclose(width, hi - lo, rtol=1e-12)
