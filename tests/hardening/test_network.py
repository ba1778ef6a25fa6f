"""Network faults between pz-query / the SAS fetch and the stand-in, over real sockets.

Every fault is retried a bounded number of times within bounded time; a fault that stays gives
one clear line. The proxy (faultserver.py) sits in front of the stand-in on 127.0.0.1.
"""

from __future__ import annotations

import time

import pytest
from faultserver import FAULTS
from helpers import one_clear_line, pz

from photoz_tools.sdss.sas import FetchError, SasClient
from photoz_tools.sdss.skyserver import SkyServer, SkyServerError

SQL = "SELECT TOP 5 specObjID, z FROM SpecObj ORDER BY specObjID"
FRAME = "frames/301/1000/3/frame-r-001000-3-0042.fits.bz2"
TIMEOUT = 0.8


def _sky(url: str, retries: int = 2) -> SkyServer:
    return SkyServer(url=url, release=12, timeout=TIMEOUT, retries=retries, backoff=0.01)


def _sas(url: str, tmp_path, retries: int = 2) -> SasClient:
    return SasClient(url, tmp_path / "cache", retries=retries, timeout=TIMEOUT, backoff=0.01)


@pytest.mark.parametrize("fault", FAULTS)
def test_skyserver_recovers_from_one_fault(proxy, fault):
    proxy.queue(fault)
    t0 = time.monotonic()
    table = _sky(proxy.url).query(SQL)
    assert table.num_rows == 5
    assert time.monotonic() - t0 < 2 * TIMEOUT + 3
    assert [f for f, _ in proxy.log][:1] == [fault] and len(proxy.log) <= 2


@pytest.mark.parametrize("fault", ["slow", "hang", "html200"])
def test_skyserver_gives_up_in_bounded_time(proxy, fault):
    proxy.queue(*[fault] * 3)
    t0 = time.monotonic()
    with pytest.raises(SkyServerError) as info:
        _sky(proxy.url).query(SQL)
    assert time.monotonic() - t0 < 3 * TIMEOUT + 4
    assert len(proxy.log) == 3
    assert "\n" not in str(info.value) and "after 3 attempts" in str(info.value)


@pytest.mark.parametrize("fault", FAULTS)
def test_sas_recovers_from_one_fault(standin, proxy, tmp_path, fault):
    proxy.queue(fault)
    client = _sas(proxy.url + "/sas/dr12/boss/photoObj", tmp_path)
    t0 = time.monotonic()
    data, fits_bytes = client.get(FRAME)
    assert time.monotonic() - t0 < 2 * TIMEOUT + 3
    assert fits_bytes.startswith(b"SIMPLE")
    assert (tmp_path / "cache" / FRAME).read_bytes() == data


@pytest.mark.parametrize("fault", ["slow", "truncated"])
def test_sas_gives_up_in_bounded_time_and_caches_nothing(proxy, tmp_path, fault):
    proxy.queue(*[fault] * 3)
    client = _sas(proxy.url + "/sas/dr12/boss/photoObj", tmp_path)
    t0 = time.monotonic()
    with pytest.raises(FetchError, match="after 3 tries") as info:
        client.get(FRAME)
    assert time.monotonic() - t0 < 3 * TIMEOUT + 4
    assert "\n" not in str(info.value)
    cache = tmp_path / "cache"
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]


def test_dead_sas_is_tried_once_per_frame_after_three(proxy, tmp_path):
    """A SAS that never answers costs one timeout per frame once three frames went unanswered."""
    proxy.queue(*["hang"] * 20)
    client = SasClient(proxy.url, tmp_path / "c", retries=1, timeout=0.3, backoff=0)
    for k in range(5):
        with pytest.raises(FetchError):
            client.get(FRAME.replace("0042", f"{k:04d}"))
    assert len(proxy.log) == 3 * 2 + 2 * 1


def test_pz_query_cli_one_line_after_bounded_retries(proxy, tmp_path):
    proxy.queue(*["hang"] * 3)
    out = tmp_path / "cat.parquet"
    args = ["--url", proxy.url, "--timeout", "0.5", "--retries", "2", "--backoff", "0", "-o"]
    t0 = time.monotonic()
    r = pz("pz-query", *args, str(out), "-q", timeout=60)
    assert r.returncode == 1, r.stderr
    assert one_clear_line(r.stderr), r.stderr
    assert time.monotonic() - t0 < 25
    assert not out.exists()


def test_query_recovers_from_mixed_faults_across_pages(proxy, tmp_path, catalog):
    """Faults between pages: every page is retried, no row is lost or doubled."""
    from photoz_tools.sdss.query import query

    proxy.queue("reset", "html200", "slow", "truncated")
    table = query(
        url=proxy.url, page_size=7, retries=4, backoff=0, timeout=2.0, spool=tmp_path / "spool"
    )
    ids = table.column("specObjID").to_pylist()
    assert sorted(ids) == sorted(catalog.column("specObjID").to_pylist())
    assert len(proxy.log) >= 4 + 6


def test_sql_answer_at_the_row_cap_is_refused_not_truncated(
    standin, catalog, tmp_path, monkeypatch
):
    """--sql goes as one request (any SQL has no key to page it by), so an answer that reaches
    SkyServer's row cap may have been cut there without a word: it is refused in one line that
    says how to split the query; an answer under the cap, or a SELECT TOP n within it, is whole.
    The stand-in's 40 rows with a cap of 30 play SkyServer's 500,000."""
    from photoz_tools.errors import PzError
    from photoz_tools.sdss import query as qmod

    monkeypatch.setattr(standin, "max_rows", 30)  # the server cuts silently at 30 rows
    monkeypatch.setattr(qmod, "SQL_ROW_CAP", 30)
    for sql in (
        "SELECT specObjID, z FROM SpecObj",
        "-- all of them\nSELECT TOP 31 specObjID FROM SpecObj ORDER BY specObjID",
    ):
        spool = tmp_path / f"spool{len(sql)}"
        with pytest.raises(PzError) as err:
            qmod.query(sql, url=standin.url, spool=spool)
        msg = str(err.value)
        assert "\n" not in msg and "30 rows" in msg and "missing" in msg and "WHERE" in msg
        assert not list(spool.glob("*.parquet"))  # nothing kept that a rerun would take as whole
    # split as the message says: two parts under the cap, together every row
    ids = sorted(catalog.column("specObjID").to_pylist())
    mid = ids[len(ids) // 2]
    got = []
    for where in (f"specObjID < {mid}", f"specObjID >= {mid}"):
        sql = f"SELECT specObjID, z FROM SpecObj WHERE {where}"
        got += (
            qmod.query(sql, url=standin.url, spool=tmp_path / "s").column("specObjID").to_pylist()
        )
    assert sorted(got) == ids
    # a query that asks for at most the cap itself gets what it asked for
    for top in ("TOP 30", "TOP (30)"):
        sql = f"/* first rows */ SELECT {top} specObjID FROM SpecObj ORDER BY specObjID"
        assert qmod.query(sql, url=standin.url, spool=tmp_path / "t").num_rows == 30
