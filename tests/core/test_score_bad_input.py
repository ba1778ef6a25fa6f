"""pz-score's answers to truth and PDFs that cannot be right (issue 14, causes 6 and 7).

In process, on small tables: every row left out is counted, nothing impossible is scored.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

import photoz_tools
from photoz_tools import metrics as M
from photoz_tools import pdf as P
from photoz_tools.errors import PzError
from photoz_tools.scoring import collect, metrics_rows
from photoz_tools.tables import to_arrow, write_table

N = 400


def gaussian_pdfs(z: np.ndarray, sig: float = 0.015, seed: int = 0) -> np.ndarray:
    """Calibrated histogram PDFs around z (the truth drawn from them)."""
    rng = np.random.default_rng(seed)
    b = P.Bins.default()
    mu = z + rng.normal(0, sig, z.size)
    x = b.midpoints[None, :]
    pdf = np.exp(-0.5 * ((x - mu[:, None]) / sig) ** 2)
    return (pdf / pdf.sum(1, keepdims=True)).astype(np.float32)


def table(n: int = N, seed: int = 0, **changes: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.02, 0.35, n)
    pdf = gaussian_pdfs(z, seed=seed)
    cols = {
        "specObjID": np.arange(n, dtype=np.int64) + 10**17,
        "z": z,
        "fold": rng.integers(0, 3, n),
        "ra": rng.uniform(0, 360, n),
        "zphot": P.zphot(pdf, P.Bins.default()),
        "pdf": pdf,
    }
    cols.update(changes)
    return cols


def write(tmp_path, cols: dict[str, np.ndarray], name: str = "p.parquet") -> str:
    path = str(tmp_path / name)
    write_table(pa.table({k: to_arrow(np.asarray(v)) for k, v in cols.items()}), path)
    return path


def score(path: str, **kw):
    notes: list[str] = []
    t = photoz_tools.score(path, warn=notes.append, **kw)
    return t, notes


# --------------------------------------------------------------------------- the core checks


def test_impossible_redshift_bounds():
    z = np.array([-0.5, -0.011, -0.01, -0.001, 0.0, 0.4, 7.5, 10.0, 10.01, 1e30, np.nan, np.inf])
    want = [True, True, False, False, False, False, False, False, True, True, False, False]
    # NaN and inf are the other check's (NaN/inf truth)
    assert M.impossible_redshift(z).tolist() == want


def test_usable_pdf_rows():
    p = np.full((7, 4), 0.25, np.float32)
    p[1] = np.nan  # a null cell
    p[2, 1] = np.nan  # one NaN bin
    p[3, 2] = -0.01  # a negative bin
    p[4] = 0  # no mass
    p[5, 0] = np.inf
    p[6] = [1e38, 1e38, 1e38, 1e38]  # its float32 sum overflows, float64 does not
    assert P.usable(p).tolist() == [True, False, False, False, False, False, True]
    assert P.usable(p[0]).tolist() == [True]


# --------------------------------------------------------------------------- truth


@pytest.mark.parametrize("bad", [-0.5, -0.02, 10.5, 1e30, -9999.0])
def test_impossible_truth_refused_then_dropped_with_a_count(tmp_path, bad):
    z = table()["z"].copy()
    z[[3, 50, 51]] = bad
    path = write(tmp_path, table(z=z))
    with pytest.raises(PzError) as err:
        score(path)
    msg = str(err.value)
    assert "3 rows have truth outside [-0.01, 10]" in msg and "column 'z'" in msg
    assert "row 3" in msg and "--drop-nan" in msg and "\n" not in msg
    t, notes = score(path, drop_nan=True)
    row = t.to_pylist()[0]
    assert row["N"] == N - 3 and row["N_excluded"] == 0
    assert row["crps"] < 0.02  # never the CRPS of a truth of 1e30
    assert any("3 rows with truth outside" in s for s in notes)
    dropped = json.loads(t.schema.metadata[b"pz_score_dropped"])
    assert dropped == {"impossible truth": 3}


def test_slightly_negative_truth_is_a_redshift(tmp_path):
    z = table()["z"].copy()
    z[:4] = [-0.001, -0.0049, 0.0, -0.01]  # stars and nearby galaxies in SDSS
    t, notes = score(write(tmp_path, table(z=z)))
    assert t.to_pylist()[0]["N"] == N and not notes


def test_nan_and_impossible_truth_together(tmp_path):
    z = table()["z"].copy()
    z[[0, 1]] = np.nan
    z[7] = 42.0
    path = write(tmp_path, table(z=z))
    with pytest.raises(PzError, match=r"2 rows have NaN/inf truth .*\(first: row 0"):
        score(path)
    t, notes = score(path, drop_nan=True)
    assert t.to_pylist()[0]["N"] == N - 3
    assert json.loads(t.schema.metadata[b"pz_score_dropped"]) == {
        "NaN/inf truth": 2,
        "impossible truth": 1,
    }


@pytest.mark.parametrize(
    "column, words",
    [
        ("specObjID", ["'specObjID' (--truth) holds int64 values, not redshifts"]),
        ("fold", ["'fold' (--truth) holds int64 values"]),
        ("ra", ["'ra' (--truth) does not hold redshifts", "outside [-0.01, 10]"]),
    ],
)
def test_a_truth_column_that_is_not_a_redshift_is_refused(tmp_path, column, words):
    cols = table()
    if column == "ra":
        cols["ra"] = np.random.default_rng(3).uniform(11, 360, N)
    path = write(tmp_path, cols)
    for kw in ({}, {"drop_nan": True}):  # --drop-nan never scores the wrong column
        with pytest.raises(PzError) as err:
            score(path, truth=column, **kw)
        for w in words:
            assert w in str(err.value), str(err.value)
        assert "--truth" in str(err.value) and "p.parquet" in str(err.value)


def test_truth_table_checks_name_the_truth_table(tmp_path):
    cols = table()
    pred = write(tmp_path, {k: v for k, v in cols.items() if k != "z"})
    ids = cols["specObjID"]
    ints = write(tmp_path, {"specObjID": ids, "z": np.arange(N)}, "ints.parquet")
    with pytest.raises(PzError, match=r"ints\.parquet: column 'z' \(--truth\) holds int64"):
        score(pred, truth_table=ints)
    z = cols["z"].copy()
    z[9] = -1.0
    odd = write(tmp_path, {"specObjID": ids, "z": z}, "odd.parquet")
    with pytest.raises(PzError, match=r"odd\.parquet .*1 row has truth outside .*row 9"):
        score(pred, truth_table=odd)
    t, _ = score(pred, truth_table=odd, drop_nan=True)
    assert t.to_pylist()[0]["N"] == N - 1


# --------------------------------------------------------------------------- PDFs


def bad_pdf_table(tmp_path, with_zphot: bool = True) -> tuple[str, np.ndarray]:
    cols = table()
    pdf = cols["pdf"].copy()
    pdf[0] = np.nan  # a null prediction kept as NaN
    pdf[5, 40] = np.nan
    pdf[6, 10] = -0.2
    pdf[7] = 0.0
    pdf[8, 3] = np.inf
    cols["pdf"] = pdf
    if not with_zphot:
        del cols["zphot"]
    bad = np.zeros(N, bool)
    bad[[0, 5, 6, 7, 8]] = True
    return write(tmp_path, cols), bad


@pytest.mark.parametrize("with_zphot", [True, False])
def test_unusable_pdfs_are_left_out_of_every_metric_with_a_count(tmp_path, with_zphot):
    path, bad = bad_pdf_table(tmp_path, with_zphot)
    t, notes = score(path)
    row = t.to_pylist()[0]
    assert row["N"] == N - 5 and row["N_excluded"] == 5
    assert all(np.isfinite(row[k]) for k in ("crps", "pit_ks", "pit_cvm", "width68", "bias"))
    assert any("5 rows whose 'pdf' is unusable" in s and "first: row 0" in s for s in notes)
    # the same numbers as scoring only the good rows
    cols = table()
    good = write(tmp_path, {k: v[~bad] for k, v in cols.items()}, "good.parquet")
    want = score(good)[0].to_pylist()[0]
    for k in ("N", "bias", "sigma_mad", "eta", "crps", "pit_ks", "width68"):
        assert row[k] == pytest.approx(want[k], rel=1e-6), k


def test_null_zphot_and_bad_pdf_are_counted_once_each(tmp_path):
    cols = table()
    zp, pdf = cols["zphot"].copy(), cols["pdf"].copy()
    zp[[1, 2]] = np.nan
    pdf[[2, 3]] = np.nan  # row 2: both null; row 3: only its PDF
    _, notes = score(write(tmp_path, table(zphot=zp, pdf=pdf)))
    assert any("2 rows with null zphot" in s for s in notes)
    assert any("1 row whose 'pdf' is unusable" in s and "row 3" in s for s in notes)


def test_counts_add_up_per_group_bin_and_trial(tmp_path):
    path, bad = bad_pdf_table(tmp_path)
    cols = table()
    t, _ = score(path, group="fold", by="z", bins="0,0.1,0.2,0.4", drop_widest="10")
    rows = t.to_pylist()
    for r in rows:
        if r["group"] in ("mean", "std"):
            continue
        inside = (cols["z"] >= r["by_lo"]) & (
            (cols["z"] < r["by_hi"]) if r["by_hi"] < 0.4 else (cols["z"] <= r["by_hi"])
        )
        cell = inside & (cols["fold"] == int(r["group"]))
        assert r["N_excluded"] == int((cell & bad).sum())
        if r["drop_widest"] == 0:
            assert r["N"] + r["N_excluded"] == int(cell.sum())
    per = [r for r in rows if r["group"] not in ("mean", "std") and r["drop_widest"] == 0]
    assert sum(r["N_excluded"] for r in per) == 5
    means = [r for r in rows if r["group"] == "mean"]
    assert all(
        r["N_excluded"]
        == sum(
            p["N_excluded"]
            for p in rows
            if p["group"] not in ("mean", "std")
            and p["by_lo"] == r["by_lo"]
            and p["drop_widest"] == r["drop_widest"]
        )
        for r in means
    )


def test_every_row_unusable_is_a_failure(tmp_path):
    cols = table(n=20)
    cols["pdf"] = np.full_like(cols["pdf"], np.nan)
    cols["zphot"] = np.full(20, np.nan)
    with pytest.raises(PzError, match="no row of zphot can be scored"):
        score(write(tmp_path, cols))


def test_packed_or_arrow_null_cells_still_counted(tmp_path):
    """Arrow nulls in the pdf column (pz-predict's flagged rows) are unusable PDFs too."""
    cols = table()
    mask = np.zeros(N, bool)
    mask[[4, 9]] = True
    pdf = to_arrow(cols["pdf"])
    storage = pdf.storage if isinstance(pdf.type, pa.ExtensionType) else pdf
    nulls = pa.FixedSizeListArray.from_arrays(
        storage.values, storage.type.list_size, mask=pa.array(mask)
    )
    t = pa.table({k: to_arrow(np.asarray(v)) for k, v in cols.items() if k != "pdf"})
    path = str(tmp_path / "n.parquet")
    write_table(t.append_column("pdf", nulls), path)
    data = collect(path, warn=lambda s: None)
    assert data.estimators[0].pdf_bad.sum() == 2
    rows = metrics_rows(data, warn=lambda s: None)
    assert rows[0]["N"] == N - 2 and rows[0]["N_excluded"] == 2


def test_plot_draws_the_scored_rows_and_leaves_nothing_on_failure(tmp_path):
    path, _ = bad_pdf_table(tmp_path)
    png = tmp_path / "p.png"
    score(path, plot=str(png))
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError):
        score(path, plot=str(tmp_path / "p.nosuchformat"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet", "p.png"]


def test_no_rows_left_after_the_drops_is_a_failure_that_says_why(tmp_path):
    cols = table()
    cols["specObjID"][1] = cols["specObjID"][0]
    cols["z"] = np.full(N, np.nan)
    cols["z"][0] = 0.1  # its id repeats: --dedupe last drops it
    path = write(tmp_path, cols)
    with pytest.raises(PzError, match=rf"no rows left to score \(1 repeated id, {N - 1} NaN/inf"):
        score(path, drop_nan=True, dedupe="last")


def test_a_text_truth_column_is_refused(tmp_path):
    cols = {k: v for k, v in table().items() if k != "pdf"}
    cols["z"] = np.array([f"{v:.3f}" for v in cols["z"]])
    with pytest.raises(PzError, match=r"column 'z' \(--truth\) holds text values, not redshifts"):
        score(write(tmp_path, cols))


# --------------------------------------------------------------------------- the command line


def run_score(capsys, *args):
    from photoz_tools.cli import common, score

    code = common.run(score.app, [str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


def test_cli_writes_what_it_dropped_and_shows_what_it_excluded(tmp_path, capsys):
    """pz-score -o records pz_score_dropped as the plain function does; the printed table gets an
    'N excluded' column only where some cell left rows out (the std row leaves it blank, as N)."""
    import pyarrow.parquet as pq

    cols = table()
    pdf, z = cols["pdf"].copy(), cols["z"].copy()
    pdf[[0, 1, 2]] = np.nan  # unusable PDFs: excluded, counted per cell
    z[[20, 21]] = [np.nan, 99.0]  # truth that cannot be scored: dropped with --drop-nan
    path = write(tmp_path, {**cols, "pdf": pdf, "z": z})
    out_file = tmp_path / "s.parquet"
    out, _ = run_score(capsys, path, "--drop-nan", "--group", "fold", "-o", out_file)
    t = pq.read_table(out_file)
    assert json.loads(t.schema.metadata[b"pz_score_dropped"]) == {
        "NaN/inf truth": 1,
        "impossible truth": 1,
    }
    assert t.schema.metadata[b"pz_score_truth"] == b"z"
    assert sum(t.column("N_excluded").to_pylist()[:3]) == 3  # the three folds
    cells = {
        line.split("|")[2].strip(): [c.strip() for c in line.split("|")[1:-1]]
        for line in out.splitlines()
        if line.startswith("|")
    }
    at = cells["fold"].index("N excluded")
    assert cells["fold"][at - 1] == "N"
    assert cells["mean"][at] == "3" and cells["std"][at] == ""  # the total, once
    # nothing excluded: no such column on screen (the file keeps it, all zeros)
    out, _ = run_score(capsys, write(tmp_path, table(), "clean.parquet"))
    assert "N excluded" not in out and " N " in out
