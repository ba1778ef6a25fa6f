"""The SkyServer/SAS stand-in: its SQL subset, SkyServer's formats and error answers, the SAS,
and every cut of the MGS query applied to rows that fail it."""

from __future__ import annotations

import bz2
import io

import numpy as np
import pytest
import requests

from photoz_tools.sdss import queries as Q
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


def _reset(sock) -> None:
    """Close with an RST (SO_LINGER 0), as a killed client's kernel does."""
    import socket
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connected, then gone
        b"GET /dr12/en/tools/search/x_sql.aspx?cmd=SELECT%20ra%20FROM%20x HTTP/1.1\r\nHost: a",
        b"POST /dr12/en/tools/search/x_sql.aspx HTTP/1.1\r\nHost: a\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 500\r\n\r\ncmd=SEL",
        b"GET /dr12/en/tools/search/x_sql.aspx?cmd=SELECT%20ra%20FROM%20x&format=csv HTTP/1.1"
        b"\r\nHost: a\r\n\r\n",  # a whole request, gone before its answer is read
    ],
    ids=["nothing", "half-a-request-line", "half-a-post-body", "before-the-answer"],
)
def test_a_client_dropping_its_connection_prints_nothing(sent, capfd):
    import socket
    import time

    with StandIn(catalog=SMALL) as s:
        for _ in range(3):
            c = socket.create_connection((s.host, s.port), timeout=5)
            if sent:
                c.sendall(sent)
                time.sleep(0.05)  # the server reads it (and, for the last, may answer)
            _reset(c)
        time.sleep(0.3)
        r = requests.get(  # still serving
            s.url + "/dr12/en/tools/search/x_sql.aspx",
            params={"cmd": "SELECT TOP 1 ra FROM x ORDER BY ra", "format": "csv"},
            timeout=5,
        )
        assert r.status_code == 200 and r.text.splitlines()[-1] == "5"
    err = capfd.readouterr().err
    assert err == "", err


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


# --------------------------------------------------------------------------- the MGS cuts

MGS_CUTS = Q.MgsCuts(r_min=14.0, where=("p.expAB_r > 0.5",))
MGS_BOX = Q.Box(10.0, 20.0, -5.0, 5.0)
MGS_BASE = {  # passes every cut of MGS_CUTS and MGS_BOX, each column given explicitly
    "z": 0.1,
    "zWarning": 0,
    "class": "GALAXY",
    "survey": "sdss",
    "targetType": "SCIENCE",
    "primtarget": 64,
    "clean": 1,
    "insideMask": 0,
    "petroMag_r": 17.0,
    "extinction_r": 0.1,
    "ra": 15.0,
    "dec": 0.0,
    "expAB_r": 0.8,
}
# each WHERE term of the query, and a row that fails it alone (the base row with one change)
MGS_FAILS = {
    "s.z > 0.0": {"z": 0.0},
    "s.z <= 0.4": {"z": 0.41},
    "s.zWarning = 0": {"zWarning": 4},
    "s.targetType = 'SCIENCE'": {"targetType": "SKY"},
    "s.survey = 'sdss'": {"survey": "boss"},
    "s.class = 'GALAXY'": {"class": "STAR"},
    "g.primtarget >= 64": {"primtarget": 32},
    "p.clean = 1": {"clean": 0},
    "p.insideMask = 0": {"insideMask": 1},
    "p.petroMag_r - p.extinction_r <= 17.8": {"petroMag_r": 18.0},  # dereddened 17.9
    "p.petroMag_r - p.extinction_r >= 14.0": {"petroMag_r": 13.9},  # dereddened 13.8
    "p.ra BETWEEN 10.0 AND 20.0": {"ra": 25.0},
    "p.dec BETWEEN -5.0 AND 5.0": {"dec": 6.0},
    "(p.expAB_r > 0.5)": {"expAB_r": 0.3},
}
MGS_PASSES = [  # edges and spellings that the cuts keep
    {},
    {"z": 0.4},  # z <= 0.4: closed
    {"petroMag_r": 17.8, "extinction_r": 0.0},  # r <= 17.8: closed
    {"petroMag_r": 17.9, "extinction_r": 0.2},  # the cut is on the dereddened magnitude
    {"primtarget": 65},
    {"class": "galaxy  "},  # SkyServer's collation: case and trailing blanks ignored
]


def _mgs_rows():
    rows = [dict(MGS_BASE, **change) for change in MGS_PASSES]
    n_pass = len(rows)
    rows += [dict(MGS_BASE, **change) for change in MGS_FAILS.values()]
    cols = {
        k: np.array(
            [r[k] for r in rows], dtype=object if k in ("class", "survey", "targetType") else None
        )
        for k in MGS_BASE
    }
    cols["specObjID"] = np.arange(1, len(rows) + 1, dtype=np.int64)
    cols["objID"] = cols["specObjID"] + 1000
    return cols, n_pass


def test_mgs_query_applies_every_cut_to_rows_that_fail_it():
    assert set(Q.mgs_conditions(MGS_CUTS, MGS_BOX)) == set(MGS_FAILS)  # every cut has a row
    cols, n_pass = _mgs_rows()
    data = Dataset(cols)
    out = run_select(data, parse_sql(Q.mgs_sql(MGS_CUTS, MGS_BOX)))
    assert out["specObjID"].tolist() == list(range(1, n_pass + 1))
    for k, cond in enumerate(MGS_FAILS):  # and each cut alone removes its row, nothing else
        sql = (
            Q.mgs_sql(MGS_CUTS, MGS_BOX)
            .replace(f"\n  AND {cond}", "")
            .replace(f"WHERE {cond}\n  AND ", "WHERE ")
        )
        assert cond not in sql.split("WHERE", 1)[1], cond
        ids = run_select(data, parse_sql(sql))["specObjID"].tolist()
        assert ids == [*range(1, n_pass + 1), n_pass + 1 + k], cond


def test_mgs_cuts_over_http_with_the_real_client():
    from photoz_tools.sdss.query import query

    cols, n_pass = _mgs_rows()
    with StandIn(catalog=cols) as s:
        t = query(
            url=s.url,
            r_min=14.0,
            where="p.expAB_r > 0.5",
            box=(10.0, 20.0, -5.0, 5.0),
            retries=0,
            timeout=5.0,
        )
    assert sorted(t.column("specObjID").to_pylist()) == list(range(1, n_pass + 1))
