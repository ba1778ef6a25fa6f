"""The SQL pz-query builds: comment stripping, sky boxes, the MGS and frames queries."""

from __future__ import annotations

import numpy as np
import pytest

from photoz_tools.sdss import queries as Q
from photoz_tools.sdss.query import boxes_from_cells, cover_cells


def astroquery_sanitize(sql: str) -> str:
    """What astroquery 0.4.11 does to the SQL before sending it (its private __sanitize_query)."""
    return "".join(" " + line.split("--")[0] for line in sql.split("\n"))


def test_comments_removed_outside_literals_only():
    sql = (
        "SELECT ra, -- the position\n  'a -- b' AS s, /* block\n comment */ dec\n"
        "FROM SpecObjAll WHERE class = 'GALAXY' -- galaxies\n"
    )
    out = Q.strip_sql_comments(sql)
    assert "position" not in out and "block" not in out and "galaxies" not in out
    assert "\n" not in out
    assert "class = 'GALAXY'" in out
    # the literal survives as a concatenation astroquery's line-cutter cannot damage
    assert "('a -' + '- b')" in out
    assert astroquery_sanitize(out).strip() == out


def test_comment_stripping_keeps_quotes_and_minus():
    assert Q.strip_sql_comments("SELECT 'it''s' AS a, 3-2 AS b") == "SELECT 'it''s' AS a, 3-2 AS b"
    assert Q.strip_sql_comments("SELECT a--b\n FROM t") == "SELECT a FROM t"
    assert Q.strip_sql_comments("SELECT 'x\ny' AS s") == "SELECT ('x' + CHAR(10) + 'y') AS s"
    with pytest.raises(ValueError, match="unterminated quote"):
        Q.strip_sql_comments("SELECT 'abc FROM t")


def test_astroquery_gap_is_real():
    # the reason for stripping ourselves: astroquery cuts a literal holding '--'
    assert "'a " in astroquery_sanitize("SELECT 'a -- b' AS s FROM t")
    assert "FROM" not in astroquery_sanitize("SELECT 'a -- b' AS s FROM t")


def test_box_parse_and_wrap():
    b = Q.Box.parse("350, 10, -5, 5")
    assert b.wraps
    assert Q.box_conditions(b, "ra", "dec")[0] == "(ra >= 350.0 OR ra <= 10.0)"
    with pytest.raises(ValueError, match="four numbers"):
        Q.Box.parse("1,2,3")
    with pytest.raises(ValueError, match="dec_min < dec_max"):
        Q.Box(0, 10, 5, -5)
    p = Q.Box(0, 10, 0, 1).padded(1 / 60)
    assert p.wraps and p.ra_min > 359.9 and p.ra_max > 10.0


def test_mgs_sql_has_the_papers_cuts():
    sql = Q.mgs_sql(top=1000, after=123)
    for term in (
        "FROM SpecObjAll AS s",
        "JOIN PhotoObjAll AS p ON p.objID = s.bestObjID",
        "JOIN Photoz AS pz",
        "JOIN galSpecInfo AS g",
        "s.z > 0.0",
        "s.z <= 0.4",
        "s.zWarning = 0",
        "s.targetType = 'SCIENCE'",
        "s.survey = 'sdss'",
        "s.class = 'GALAXY'",
        "g.primtarget >= 64",
        "p.clean = 1",
        "p.insideMask = 0",
        "p.petroMag_r - p.extinction_r <= 17.8",
        "s.specObjID > 123",
        "ORDER BY s.specObjID",
        "SELECT TOP 1000",
        "p.extinction_r / 2.751 AS ebv",
        "pz.z AS zphot_b16",
        "pz.zErr AS zphot_b16_err",
    ):
        assert term in sql, term
    cuts = Q.MgsCuts(r_max=17.0, z_max=0.3, r_min=14.0, where=("p.petroR50_r > 1",))
    sql = Q.mgs_sql(cuts, Q.Box(10, 20, -1, 1))
    assert "<= 17.0" in sql and "s.z <= 0.3" in sql and ">= 14.0" in sql
    assert "(p.petroR50_r > 1)" in sql and "p.ra BETWEEN 10.0 AND 20.0" in sql
    assert "TOP" not in sql


def test_frames_sql_all_epochs():
    sql = Q.frames_sql(Q.Box(323.2, 323.5, -1, 0), top=10, after=5)
    assert "FROM Field AS f" in sql and "f.raMax >= 323.2 AND f.raMin <= 323.5" in sql
    assert "f.decMin <= 0.0" in sql and "f.raMin > f.raMax AND" in sql  # fields across RA = 0
    assert "f.fieldID > 5" in sql and "ORDER BY f.fieldID" in sql
    assert "Primary" not in sql and "mode" not in sql  # every epoch, not only primary fields


def test_cells_to_boxes_merge_and_wrap():
    ra = np.array([0.5, 359.5, 10.2, 11.7, 13.5, np.nan])
    dec = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.0])
    boxes = boxes_from_cells(cover_cells(ra, dec, 1.0), 1.0, 0.0)
    assert sorted((b.ra_min, b.ra_max) for b in boxes) == [(10.0, 12.0), (13.0, 14.0), (359.0, 1.0)]
