"""query(): keyset paging over several pages, limits, cuts, sky boxes, resuming after a failure."""

from __future__ import annotations

import numpy as np
import pytest

from photoz_tools.errors import PzError
from photoz_tools.sdss.query import MGS_COLUMNS, plan_query, query

from .conftest import expected_mgs

FAST = {"retries": 1, "backoff": 0.001, "timeout": 5.0}


def test_pages_cover_the_selection_exactly(standin, catalog, tmp_path):
    want = expected_mgs(catalog)
    assert len(want) > 3000
    t = query(url=standin.url, page_size=500, spool=tmp_path / "s", **FAST)
    assert t.column_names == list(MGS_COLUMNS)
    assert t.column("specObjID").to_pylist() == want.tolist()  # ordered, no gap, no duplicate
    sqls = standin.sql_requests
    assert len(sqls) == len(want) // 500 + 2  # the last, empty page confirms the end
    assert all("TOP 500" in s for s in sqls) and "specObjID >" not in sqls[0]
    assert f"s.specObjID > {want[499]}" in sqls[1]
    assert t.schema.field("ra").metadata[b"unit"] == b"deg"
    assert t.schema.field("dered_petro_r").metadata[b"unit"] == b"mag"
    assert t.schema.metadata[b"pz_sdss_release"] == b"12"
    r = t.column("dered_petro_r").to_numpy()
    assert r.max() <= 17.8 and t.column("z").to_numpy().max() <= 0.4
    ebv = t.column("ebv").to_numpy()
    np.testing.assert_allclose(ebv, t.column("extinction_r").to_numpy() / 2.751)
    assert not (tmp_path / "s").exists()  # the resume folder goes once the result is complete


def test_limit_cuts_and_box(standin, catalog):
    t = query(url=standin.url, page_size=500, limit=1234, **FAST)
    assert t.column("specObjID").to_pylist() == expected_mgs(catalog)[:1234].tolist()
    assert "TOP 234" in standin.sql_requests[-1] and len(standin.sql_requests) == 3
    t = query(url=standin.url, r_max=17.0, z_max=0.2, box=(100, 200, 0, 30), **FAST)
    want = expected_mgs(catalog, r_max=17.0, z_max=0.2, box=(100, 200, 0, 30))
    assert 0 < len(want) and t.column("specObjID").to_pylist() == want.tolist()
    t = query(url=standin.url, box=(100, 200, 0, 30), where="p.expAB_r > 0.5", **FAST)
    assert t.column("ba").to_numpy().min() > 0.5


def test_resume_fetches_only_the_missing_pages(standin, catalog, tmp_path):
    want = expected_mgs(catalog)
    spool = tmp_path / "resume"
    standin.inject("error200", 2, after=3)  # pages 1-3 answer, page 4 fails twice
    with pytest.raises(PzError, match="after 2 attempts"):
        query(url=standin.url, page_size=500, spool=spool, **FAST)
    assert len(list(spool.glob("*.parquet"))) == 3
    first_run = len(standin.sql_requests)
    assert first_run == 5
    job = plan_query(url=standin.url, page_size=500, spool=spool, **FAST)
    t = job.run()
    again = standin.sql_requests[first_run:]
    assert len(again) == len(want) // 500 + 2 - 3
    assert f"s.specObjID > {want[1499]}" in again[0]
    assert t.column("specObjID").to_pylist() == want.tolist()
    assert job.requests == len(again)
    # a third run finds everything spooled and asks nothing
    job.run()
    assert len(standin.sql_requests) == first_run + len(again)
    job.cleanup()
    assert not spool.exists()


def test_a_page_cut_short_loses_nothing(standin, catalog):
    """SkyServer may cap rows silently: a short page is not taken for the end."""
    want = expected_mgs(catalog)
    standin.inject("short", after=1)  # page 2 comes back valid but with half its rows
    t = query(url=standin.url, page_size=1000, **FAST)
    assert t.column("specObjID").to_pylist() == want.tolist()
    assert [r.fault for r in standin.requests][:2] == [None, "short"]


def test_other_query_in_spool_starts_afresh(standin, tmp_path):
    spool = tmp_path / "s"
    query(url=standin.url, limit=10, spool=spool, keep_spool=True, **FAST)
    logs: list[str] = []
    t = query(url=standin.url, limit=20, spool=spool, log=logs.append, **FAST)
    assert t.num_rows == 20 and any("another query" in m for m in logs)


def test_sql_runs_as_given(standin):
    t = query(
        "SELECT TOP 3 ra, dec -- where\nFROM PhotoObjAll ORDER BY ra DESC", url=standin.url, **FAST
    )
    assert t.column_names == ["ra", "dec"] and t.num_rows == 3
    assert t.schema.field("ra").metadata[b"unit"] == b"deg"


def _need_network() -> None:
    import socket

    try:
        socket.create_connection(("skyserver.sdss.org", 443), timeout=10).close()
    except OSError as exc:
        pytest.skip(f"SkyServer unreachable from here ({exc})")


@pytest.mark.remote
def test_live_skyserver():
    """One small query against the real SkyServer (pytest -m remote, needs the internet)."""
    _need_network()
    t = query(limit=5, page_size=5, box=(150, 151, 2, 3), retries=2, timeout=120)
    assert 0 < t.num_rows <= 5
    assert set(MGS_COLUMNS) == set(t.column_names)
    assert (t.column("dered_petro_r").to_numpy() <= 17.8).all()


@pytest.mark.remote
def test_live_frames_stripe82_epochs():
    """Stripe 82 fields come back for every epoch, not only the primary run."""
    _need_network()
    from photoz_tools.sdss.query import query_frames

    t = query_frames((323.33, 323.34, -0.75, -0.74), retries=2, timeout=120)
    assert 2583 in t.column("run").to_pylist()
    assert len(set(t.column("run").to_pylist())) > 2


def test_one_run_at_a_time_per_spool(standin, tmp_path):
    from photoz_tools.sdss.query import _locked

    spool = tmp_path / "s"
    job = plan_query(url=standin.url, limit=10, spool=spool, **FAST)
    with _locked(tmp_path / "s.lock"):
        with pytest.raises(PzError, match="another pz-query is fetching"):
            job.fetch()
    assert job.fetch() == 10 and len(list(job.iter_tables())) == 1
    job.cleanup()
    assert not spool.exists() and not (tmp_path / "s.lock").exists()


def test_spool_never_removes_a_foreign_folder(standin, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "manifest.json").write_text('{"members": 6}')
    with pytest.raises(PzError, match="holds other files"):
        query(url=standin.url, limit=5, spool=folder, fresh=True, **FAST)
    assert (folder / "manifest.json").read_text() == '{"members": 6}'
    empty = tmp_path / "empty"
    empty.mkdir()
    assert query(url=standin.url, limit=5, spool=empty, **FAST).num_rows == 5


@pytest.mark.parametrize(
    ("sql", "top"),
    [
        ("SELECT TOP 10 ra FROM x", 10),
        ("  select distinct top (500000) ra FROM x", 500_000),
        ("-- a comment\n/* and\n another */ SELECT ALL TOP 7 ra FROM x", 7),
        ("SELECT TOP 10 PERCENT ra FROM x", None),
        ("SELECT ra FROM x", None),
        ("SELECT ra FROM (SELECT TOP 5 ra FROM x) AS q", None),
    ],
)
def test_asked_top(sql, top):
    from photoz_tools.sdss.query import _asked_top

    assert _asked_top(sql) == top


def test_an_sql_answer_at_skyservers_cap_is_refused():
    from photoz_tools.errors import PzError
    from photoz_tools.sdss.query import SQL_ROW_CAP, _check_not_capped

    assert SQL_ROW_CAP == 500_000
    _check_not_capped("SELECT ra FROM x", 499_999)
    _check_not_capped("SELECT TOP 500000 ra FROM x", 500_000)  # asked for exactly that
    for sql in ("SELECT ra FROM x", "SELECT TOP 600000 ra FROM x"):
        with pytest.raises(PzError, match=r"500,000 rows.*may be missing.*WHERE"):
            _check_not_capped(sql, 500_000)
