"""The real astroquery client against the stand-in: every fault retried, then one clear error."""

from __future__ import annotations

import pytest

from photoz_tools.sdss.skyserver import SkyServer, SkyServerError

SQL = "SELECT TOP 5 s.specObjID, s.ra FROM SpecObjAll AS s ORDER BY s.specObjID"


@pytest.mark.parametrize("kind", ["http500", "html200", "error200", "drop", "hang", "truncate"])
def test_each_fault_is_retried(standin, fast_client, kind):
    standin.inject(kind, 2, target="sql", hang=2.5)  # past the 2 s timeout
    t = fast_client.query(SQL)
    assert t.num_rows == 5 and t.column_names == ["specObjID", "ra"]
    assert [r.fault for r in standin.requests] == [kind, kind, None]


def test_final_error_is_one_clear_line(standin, fast_client):
    standin.inject("http500", 10, status=503)
    with pytest.raises(SkyServerError) as exc:
        fast_client.query(SQL)
    msg = str(exc.value)
    assert "\n" not in msg and "after 4 attempts" in msg and "HTTP 503" in msg
    assert standin.url in msg and "--retries" in msg
    assert len(standin.requests) == 4


def test_html_page_with_status_200_is_an_error(standin):
    client = SkyServer(url=standin.url, retries=0, timeout=2)
    standin.inject("html200", message="Query timed out, please try again")
    with pytest.raises(SkyServerError, match="HTML page instead of a table .*Query timed out"):
        client.query(SQL)
    # astroquery alone takes that page for a table (the gap the client closes)
    from astroquery.sdss import SDSS, conf

    standin.inject("html200")
    with conf.set_temp("skyserver_baseurl", standin.url):
        t = SDSS.query_sql(SQL, data_release=12, cache=False)
    assert t is None or len(t.colnames) == 1


def test_skyserver_text_error_is_reported(standin):
    client = SkyServer(url=standin.url, retries=1, backoff=0.001, timeout=2)
    with pytest.raises(SkyServerError, match="Error: Invalid column name 'nope'"):
        client.query("SELECT nope FROM SpecObjAll")
    assert len(standin.requests) == 2


def test_http_404_is_not_retried(standin):
    client = SkyServer(url=standin.url + "/wrong", retries=3, backoff=0.001, timeout=2)
    with pytest.raises(SkyServerError, match="HTTP 404.*--url"):
        client.query(SQL)
    assert len(standin.requests) == 1


def test_release_paths_and_comments(standin):
    for release, path in ((9, "x_sql.asp"), (10, "x_sql.aspx"), (16, "x_results.aspx")):
        client = SkyServer(url=standin.url, release=release, retries=0, timeout=5)
        t = client.query(
            "SELECT TOP 1 ra -- position\nFROM SpecObjAll /* all */ "
            "WHERE class = 'GALAXY' -- comment with 'quote\n"
        )
        assert t.num_rows == 1
        assert standin.requests[-1].path.startswith(f"/dr{release}/en/tools/search/{path}")
    client = SkyServer(url=standin.url, retries=0, timeout=5)
    t = client.query("SELECT TOP 1 'a -- b' AS s FROM SpecObjAll -- trailing")
    assert t.column("s").to_pylist() == ["a -- b"]
    assert "--" not in standin.sql_requests[-1]
    t = client.query("SELECT TOP 2 'a,\"b' AS s, ra FROM SpecObjAll")  # quoted CSV fields
    assert t.column("s").to_pylist() == ['a,"b'] * 2


def test_empty_result_keeps_columns(standin, fast_client):
    t = fast_client.query("SELECT ra, dec FROM SpecObjAll WHERE z > 99")
    assert t.num_rows == 0 and t.column_names == ["ra", "dec"]


def test_ids_are_exact_int64(standin, fast_client, catalog):
    t = fast_client.query("SELECT TOP 50 specObjID, objID FROM SpecObjAll ORDER BY specObjID")
    ids = sorted(catalog.column("specObjID").to_pylist())[:50]
    assert t.column("specObjID").to_pylist() == ids
    assert str(t.schema.field("objID").type) == "int64"


def test_check_body_decides_by_content():
    from photoz_tools.sdss.skyserver import _Retryable, check_body

    check_body("#Table1\nra,dec\n1,2\n", "text/html; charset=utf-8")  # CSV labelled as HTML
    check_body("ra\n1\n", "text/plain")
    for body, ctype in (
        ("<html><body>Server busy</body></html>", "text/plain"),
        ("Server busy", "text/html"),
        ("Error: Invalid object name 'x'.", ""),
        ("#Table1\nerror\nsomething\n", ""),
        ("", ""),
    ):
        with pytest.raises(_Retryable):
            check_body(body, ctype)
