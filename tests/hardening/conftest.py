"""Fixtures for the hardening tests: a tiny synthetic MGS catalogue and SAS tree, served by the
stand-in on 127.0.0.1, and the fault proxy in front of it (see faultserver.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # faultserver, helpers (importlib import mode)

N_ROWS = 40


def tiny_catalog(n: int = N_ROWS):
    """n galaxies passing every MGS cut, with unique ascending-shuffled specObjIDs."""
    import pyarrow as pa

    rng = np.random.default_rng(13)
    cols = {
        "specObjID": 299_000_000_000_000_000 + rng.permutation(n).astype(np.int64) * 4096 + 1,
        "objID": 1_237_650_000_000_000_000 + np.arange(n, dtype=np.int64),
        "ra": 150.0 + 0.01 * np.arange(n),
        "dec": 2.0 + 0.001 * np.arange(n),
        "z": rng.uniform(0.02, 0.3, n),
        "ebv": rng.uniform(0.01, 0.05, n),
        "run": np.full(n, 1000),
        "camcol": np.full(n, 3),
        "field": np.full(n, 42),
    }
    for b in "ugriz":
        cols[f"petroMag_{b}"] = rng.uniform(14.0, 17.0, n)
    return pa.table(cols)


@pytest.fixture(scope="session")
def catalog():
    return tiny_catalog()


@pytest.fixture(scope="session")
def sas_root(tmp_path_factory) -> Path:
    """A SAS tree with one small synthetic frame per band (run 1000, camcol 3, field 42)."""
    from helpers import write_frame

    root = tmp_path_factory.mktemp("sas")
    folder = root / "frames" / "301" / "1000" / "3"
    for i, band in enumerate("ugriz"):
        write_frame(folder, band, np.full((150, 200), float(i + 1), np.float32))
    return root


@pytest.fixture(scope="session")
def standin(catalog, sas_root):
    from photoz_tools.sdss.standin import StandIn

    with StandIn(catalog=catalog, sas_root=sas_root) as s:
        yield s


@pytest.fixture
def proxy(standin):
    from faultserver import FaultProxy

    with FaultProxy(standin.url, trickle=0.3) as p:
        yield p


@pytest.fixture(autouse=True)
def _private_caches(tmp_path, monkeypatch):
    """Spools and frame caches under the test's tmp_path, never the user's ~/.cache."""
    monkeypatch.setenv("PZ_QUERY_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("PZ_CACHE", str(tmp_path / "cache"))
