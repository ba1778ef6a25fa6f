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
KNOWN = {
    "UnicodeDecodeError at arrow.py": "tables/arrow.py: undecodable Parquet metadata",
    "KeyError at fits.py": "tables/fits.py: FITS columns with empty or non-ASCII names",
    "ValueError at fits.py": "tables/fits.py: a corrupt TFORM/TDIM card",
    "wrong result: column '": "tables/fits.py: non-ASCII names of zero-row FITS columns lost",
    "ValueError at frames.py": "imaging/frames.py: non-ASCII bytes in a frame header",
    "VerifyError at frames.py": "imaging/frames.py: an unparsable BITPIX/NAXISn card",
    "IndexError at metrics.py": "metrics.py: bin_index with empty edges",
    "wrong result: PIT outside": "pdf.py: PIT of 1 + 2e-16 for a row with a 1e308 cell",
}


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
