"""pz-query options end to end (the real command, in-process, over HTTP against the local
SkyServer stand-in): --r-min, --z-min, --primtarget-min, --box, --release, --show-sql, --fresh,
--keep-spool; and `pz-query frames` --ra-col/--dec-col, --spool, --fresh, --keep-spool.

Expected rows are computed with numpy from the catalogue the stand-in serves."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from .conftest import expected_ids

FAST = ["--retries", "0", "--backoff", "0.001", "--timeout", "10", "-q"]


def _ids(path) -> list[int]:
    return sorted(pq.read_table(path, columns=["specObjID"]).column(0).to_pylist())


@pytest.mark.parametrize(
    "args, cuts",
    [
        (["--r-min", "16.5"], {"r_min": 16.5}),
        (["--z-min", "0.15"], {"z_min": 0.15}),
        (["--primtarget-min", "100"], {"primtarget_min": 100}),
        (["--box", "12,15.5,-2,3"], {"box": (12, 15.5, -2, 3)}),
        (["--ra-min", "18", "--dec-max", "0"], {"box": (18, 360, -90, 0)}),
    ],
    ids=["r-min", "z-min", "primtarget-min", "box", "ra-min+dec-max"],
)
def test_cut_options_select_exactly_the_rows(pz, standin, sky_catalog, tmp_path, args, cuts):
    out = tmp_path / "mgs.parquet"
    r = pz("pz-query", "--url", standin.url, "--page-size", "60", *args, "-o", str(out), *FAST)
    assert r.returncode == 0, r.stderr.decode()
    want = expected_ids(sky_catalog, **cuts)
    default = expected_ids(sky_catalog)
    assert 10 < len(want) < len(default)  # the option moved the selection
    assert _ids(out) == want


def test_box_across_ra_zero(pz, sky_catalog, tmp_path):
    """--box RA_MIN > RA_MAX wraps through RA = 0 (the catalogue moved to RA 355..5)."""
    import numpy as np

    from photoz_tools.sdss.standin import StandIn

    ra = (np.asarray(sky_catalog.column("ra")) - 15.0) % 360.0
    cat = sky_catalog.set_column(sky_catalog.column_names.index("ra"), "ra", pa.array(ra))
    out = tmp_path / "wrap.parquet"
    with StandIn(catalog=cat) as s:
        r = pz("pz-query", "--url", s.url, "--box", "358,2.5,-3,4", "-o", str(out), *FAST)
    assert r.returncode == 0, r.stderr.decode()
    want_a = expected_ids(cat, box=(358, 360, -3, 4))
    want_b = expected_ids(cat, box=(0, 2.5, -3, 4))
    assert want_a and want_b  # rows on both sides of RA = 0
    assert _ids(out) == sorted(want_a + want_b)


def test_release_picks_the_data_release(pz, standin, sky_catalog, tmp_path):
    for release, page in ((16, "x_results.aspx"), (9, "x_sql.asp")):
        out = tmp_path / f"dr{release}.fits"
        n0 = len(standin.requests)
        r = pz("pz-query", "--url", standin.url, "--release", str(release), "-o", str(out), *FAST)
        assert r.returncode == 0, r.stderr.decode()
        paths = [q.path for q in standin.requests[n0:]]
        assert paths and all(p.startswith(f"/dr{release}/en/tools/search/{page}") for p in paths)
        from astropy.io import fits

        assert str(fits.getheader(out, 1)["PZ_SDSS_RELEASE"]) == str(release)


def test_show_sql_prints_the_query_it_would_run_and_runs_nothing(
    pz, standin, sky_catalog, tmp_path
):
    out = tmp_path / "never.parquet"
    args = ["--url", standin.url, "--r-min", "16.5", "--z-min", "0.15", "--primtarget-min", "100"]
    r = pz("pz-query", *args, "--show-sql", "-o", str(out), *FAST)
    assert r.returncode == 0, r.stderr.decode()
    assert standin.requests == [] and not out.exists()
    sql = r.stdout.decode()
    assert sql.lstrip().upper().startswith("SELECT")
    for value in ("16.5", "0.15", "100", "17.8", "0.4"):
        assert value in sql, value
    # the printed SQL, run as it is, gives the selection (one page holds it all)
    (tmp_path / "q.sql").write_text(sql)
    r = pz(
        "pz-query", "--url", standin.url, "--sql", str(tmp_path / "q.sql"), "-o", str(out), *FAST
    )
    assert r.returncode == 0, r.stderr.decode()
    assert _ids(out) == expected_ids(sky_catalog, r_min=16.5, z_min=0.15, primtarget_min=100)


def _interrupted(pz, standin, args, spool):
    """A run that fails after its first two pages, leaving them in `spool`."""
    standin.inject("http500", 1, status=503, after=2)
    r = pz("pz-query", *args, "--spool", str(spool), *FAST)
    assert r.returncode == 1 and any(spool.glob("*.parquet")), r.stderr.decode()


def test_fresh_ignores_pages_left_by_an_interrupted_run(pz, standin, sky_catalog, tmp_path):
    out = tmp_path / "mgs.parquet"
    args = ["--url", standin.url, "--page-size", "50", "-o", str(out)]
    n0 = len(standin.sql_requests)
    r = pz("pz-query", *args, "--spool", str(tmp_path / "clean"), *FAST)
    assert r.returncode == 0, r.stderr.decode()
    full = len(standin.sql_requests) - n0
    assert full >= 4

    _interrupted(pz, standin, args, tmp_path / "a")
    n0 = len(standin.sql_requests)
    r = pz("pz-query", *args, "--spool", str(tmp_path / "a"), *FAST)  # resumes
    assert r.returncode == 0 and len(standin.sql_requests) - n0 == full - 2

    _interrupted(pz, standin, args, tmp_path / "b")
    n0 = len(standin.sql_requests)
    r = pz("pz-query", *args, "--spool", str(tmp_path / "b"), "--fresh", *FAST)
    assert r.returncode == 0, r.stderr.decode()
    assert len(standin.sql_requests) - n0 == full  # every page fetched again
    assert _ids(out) == expected_ids(sky_catalog)


def test_keep_spool_keeps_the_pages(pz, standin, sky_catalog, tmp_path):
    out = tmp_path / "mgs.parquet"
    spool = tmp_path / "pages"
    args = ["--url", standin.url, "--page-size", "50", "--spool", str(spool), "-o", str(out)]
    r = pz("pz-query", *args, "--keep-spool", *FAST)
    assert r.returncode == 0, r.stderr.decode()
    pages = sorted(spool.glob("*.parquet"))
    assert len(pages) >= 4
    kept = sorted(x for p in pages for x in pq.read_table(p).column("specObjID").to_pylist())
    assert kept == expected_ids(sky_catalog) == _ids(out)
    # a rerun finds the whole result in the spool: nothing is fetched again
    n0 = len(standin.sql_requests)
    r = pz("pz-query", *args, "--keep-spool", *FAST)
    assert r.returncode == 0 and len(standin.sql_requests) == n0
    # --fresh fetches every page again, even over a complete spool
    r = pz("pz-query", *args, "--fresh", *FAST)
    assert r.returncode == 0 and len(standin.sql_requests) - n0 == len(pages)
    assert _ids(out) == expected_ids(sky_catalog)
    assert not spool.exists()  # and without --keep-spool, the folder goes
    # without --spool: a folder named by the query's hash under $PZ_QUERY_SPOOL
    default = tmp_path / "spool"  # PZ_QUERY_SPOOL here (conftest)
    r = pz(
        "pz-query", *[a for a in args if a not in ("--spool", str(spool))], "--keep-spool", *FAST
    )
    assert r.returncode == 0, r.stderr.decode()
    (folder,) = [p for p in default.iterdir() if any(p.glob("*.parquet"))]
    assert len(list(folder.glob("*.parquet"))) == len(pages)


# --------------------------------------------------------------------------- pz-query frames

FIELDS = [
    (run, cam, f, 10 + 0.15 * f, 10 + 0.15 * f + 0.16, -1.0 + 0.45 * (cam - 1), -0.5 + 0.45 * cam)
    for run in (106, 206)
    for cam in (1, 2, 3)
    for f in range(60)
]


def _frames_table():
    cols = list(zip(*FIELDS, strict=True))
    names = ["run", "camcol", "field", "ra_min", "ra_max", "dec_min", "dec_max"]
    t = {n: list(c) for n, c in zip(names, cols, strict=True)}
    t["rerun"] = [301] * len(FIELDS)
    return t


def _covering(ra, dec):
    return {
        (r, c, f)
        for r, c, f, a0, a1, d0, d1 in FIELDS
        for a, d in zip(ra, dec, strict=True)
        if a0 <= a <= a1 and d0 <= d <= d1
    }


def _fields(path):
    t = pq.read_table(path)
    cols = [t.column(c).to_pylist() for c in ("run", "camcol", "field")]
    return set(zip(*cols, strict=True))


@pytest.fixture
def frames_standin():
    from photoz_tools.sdss.standin import StandIn

    with StandIn(frames=_frames_table()) as s:
        yield s


def test_frames_ra_col_dec_col_name_the_positions(pz, frames_standin, tmp_path):
    ra, dec = [11.05, 11.6, 12.3], [-0.7, -0.2, 0.6]
    cat = tmp_path / "cat.parquet"
    # decoys under the default names, far from the positions
    pq.write_table(
        pa.table({"RAJ2000": ra, "DEJ2000": dec, "ra": [17.0] * 3, "dec": [0.0] * 3}), cat
    )
    out = tmp_path / "frames.parquet"
    args = ["--url", frames_standin.url, "--margin", "0", "--cell", "0.1", "-o", str(out)]
    r = pz(
        "pz-query", "frames", str(cat), "--ra-col", "RAJ2000", "--dec-col", "DEJ2000", *args, *FAST
    )
    assert r.returncode == 0, r.stderr.decode()
    got = _fields(out)
    assert _covering(ra, dec) <= got
    assert not _covering([17.0], [0.0]) & got  # nothing for the decoy position
    r = pz("pz-query", "frames", str(cat), "--ra-col", "RA_X", *args, *FAST)
    assert r.returncode == 1 and b"RA_X" in r.stderr and b"--ra-col" in r.stderr


def test_frames_spool_fresh_and_keep_spool(pz, frames_standin, tmp_path):
    out = tmp_path / "frames.parquet"
    box = ["--box", "10,19,-1,0.9", "--margin", "0", "--page-size", "40"]
    args = ["--url", frames_standin.url, *box, "-o", str(out)]
    want = {(r, c, f) for r, c, f, a0, a1, d0, d1 in FIELDS if a1 >= 10 and a0 <= 19 and d1 >= -1}
    spool = tmp_path / "frame-pages"
    n0 = len(frames_standin.sql_requests)
    r = pz("pz-query", "frames", *args, "--spool", str(spool), "--keep-spool", *FAST)
    assert r.returncode == 0, r.stderr.decode()
    full = len(frames_standin.sql_requests) - n0
    assert full >= 4 and _fields(out) == want
    assert any(spool.glob("*.parquet"))  # --spool names the folder; --keep-spool keeps it
    # an interrupted run, then --fresh: every page again
    other = tmp_path / "other-pages"
    frames_standin.inject("http500", 1, status=503, after=2)
    r = pz("pz-query", "frames", *args, "--spool", str(other), *FAST)
    assert r.returncode == 1 and any(other.glob("*.parquet"))
    n0 = len(frames_standin.sql_requests)
    r = pz("pz-query", "frames", *args, "--spool", str(other), "--fresh", *FAST)
    assert r.returncode == 0, r.stderr.decode()
    assert len(frames_standin.sql_requests) - n0 == full and _fields(out) == want
    assert not other.exists()
