"""pz-mock's command line: usage errors, a catalogue-only survey, resume and refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("galsim")


def test_needs_an_output_folder(cli):
    r = cli("pz-mock", "-n", "10")
    assert r.returncode == 2 and b"-o/--out" in r.stderr


def test_serve_refuses_a_folder_that_is_not_a_survey(cli, tmp_path: Path):
    r = cli("pz-mock", "serve", str(tmp_path))
    assert r.returncode == 1 and b"not a pz-mock survey" in r.stderr
    assert b"Traceback" not in r.stderr


def test_catalogue_only_survey_then_resume_and_refusal(cli, tmp_path: Path):
    import pyarrow.parquet as pq

    out = tmp_path / "sky"
    args = ["-n", "50", "--seed", "3", "--per-field", "25", "--catalog-only", "-o", str(out)]
    r = cli("pz-mock", *args)
    assert r.returncode == 0, r.stderr.decode()
    assert b"per deg2" in r.stderr
    cat = pq.read_table(out / "catalog.parquet")
    index = pq.read_table(out / "frames.parquet")
    assert cat.num_rows == 50 and index.num_rows == 2
    for name in (
        "specObjID",
        "objID",
        "ra",
        "dec",
        "z",
        "zErr",
        "dered_petro_r",
        "petroMagErr_u",
        "extinction_g",
        "ebv",
        "ba",
        "psfFWHM_i",
        "sky_z",
        "run",
        "rerun",
        "camcol",
        "field",
        "zphot_b16",
    ):
        assert name in cat.column_names, name
    assert len(set(cat["objID"].to_pylist())) == 50
    assert set(index.column_names) >= {
        "run",
        "rerun",
        "camcol",
        "field",
        "ra_min",
        "ra_max",
        "dec_min",
        "dec_max",
    }
    manifest = json.loads((out / "mock.json").read_text())
    assert manifest["density_deg2"] > 500  # 25 per field: ~9x the real MGS
    assert cli("pz-mock", *args).returncode == 0  # same parameters: resumes
    r = cli("pz-mock", *args[:2], "--seed", "4", *args[4:])
    assert r.returncode == 1 and b"other parameters" in r.stderr


def test_photoz_tools_mock_is_the_plain_function(tmp_path: Path):
    import photoz_tools
    import photoz_tools.mock.survey  # noqa: F401  (the subpackage now shadows the lazy name)

    res = photoz_tools.mock(tmp_path / "m", n=5, per_field=5, frames=False)
    assert res.n_galaxies == 5 and (tmp_path / "m" / "catalog.parquet").is_file()


def test_photometry_modes_and_the_rows_left_out(cli, tmp_path: Path):
    """--photometry-mode as-measured renders the rows' magnitudes as the truth; conditioned (the
    default) keeps each row's z and draws new colours; a row with no z is counted on stderr."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    n = 12
    cols = {"specObjID": np.arange(n), "z": rng.uniform(0.03, 0.2, n)}
    cols["z"][4] = np.nan
    for k, b in enumerate("ugriz"):
        cols[f"dered_petro_{b}"] = 18.5 - 0.5 * k + rng.normal(0, 0.3, n)
    pq.write_table(pa.table(cols), tmp_path / "q.parquet")
    got = {}
    for mode in ("as-measured", "conditioned"):
        out = tmp_path / mode
        args = ["--photometry", str(tmp_path / "q.parquet"), "--photometry-mode", mode]
        r = cli("pz-mock", *args, "--catalog-only", "--per-field", "20", "-o", str(out))
        assert r.returncode == 0, r.stderr.decode()
        assert b"1 rows left out (1 with z not finite)" in r.stderr or b"1 row" in r.stderr
        got[mode] = pq.read_table(out / "catalog.parquet").to_pandas().sort_values("z")
    keep = np.isfinite(cols["z"])
    z = np.sort(cols["z"][keep])
    order = np.argsort(cols["z"][keep])
    for mode, t in got.items():
        assert len(t) == n - 1 and np.allclose(t["z"], z, atol=1e-6), mode

    def offset(mode: str, band: str) -> np.ndarray:  # true (total) - the row's magnitude
        return got[mode][f"true_mag_{band}"].to_numpy() - cols[f"dered_petro_{band}"][keep][order]

    # as-measured: the rows' (Petrosian) magnitudes are the truth, made total: brighter by the
    # light outside 2 r_P (0-7 %, more for de Vaucouleurs profiles)
    for band in "ugriz":
        assert ((offset("as-measured", band) <= 0) & (offset("as-measured", band) > -0.08)).all()
    # conditioned: r follows the row's r, the other colours are drawn anew
    assert (np.abs(offset("conditioned", "r")) < 0.15).all()
    assert np.median(np.abs(offset("conditioned", "g"))) > 0.08
    bad = cli("pz-mock", "--photometry-mode", "guess", "-o", str(tmp_path / "x"))
    assert bad.returncode == 2 and b"--photometry-mode" in bad.stderr
