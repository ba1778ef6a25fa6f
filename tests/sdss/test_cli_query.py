"""pz-query as a user runs it (a subprocess) against the stand-in in this process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photoz_tools.sdss.standin import StandIn

from .conftest import expected_mgs

FAST = ["--retries", "1", "--backoff", "0.001", "--timeout", "5"]


@pytest.mark.filterwarnings("ignore:'nanomaggy/arcsec2' did not parse")  # SDSS unit, not FITS
def test_catalogue_to_fits_with_units_and_provenance(cli, standin, catalog, tmp_path):
    out = tmp_path / "mgs.fits"
    p = cli("pz-query", "--url", standin.url, "--page-size", "1500", "-o", str(out), *FAST)
    assert p.returncode == 0, p.stderr.decode()
    assert b"4,011 rows, 4 requests" in p.stderr  # 3 pages and the empty one that ends it
    from astropy.io import fits
    from astropy.table import Table

    t = Table.read(out)
    assert list(t["specObjID"]) == expected_mgs(catalog).tolist()
    assert str(t["ra"].unit) == "deg" and str(t["dered_petro_r"].unit) == "mag"
    header = fits.getheader(out, 1)
    assert header["PZ_SDSS_RELEASE"] == "12" and "pz-query --url" in header["PZ_COMMAND"]


def test_failure_writes_nothing_then_resumes(cli, standin, catalog, tmp_path):
    out = tmp_path / "mgs.parquet"
    spool = tmp_path / "pages"
    standin.inject("http500", 2, status=503, after=2)
    args = [
        "--url",
        standin.url,
        "--page-size",
        "1000",
        "--spool",
        str(spool),
        "-o",
        str(out),
        *FAST,
    ]
    p = cli("pz-query", *args)
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 1 and not out.exists()
    assert err[-1].startswith("pz-query: error: SkyServer query failed after 2 attempts")
    assert "HTTP 503" in err[-1] and "rerun the same command to resume" in err[-1]
    assert "Traceback" not in p.stderr.decode()
    n_first = len(standin.sql_requests)
    p = cli("pz-query", *args)
    assert p.returncode == 0, p.stderr.decode()
    assert len(standin.sql_requests) - n_first == 4  # pages 3, 4, the short 5th, the end
    assert pq.read_table(out).column("specObjID").to_pylist() == expected_mgs(catalog).tolist()
    assert not spool.exists()


def test_sql_file_to_stdout_csv(cli, standin, tmp_path):
    sql = tmp_path / "q.sql"
    sql.write_text(
        "-- five brightest\nSELECT TOP 5 objID, ra, dec\n"
        "FROM PhotoObjAll /* photometry */\nWHERE class = 'GALAXY' -- 'x'\n"
        "ORDER BY petroMag_r\n"
    )
    p = cli("pz-query", "--url", standin.url, "--sql", str(sql), "--format", "csv", "-q", *FAST)
    assert p.returncode == 0, p.stderr.decode()
    lines = p.stdout.decode().splitlines()
    assert lines[0].split(",") == ["objID", "ra", "dec"] and len(lines) == 6
    assert p.stderr == b""


def test_frames_for_box_and_catalogue(cli, tmp_path):
    # three epochs (runs) x 2 camcols x 40 fields along a stripe, like Stripe 82's repeats
    rows = [
        (
            run,
            cam,
            f,
            10 + 0.15 * f,
            10 + 0.15 * f + 0.16,
            -1.0 + 0.45 * (cam - 1),
            -1.0 + 0.45 * (cam - 1) + 0.5,
        )
        for run in (106, 206, 4198)
        for cam in (1, 2)
        for f in range(40)
    ]
    cols = list(zip(*rows, strict=True))
    frames = {
        "run": cols[0],
        "rerun": [301] * len(rows),
        "camcol": cols[1],
        "field": cols[2],
        "ra_min": cols[3],
        "ra_max": cols[4],
        "dec_min": cols[5],
        "dec_max": cols[6],
    }
    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(11, 12, 30), rng.uniform(-0.9, -0.6, 30)
    cat = tmp_path / "cat.parquet"
    pq.write_table(pa.table({"RA": ra, "DEC": dec}), cat)
    with StandIn(frames=frames) as s:
        out = tmp_path / "frames.parquet"
        p = cli(
            "pz-query",
            "frames",
            str(cat),
            "--url",
            s.url,
            "--margin",
            "30",
            "--page-size",
            "7",
            "-o",
            str(out),
            *FAST,
        )
        assert p.returncode == 0, p.stderr.decode()
        t = pq.read_table(out)
        assert t.column_names == [
            "fieldID",
            "run",
            "rerun",
            "camcol",
            "field",
            "ra_min",
            "ra_max",
            "dec_min",
            "dec_max",
        ]
        assert t.schema.field("ra_min").metadata[b"unit"] == b"deg"
        got = set(
            zip(
                t.column("run").to_pylist(),
                t.column("camcol").to_pylist(),
                t.column("field").to_pylist(),
                strict=True,
            )
        )
        need = {
            (r[0], r[1], r[2])
            for r in rows
            for a, d in zip(ra, dec, strict=True)
            if r[3] - 0.01 <= a <= r[4] + 0.01 and r[5] - 0.01 <= d <= r[6] + 0.01
        }
        assert need <= got and {g[0] for g in got} == {106, 206, 4198}  # every epoch
        assert len(got) == t.num_rows  # one row per field
        p = cli(
            "pz-query",
            "frames",
            "--box",
            "14,14.1,-0.6,-0.52",
            "--url",
            s.url,
            "--margin",
            "0",
            "--format",
            "csv",
            *FAST,
        )
        assert p.returncode == 0, p.stderr.decode()
        lines = p.stdout.decode().splitlines()
        assert len(lines) == 1 + 3 * 2 * 2  # 3 epochs x camcols 1, 2 x fields 26, 27


def test_help_ends_with_example_and_stays_light():
    p = subprocess.run(
        [sys.executable, "-m", "photoz_tools.cli.query", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0
    tail = [ln for ln in p.stdout.splitlines() if ln.strip()][-1]
    assert "pz-query frames" in tail
    p = subprocess.run(
        [sys.executable, "-m", "photoz_tools.cli.query", "frames", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "pz-query frames mgs.parquet" in p.stdout.strip().splitlines()[-1]
    code = (
        "import sys, photoz_tools.cli.query; "
        "print([m for m in ('astroquery', 'numpy', 'astropy', 'pyarrow') if m in sys.modules])"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--box", "1,2,3"], "four numbers"),
        (["--box", "1,2,3,4", "--ra-min", "1"], "not both"),
        (["--page-size", "0"], "--page-size"),
        (["--page-size", "600000"], "500,000"),
        (["--sql", "q.sql", "--r-max", "17"], "--r-max"),
        (["frames", "cat.parquet", "--box", "1,2,3,4"], "not both"),
        (["frames", "--box", "1,2,3,4", "--cell", "0"], "--cell"),
    ],
)
def test_usage_errors(args, message, capsys):
    from photoz_tools.cli.common import run
    from photoz_tools.cli.query import app

    assert run(app, [*args, "--url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("pz-query: error:") and err.count("\n") == 1
