"""The SkyServer/SAS stand-in: its SQL subset, SkyServer's formats and error answers, the SAS."""

from __future__ import annotations

import bz2
import io

import numpy as np
import pytest
import requests

from photoz_tools.sdss.standin import (
    Dataset,
    SQLError,
    StandIn,
    frame_index_from_files,
    parse_sql,
    run_select,
)

SMALL = {
    "specObjID": np.array([5, 3, 9, 1, 7]),
    "objID": np.array([50, 30, 90, 10, 70]),
    "ra": np.array([10.0, 20.0, 30.0, 355.0, 5.0]),
    "dec": np.array([0.0, 1.0, -1.0, 2.0, 0.5]),
    "z": np.array([0.1, 0.2, 0.5, 0.05, np.nan]),
    "class": np.array(["GALAXY", "STAR", "galaxy", "QSO", "GALAXY"], dtype=object),
    "dered_petro_r": np.array([17.0, 16.0, 17.9, 15.0, 17.5]),
    "ebv": np.array([0.1, 0.0, 0.2, 0.05, 0.01]),
}


def ask(sql: str, data=None):
    return run_select(Dataset(data or SMALL), parse_sql(sql))


def test_top_order_keyset():
    out = ask(
        "SELECT TOP 2 s.specObjID AS id FROM SpecObjAll AS s WHERE s.specObjID > 3 "
        "ORDER BY s.specObjID"
    )
    assert out["id"].tolist() == [5, 7]
    out = ask("select top 3 ra from SpecObjAll order by z desc")
    assert out["ra"].tolist()[:2] == [30.0, 20.0]


def test_expressions_and_views():
    out = ask(
        "SELECT p.petroMag_r - p.extinction_r AS r, p.extinction_r / 2.751 AS ebv, "
        "pz.z FROM SpecObjAll s JOIN PhotoObjAll p ON p.objID = s.bestObjID "
        "JOIN Photoz pz ON pz.objID = p.objID WHERE s.class = 'GALAXY' AND s.z <= 0.4"
    )
    np.testing.assert_allclose(out["r"], [17.0])  # dered + extinction - extinction
    np.testing.assert_allclose(out["ebv"], [0.1])
    assert np.isnan(out["z"]).all()  # no Beck photo-z in SMALL: null, as a missing value
    assert len(ask("SELECT ra FROM SpecObjAll WHERE class = 'galaxy'")["ra"]) == 3  # CI collation
    assert len(ask("SELECT ra FROM x WHERE ra BETWEEN 5 AND 20")["ra"]) == 3
    assert len(ask("SELECT ra FROM x WHERE (ra >= 350 OR ra <= 6) AND NOT dec > 1")["ra"]) == 1
    assert ask("SELECT ra FROM x WHERE class IN ('STAR', 'QSO') ORDER BY ra")["ra"].tolist() == [
        20.0,
        355.0,
    ]
    assert ask("SELECT COUNT(*) AS n, MAX(z) AS zm FROM x WHERE z IS NOT NULL")["n"][0] == 4
    assert ask("SELECT ('a-' + '-b') AS s FROM x")["s"][0] == "a--b"
    assert ask("SELECT ra FROM x WHERE class LIKE 'gal%'")["ra"].size == 3


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELECT ra FORM x", "Incorrect syntax"),
        ("SELECT nope FROM x", "Invalid column name 'nope'"),
        ("SELECT ra INTO mydb.t FROM x", "CasJobs"),
        ("SELECT dbo.fPhotoFlags('SATURATED') FROM x", "not a recognized"),
    ],
)
def test_sql_errors(sql, message):
    with pytest.raises(SQLError, match=message):
        ask(sql)


def test_csv_fits_and_error_answers_over_http():
    with StandIn(catalog=SMALL) as s:
        url = s.url + "/dr12/en/tools/search/x_results.aspx"
        r = requests.get(
            url,
            params={
                "cmd": "SELECT TOP 2 ra, class FROM x ORDER BY ra",
                "format": "csv",
                "searchtool": "SQL",
            },
            timeout=5,
        )
        assert r.status_code == 200
        assert r.text.splitlines() == ["#Table1", "ra,class", "5,GALAXY", "10,GALAXY"]
        r = requests.get(
            s.url + "/dr9/en/tools/search/x_sql.asp",
            params={"cmd": "SELECT ra FROM x", "format": "fits"},
            timeout=5,
        )
        from astropy.table import Table

        assert len(Table.read(io.BytesIO(r.content), format="fits")) == 5
        r = requests.get(url, params={"cmd": "SELECT ra FORM x", "format": "csv"}, timeout=5)
        assert r.status_code == 200 and r.text.startswith("Error: Incorrect syntax")
        assert s.sql_requests[0].startswith("SELECT TOP 2")


def test_sas_files_head_range_and_truncation(tmp_path):
    folder = tmp_path / "frames" / "301" / "2583" / "2"
    folder.mkdir(parents=True)
    body = bz2.compress(b"SIMPLE  =                    T" + bytes(3000))
    (folder / "frame-r-002583-2-0136.fits.bz2").write_bytes(body)
    with StandIn(sas_root=tmp_path, frames={"run": [1]}) as s:
        url = f"{s.sas_url}/frames/301/2583/2/frame-r-002583-2-0136.fits.bz2"
        r = requests.get(url, timeout=5)
        assert r.status_code == 200 and r.content == body
        h = requests.head(url, timeout=5)
        assert int(h.headers["Content-Length"]) == len(body) and not h.content
        r = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
        assert r.status_code == 206 and r.content == body[10:20]
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(body)}"
        assert requests.get(url + "x", timeout=5).status_code == 404
        assert requests.get(s.url + "/sas/../../etc/passwd", timeout=5).status_code == 404
        s.inject("truncate")
        with pytest.raises(requests.exceptions.RequestException):
            _ = requests.get(url, timeout=5).content
        assert requests.get(url, timeout=5).content == body  # one fault, then served again


def test_frames_from_real_headers(shared_data):
    folder = shared_data / "sdss-frames" / "2583-2-0136"
    idx = frame_index_from_files(folder)
    assert idx["run"].tolist() == [2583] and idx["camcol"].tolist() == [2]
    assert idx["field"].tolist() == [136] and idx["rerun"].tolist() == [301]
    # README: RA 323.26-323.42, Dec -0.85 to -0.62
    assert 323.2 < idx["ra_min"][0] < 323.3 and 323.38 < idx["ra_max"][0] < 323.46
    assert -0.9 < idx["dec_min"][0] < -0.8 and -0.66 < idx["dec_max"][0] < -0.58
    with StandIn(frames=folder) as s:
        from photoz_tools.sdss.query import query_frames

        t = query_frames(
            (323.3, 323.31, -0.7, -0.69), url=s.url, spool=None, keep_spool=False, retries=0
        )
        assert t.column("field").to_pylist() == [136]
        t = query_frames((10, 20, 10, 20), url=s.url, retries=0)
        assert t.num_rows == 0 and "ra_min" in t.column_names


def test_frames_across_ra_zero_are_found():
    frames = {
        "run": [1, 2, 3],
        "camcol": [1, 1, 1],
        "field": [10, 11, 12],
        "ra_min": [359.9, 10.0, 359.0],
        "ra_max": [0.1, 10.2, 359.2],
        "dec_min": [0.0, 0.0, 0.0],
        "dec_max": [0.2, 0.2, 0.2],
    }
    from photoz_tools.sdss.query import query_frames

    with StandIn(frames=frames) as s:
        for box in ((359.95, 359.99, 0.1, 0.15), (0.01, 0.05, 0.1, 0.15), (359.5, 0.5, 0, 1)):
            t = query_frames(box, url=s.url, retries=0, margin_arcsec=0)
            assert 1 in t.column("run").to_pylist(), box
        t = query_frames((10.05, 10.1, 0.1, 0.15), url=s.url, retries=0)
        assert t.column("run").to_pylist() == [2]
        t = query_frames((0.05, 359.1, 0.1, 0.15), url=s.url, retries=0, margin_arcsec=0)
        assert sorted(t.column("run").to_pylist()) == [1, 2, 3]
