"""`make demo` (python -m photoz_tools.demo) as the ONE end-to-end pipeline test: a small pz-mock
survey through every command, as a user runs them (subprocesses): pz-mock -> pz-mock serve ->
pz-query -> pz-query frames -> pz-cutout (via the SAS stand-in) -> pz-pack -> pz-train (tiny) ->
pz-predict -> pz-score, with the demo's outputs (figure, score table) and sane scores.

It was two tests running nearly the same pipeline (this one on 30 galaxies, and
tests/mock/test_pipeline.py on 1000); one run of the demo on the bigger survey, through its
hidden size knobs, checks what both did in little more than the bigger one's time (the demo's
default deep region is left out: see below)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("galsim")
pytest.importorskip("keras")

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("PZ_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.mark.slow
def test_demo_runs_the_pipeline_on_a_small_survey(tmp_path, capsys):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from photoz_tools import demo
    from photoz_tools.metrics import sigma_mad

    out = tmp_path / "demo-output"
    # the real MGS photometry where ../shared is present, else the shipped model
    mgs = SHARED_DATA / "mgs-photometry" / "SDSS_MGS.train"
    phot = ["--photometry", str(mgs)] if mgs.is_file() else []
    # the survey and training the score bound below was measured on (pz-mock --seed 11 with no
    # deep region, pz-train's default seed 0): seed 11 for both and the demo's deep region
    # gave 0.73x, too near the bound; the deep region's three runs of frames also cost as much
    # as the main survey (multi-epoch cutouts are checked in tests/imaging/test_cutouts.py)
    code = demo.main(
        ["--out", str(out), "--galaxies", "1000", "--per-field", "500", "--seed", "11", *phot]
        + ["--neighbours", "20", "--stars", "10", "--deep-fraction", "0", "--train-seed", "0"]
        + ["--arch", "tiny", "--epochs", "30", "--batch-size", "32", "--lr", "3e-3"]
    )
    assert code == 0

    # the demo's own outputs: the figure it names last, predictions and scores of fold 0
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
    assert "sigma" in (out / "scores.csv").read_text().lower()

    # pz-query through the SkyServer stand-in: the MGS cuts keep nearly all (r <= 17.8 after
    # noise), and pz-cutout got their frames from the SAS stand-in through the cache
    cat = pq.read_table(out / "mgs.parquet")
    assert cat.num_rows > 900
    assert pq.read_table(out / "frames.parquet").num_rows > 0
    assert any((out / "sas-cache").rglob("frame-*"))
    assert pq.read_table(out / "cutouts.parquet", columns=["objID"]).num_rows > 900

    # the scores are sane: PDFs normalised, the CNN beats the constant, PIT not degenerate
    ds = pq.read_table(out / "dataset.parquet", columns=["z", "split"])
    z = zphot["z"].to_numpy()
    pdf = np.stack(zphot["pdf"].to_numpy(zero_copy_only=False)).astype(np.float64)
    assert np.allclose(pdf.sum(axis=1), 1.0, atol=2e-3)
    train_z = ds.filter(pc.equal(ds["split"], "train"))["z"].to_numpy()
    constant = sigma_mad((np.median(train_z) - z) / (1 + z))
    cnn = sigma_mad((zphot["zphot"].to_numpy() - z) / (1 + z))
    # ~720 training galaxies, the tiny net for 30 epochs: measured 0.69x the constant's
    # sigma_MAD (0.0297 against 0.0430 on 199 held-out galaxies of the real MGS photometry;
    # bit for bit what tests/mock/test_pipeline.py got before it was merged in here)
    assert cnn < 0.75 * constant, (cnn, constant)
    edges = np.linspace(0, 0.4, pdf.shape[1] + 1)
    cdf = np.concatenate([np.zeros((len(z), 1)), np.cumsum(pdf, axis=1)], axis=1)
    k = np.clip(np.searchsorted(edges, z) - 1, 0, pdf.shape[1] - 1)
    frac = (z - edges[k]) / (edges[k + 1] - edges[k])
    pit = cdf[np.arange(len(z)), k] + frac * pdf[np.arange(len(z)), k]
    assert 0.1 < np.std(pit) < 0.45 and np.mean((pit > 0.05) & (pit < 0.95)) > 0.5
