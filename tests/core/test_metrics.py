"""Metrics on arrays whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from photoz_tools import metrics as M


def test_residuals_bias_sigma_eta_by_hand():
    zspec = np.array([0.0, 0.1, 0.2, 0.3, 0.25])
    dz = np.array([0.01, -0.02, 0.0, 0.1, -0.06])
    zphot = zspec + dz * (1 + zspec)
    assert np.allclose(M.residuals(zphot, zspec), dz)
    assert M.bias(dz) == pytest.approx(0.006)
    # median 0.0; |dz| = .01 .02 0 .1 .06 -> median 0.02
    assert M.sigma_mad(dz) == pytest.approx(1.4826 * 0.02)
    assert M.eta(dz) == pytest.approx(40.0)
    assert M.eta(dz, 0.015) == pytest.approx(60.0)
    pm = M.point_metrics(zphot, zspec)
    assert pm["N"] == 5 and pm["eta"] == pytest.approx(40.0)


def test_sigma_mad_of_gaussian():
    rng = np.random.default_rng(0)
    assert M.sigma_mad(rng.normal(0.3, 0.01, 200_000)) == pytest.approx(0.01, rel=0.01)


def test_empty_sample_is_nan():
    assert np.isnan(M.bias([])) and np.isnan(M.sigma_mad([])) and np.isnan(M.eta([]))


def test_pit_flatness_against_scipy():
    from scipy import stats

    rng = np.random.default_rng(1)
    for u in (rng.random(2000), rng.random(2000) ** 1.2):
        d, p = M.ks_uniform(u)
        ref = stats.kstest(u, "uniform")
        assert d == pytest.approx(ref.statistic, rel=1e-12)
        assert p == pytest.approx(ref.pvalue, rel=0.05, abs=1e-3)
        assert M.cvm_uniform(u) == pytest.approx(stats.cramervonmises(u, "uniform").statistic)
    flat = M.pit_flatness(rng.random(1000))
    assert set(flat) == {"pit_ks", "pit_ks_p", "pit_cvm"}


def test_bins_and_groups():
    assert list(M.bin_index([0, 0.5, 1.0, 1.5, -1, np.nan], [0, 0.5, 1.0])) == [0, 1, 1, -1, -1, -1]
    e = M.equal_width_edges([1.0, 3.0, np.nan], 4)
    assert np.allclose(e, [1, 1.5, 2, 2.5, 3])
    rows = [{"N": 10, "bias": 1.0}, {"N": 20, "bias": 3.0}]
    mean, std = M.group_rows(rows, ("N", "bias"))
    assert mean == {"N": 30, "bias": 2.0}
    assert std["bias"] == pytest.approx(np.sqrt(2))


def test_statistics_without_pdfs_has_nan_pdf_metrics():
    row = M.statistics([0.1, 0.2], [0.1, 0.2])
    assert row["N"] == 2 and row["bias"] == 0 and np.isnan(row["crps"]) and np.isnan(row["pit_ks"])
    row = M.statistics([0.1, 0.2], [0.1, 0.2], crps=[1, 2], pit=[0.25, 0.75], width68=[0.1, 0.3])
    assert row["crps"] == 1.5 and row["width68"] == pytest.approx(0.2)
    assert row["pit_ks"] == pytest.approx(0.25)
