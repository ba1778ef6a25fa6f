"""Fixtures for the SDSS tests: real DR14 SkyServer rows made into an MGS-like catalogue, served
by the stand-in on 127.0.0.1 (never the internet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SAMPLE = Path("skyserver-sample") / "skyserver_dr14_10k.csv"


def make_catalog(shared_data: Path):
    """The 10k real rows (stars included) with fresh unique ids and the MGS query's columns.

    The sample's ids lost precision as floats: specObjID gets fresh unique values in a shuffled
    order (so ORDER BY matters), objID too. Model magnitudes stand in for Petrosian ones; the
    columns the sample lacks (E(B-V), errors, PSF, sky, Beck photo-z, flags) are made up
    deterministically, with some rows failing each cut.
    """
    import pyarrow as pa
    from astropy.table import Table

    t = Table.read(shared_data / SAMPLE, format="ascii.csv")
    n = len(t)
    rng = np.random.default_rng(2019)
    cols = {
        "specObjID": 299_000_000_000_000_000 + rng.permutation(n).astype(np.int64) * 4096 + 1,
        "objID": 1_237_650_000_000_000_000 + np.arange(n, dtype=np.int64),
        "ra": np.asarray(t["ra"], dtype=float),
        "dec": np.asarray(t["dec"], dtype=float),
        "z": np.asarray(t["redshift"], dtype=float),
        "zErr": np.abs(rng.normal(0, 2e-5, n)),
        "class": np.asarray(t["class"]).astype(str),
        "zWarning": np.where(rng.random(n) < 0.03, 4, 0),
        "primtarget": np.where(rng.random(n) < 0.1, 32, 64),
        "clean": np.where(rng.random(n) < 0.05, 0, 1),
        "ebv": 0.02 + 0.08 * rng.random(n),
        "run": np.asarray(t["run"], dtype=np.int64),
        "rerun": np.asarray(t["rerun"], dtype=np.int64),
        "camcol": np.asarray(t["camcol"], dtype=np.int64),
        "field": np.asarray(t["field"], dtype=np.int64),
        "expAB_r": rng.uniform(0.2, 1.0, n),
        "zphot_b16": np.asarray(t["redshift"], dtype=float) + rng.normal(0, 0.02, n),
        "zphot_b16_err": rng.uniform(0.01, 0.05, n),
    }
    for b in "ugriz":
        cols[f"petroMag_{b}"] = np.asarray(t[b], dtype=float)
        cols[f"petroMagErr_{b}"] = rng.uniform(0.005, 0.1, n)
        cols[f"psfFWHM_{b}"] = rng.uniform(0.9, 2.0, n)
        cols[f"sky_{b}"] = rng.uniform(0.5, 50.0, n)
    return pa.table(cols)


def expected_mgs(cat, r_max=17.8, z_max=0.4, box=None):
    """The specObjIDs the default query must return, in order, computed with numpy."""
    c = {k: cat.column(k).to_numpy(zero_copy_only=False) for k in cat.column_names}
    from photoz_tools.sdss.queries import EXTINCTION_COEFFS

    dered_r = c["petroMag_r"] - c["ebv"] * EXTINCTION_COEFFS["r"]
    m = (
        (c["z"] > 0)
        & (c["z"] <= z_max)
        & (c["zWarning"] == 0)
        & (np.char.upper(c["class"].astype(str)) == "GALAXY")
        & (c["primtarget"] >= 64)
        & (c["clean"] == 1)
        & (dered_r <= r_max)
    )
    if box is not None:
        m &= (c["ra"] >= box[0]) & (c["ra"] <= box[1]) & (c["dec"] >= box[2]) & (c["dec"] <= box[3])
    return np.sort(c["specObjID"][m])


@pytest.fixture(scope="session")
def catalog(shared_data):
    return make_catalog(shared_data)


@pytest.fixture
def standin(catalog):
    from photoz_tools.sdss.standin import StandIn

    with StandIn(catalog=catalog) as s:
        yield s


@pytest.fixture
def fast_client(standin):
    """A client with tiny backoff and timeout, for fault tests."""
    from photoz_tools.sdss.skyserver import SkyServer

    return SkyServer(url=standin.url, release=12, timeout=2.0, retries=3, backoff=0.001)


@pytest.fixture(autouse=True)
def _spool_in_tmp(tmp_path, monkeypatch):
    """Resume folders go under the test's tmp_path, never the user's cache."""
    monkeypatch.setenv("PZ_QUERY_SPOOL", str(tmp_path / "spool"))
