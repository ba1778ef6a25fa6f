"""The mock's photometry: the deconvolved model, conditioned draws, rows left out, and a
catalogue measured from the frames' own pixels."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from photoz_tools.mock.photometry import load_model, read_photometry, skipped_line


def test_conditioned_draws_keep_z_and_follow_the_measured_r():
    model = load_model()
    rng = np.random.default_rng(0)
    z = np.r_[np.full(2000, 0.05), np.full(2000, 0.15)]
    r_obs = np.full(4000, 17.0)
    mag = model.sample_given(z, r_obs, np.full(4000, 0.01), rng)
    assert mag.shape == (4000, 5) and np.all(np.isfinite(mag))
    assert abs(np.median(mag[:, 2] - 17.0)) < 0.01 and np.std(mag[:, 2] - 17.0) < 0.02
    gr = mag[:, 1] - mag[:, 2]
    assert np.median(gr[2000:]) > np.median(gr[:2000]) + 0.1  # redder at higher z
    # a broad r error lets the intrinsic r move toward the model's r distribution
    loose = model.sample_given(z[:500], np.full(500, 17.0), np.full(500, 1.0), rng)
    assert np.std(loose[:, 2]) > 0.3


def test_rows_left_out_are_counted_not_dropped_silently(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {"z": [0.05, float("nan"), 0.5, 0.1]}
    for k, b in enumerate("ugriz"):
        cols[f"dered_petro_{b}"] = [19.0 - 0.5 * k, 18.0, 18.0, 17.0 - 0.3 * k]
    pq.write_table(pa.table(cols), tmp_path / "q.parquet")
    p = read_photometry(tmp_path / "q.parquet")
    assert list(p.source_row) == [0, 3]
    line = skipped_line("q.parquet", p)
    assert line is not None and "q.parquet: 2 rows left out" in line
    assert "1 with z not finite" in line and "1 with z outside" in line


def _aperture(image: np.ndarray, x: float, y: float, r: float) -> float:
    """Sum of the pixels whose centres lie within r of (x, y) (0-based): plain numpy."""
    x0, x1 = int(np.floor(x - r)), int(np.ceil(x + r)) + 1
    y0, y1 = int(np.floor(y - r)), int(np.ceil(y + r)) + 1
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return float(image[y0:y1, x0:x1][np.hypot(xx - x, yy - y) < r].sum())


@pytest.mark.slow
def test_catalogue_deviations_follow_an_independent_aperture_on_the_same_pixels(
    tmp_path: Path,
):
    """(catalogue - truth) against a plain pixel-centre aperture sum of radius 2 petroRad_r on
    the written frames, as fractional fluxes: the same pixels hold the same noise, so the two
    deviations agree galaxy by galaxy, also in u, where the noise (not the share of the light a
    Petrosian aperture misses, common to both) makes most of the deviation."""
    pytest.importorskip("galsim")
    import fitsio
    import pyarrow.parquet as pq
    from astropy.wcs import WCS

    from photoz_tools.mock.survey import mock

    res = mock(
        tmp_path / "m", n=40, seed=5, per_field=40, neighbours=0, stars=0, jobs=1, compress=False
    )
    cat = pq.read_table(res.catalog).to_pandas()
    radius = 2 * cat["petroRad_r"].to_numpy() / 0.396
    dev_cat, dev_ap, band = [], [], []
    for b in "ugriz":
        path = next((tmp_path / "m").rglob(f"frame-{b}-*.fits"))
        image, head = fitsio.read(str(path), header=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w = WCS({k: head[k] for k in head.keys() if k.startswith(("C", "NAXIS"))})
        x, y = w.all_world2pix(cat["ra"], cat["dec"], 0)
        sep = np.hypot(x[:, None] - x[None], y[:, None] - y[None]) + 1e9 * np.eye(len(x))
        for i, r in enumerate(radius):
            inside = 4 * r + 30 < x[i] < image.shape[1] - 4 * r - 30
            if sep[i].min() < 2 * r + 40 or not (inside and 2 * r < y[i] < image.shape[0] - 2 * r):
                continue
            ext = cat[f"extinction_{b}"][i]
            true = 10 ** (-0.4 * (cat[f"true_mag_{b}"][i] + ext - 22.5))
            dev_cat.append(10 ** (-0.4 * (cat[f"dered_petro_{b}"][i] + ext - 22.5)) / true - 1)
            dev_ap.append(_aperture(image, x[i], y[i], r) / true - 1)
            band.append(b)
    dev_cat, dev_ap, band = map(np.array, (dev_cat, dev_ap, band))
    u = band == "u"
    assert len(dev_cat) >= 50 and u.sum() >= 10
    assert np.corrcoef(dev_cat, dev_ap)[0, 1] > 0.9
    assert np.corrcoef(dev_cat[u], dev_ap[u])[0, 1] > 0.8
    assert np.std(dev_cat[u] - dev_ap[u]) < 0.5 * np.std(dev_cat[u])
