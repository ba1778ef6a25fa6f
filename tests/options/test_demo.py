"""`make demo` (python -m photoz_tools.demo): a smoke run of the whole pipeline on a tiny
simulated survey, with its size knobs (--galaxies, --per-field, --epochs, --arch tiny)."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("galsim")
pytest.importorskip("keras")


@pytest.mark.slow
def test_demo_runs_the_pipeline_on_a_tiny_survey(tmp_path, capsys):
    import pyarrow.parquet as pq

    from photoz_tools import demo

    out = tmp_path / "demo-output"
    code = demo.main(
        ["--out", str(out), "--galaxies", "30", "--per-field", "60", "--epochs", "1"]
        + ["--arch", "tiny", "--seed", "2"]
    )
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == f"figure: {(out / 'scores.png').resolve()}"
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    test = pq.read_table(out / "test.parquet", columns=["objID"])
    zphot = pq.read_table(out / "zphot.parquet")
    assert zphot.num_rows == test.num_rows > 0
    assert zphot.column("objID").to_pylist() == test.column("objID").to_pylist()
    assert {"zphot", "pdf", "z", "zphot_b16"} <= set(zphot.column_names)
    with open(out / "scores.csv") as f:
        rows = {r["estimator"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"zphot", "zphot_b16"}
    assert int(rows["zphot"]["N"]) == test.num_rows
