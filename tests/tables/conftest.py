"""Fixtures for the table I/O tests: small tables of the toolkit's schemas, built in memory."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from photoz_tools import tables as T


def make_table(n: int = 7, seed: int = 0) -> pa.Table:
    """A cutouts+predictions-like table: int64 ids near 2**63, image, pdf, n_frames, units."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2**62, 2**63 - 1, n, dtype=np.int64)
    ids[0] = np.iinfo(np.int64).max
    if n > 1:
        ids[1] = np.iinfo(np.int64).min + 1
    image = rng.normal(0, 1, (n, 64, 64, 5)).astype(np.float32)
    image[0, 1, 2, 3] = 1e-38  # a subnormal-ish value must survive too
    pdf = rng.random((n, 180), dtype=np.float32)
    pdf /= pdf.sum(axis=1, keepdims=True)
    return pa.table(
        {
            "specObjID": T.to_arrow(ids),
            "ra": T.to_arrow(rng.uniform(0, 360, n)),
            "dec": T.to_arrow(rng.uniform(-10, 70, n)),
            "z": T.to_arrow(rng.uniform(0, 0.4, n).astype(np.float32)),
            "image": T.to_arrow(image),
            "pdf": T.to_arrow(pdf),
            "n_frames": T.to_arrow(rng.integers(0, 4, (n, 5)).astype(np.int16)),
            "pz_flags": T.to_arrow(rng.integers(0, 8, n).astype(np.int16)),
            "class": pa.array([["GALAXY", "QSO", "STAR"][i % 3] for i in range(n)]),
            "good": pa.array(rng.random(n) > 0.5),
        }
    )


def make_metadata() -> dict[str, str]:
    edges = np.linspace(0.0, 0.4, 181)
    return {
        T.BIN_EDGES_KEY: json.dumps([float(e) for e in edges]),
        "survey": "SDSS DR16 MGS",
        **T.provenance_metadata(
            "pz-predict -m model/ cat.fits -o out.fits",
            ["cat.fits"],
            model_hash="sha256:" + "ab" * 32,
        ),
    }


def assert_tables_equal(a: pa.Table, b: pa.Table) -> None:
    """Same column names, numpy dtypes, shapes and bit-identical values."""
    assert a.column_names == b.column_names
    for name in a.column_names:
        x, y = T.column_array(a, name), T.column_array(b, name)
        assert x.dtype == y.dtype, (name, x.dtype, y.dtype)
        assert x.shape == y.shape, (name, x.shape, y.shape)
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name


@pytest.fixture
def table() -> pa.Table:
    return make_table()


@pytest.fixture
def metadata() -> dict[str, str]:
    return make_metadata()


@pytest.fixture
def table_factory():
    """make_table(n, seed) for tests that need other sizes."""
    return make_table


@pytest.fixture
def same():
    """assert_tables_equal(a, b)."""
    return assert_tables_equal
