"""A fast sample of the fuzz campaigns of benchmarks/fuzz.py (which runs 10^4 cases each).

Every reader and plain function gets a few dozen generated cases here. A failure whose cause
is known and reported to the owning module (ROBUSTNESS.md) is listed in KNOWN and tolerated;
any other failure fails the test with its reproduction.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import fuzz  # noqa: E402

fuzz.DERANDOMIZE = True
N = 15
#: signature prefix -> owner; remove an entry once its owner has fixed it
KNOWN: dict[str, str] = {}


def _unknown(results: list[fuzz.Result]) -> list[str]:
    return [
        f"{r.name}: {sig}\n    repro: {r.failures[sig]}"
        for r in results
        for sig in r.failures
        if not sig.startswith(tuple(KNOWN))
    ]


@pytest.mark.parametrize("ext", [".parquet", ".fits", ".csv", ".ecsv"])
def test_table_readers(tmp_path, ext):
    res = fuzz.reader_campaign(ext, N, tmp_path)
    assert res.tried == N
    assert not _unknown([res])


@pytest.mark.parametrize("ext", [".parquet", ".fits"])
def test_table_roundtrip(tmp_path, ext):
    assert not _unknown([fuzz.roundtrip_campaign(ext, N, tmp_path)])


def test_frames(tmp_path):
    assert not _unknown([fuzz.frame_campaign(N, tmp_path)])


def test_bundles(tmp_path):
    assert not _unknown([fuzz.bundle_campaign(N, tmp_path)])


def test_pdf_functions():
    assert not _unknown(fuzz.pdf_campaigns(N))


def test_metric_functions():
    assert not _unknown(fuzz.metric_campaigns(N))
