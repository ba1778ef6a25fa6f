"""pz-score end to end (subprocesses, as a user runs it) and photoz_tools.score()."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from photoz_tools import pdf as P
from photoz_tools.tables import BIN_EDGES_KEY, read_table, to_arrow, write_table

N = 3000


def make_predictions(n: int = N, seed: int = 0, bins: P.Bins | None = None) -> pa.Table:
    """Calibrated Gaussian PDFs (the truth is drawn from them) plus a worse PDF-less estimator."""
    from scipy.special import ndtr

    rng = np.random.default_rng(seed)
    b = bins or P.Bins.default()
    z = rng.gamma(4, 0.025, n).clip(0.003, 0.39)
    sig = rng.uniform(0.006, 0.02, n) * (1 + z)
    mu = z + rng.normal(0, 1, n) * sig
    pdf = np.diff(ndtr((b.edges[None, :] - mu[:, None]) / sig[:, None]), axis=1)
    pdf /= pdf.sum(1, keepdims=True)
    cols = {
        "specObjID": np.arange(n, dtype=np.int64) + 10**17,
        "z": z,
        "fold": rng.integers(0, 5, n),
        "ebv": rng.uniform(0, 0.1, n),
        "zphot_b16": z + rng.normal(0, 0.0135, n) * (1 + z),
        **P.summarize(pdf, b),
        "pdf": pdf.astype(np.float32),
    }
    table = pa.table({k: to_arrow(np.asarray(v)) for k, v in cols.items()})
    return table.replace_schema_metadata({BIN_EDGES_KEY: b.to_json()})


def write(table: pa.Table, path) -> str:
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    write_table(table.replace_schema_metadata(None), str(path), metadata=meta)
    return str(path)


@pytest.fixture(scope="module")
def preds(tmp_path_factory) -> str:
    return write(make_predictions(), tmp_path_factory.mktemp("score") / "pred.parquet")


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, res.stderr.decode()
    assert b"Traceback" not in res.stderr
    return res.stdout.decode()


def failed(res: subprocess.CompletedProcess, code: int = 1) -> str:
    err = res.stderr.decode()
    assert res.returncode == code, (res.returncode, err, res.stdout)
    assert "Traceback" not in err and err.startswith("pz-score: error:")
    assert err.count("\n") == 1, err
    return err


def records(path) -> list[dict]:
    return json.loads(open(path).read())


# --------------------------------------------------------------------------- the real check


def test_reference_predictions(shared_data, cli, tmp_path):
    csv = shared_data / "reference-predictions" / "dey2022_umap_test_predictions.csv"
    out = tmp_path / "ref.json"
    res = cli(
        "pz-score",
        str(csv),
        "--truth",
        "z_spec",
        "--zphot",
        "z_phot",
        "--dedupe",
        "first",
        "-o",
        str(out),
    )
    text = ok(res)
    assert "4.57e-05" in text and "0.00935" in text and "0.269" in text and "51,652" in text
    assert "139 rows with a repeated specObjID dropped" in res.stderr.decode()
    (row,) = records(out)
    assert row["N"] == 51652
    assert f"{row['bias']:.3g}" == "4.57e-05"
    assert f"{row['sigma_mad']:.3g}" == "0.00935"
    assert f"{row['eta']:.3g}" == "0.269"


def test_reference_duplicates_refused_by_default(shared_data, cli):
    csv = shared_data / "reference-predictions" / "dey2022_umap_test_predictions.csv"
    err = failed(cli("pz-score", str(csv), "--truth", "z_spec", "--zphot", "z_phot"))
    assert "139 values of specObjID occur more than once" in err and "--dedupe first" in err


# --------------------------------------------------------------------------- metrics


def test_default_scores_and_api_agree(preds, cli, tmp_path):
    out = tmp_path / "s.json"
    text = ok(cli("pz-score", preds, "-o", str(out)))
    assert "CRPS" in text and "PIT KS" in text and "3,000" in text
    (row,) = records(out)
    t = read_table(preds)
    z = t["z"].to_numpy()
    pdf = np.stack(t["pdf"].to_numpy(zero_copy_only=False))
    dz = (t["zphot"].to_numpy() - z) / (1 + z)
    assert row["bias"] == pytest.approx(dz.mean(), rel=1e-6)
    assert row["crps"] == pytest.approx(P.crps(pdf, P.Bins.default(), z).mean(), rel=1e-5)
    assert row["pit_ks"] < 0.03  # calibrated PDFs
    import photoz_tools

    api = photoz_tools.score(preds).to_pylist()[0]
    assert api["sigma_mad"] == pytest.approx(row["sigma_mad"])


def test_several_estimators_pdf_metrics_only_where_pdf(preds, cli, tmp_path):
    out = tmp_path / "s.csv"
    ok(cli("pz-score", preds, "--zphot", "zphot,zphot_b16", "-o", str(out)))
    t = read_table(str(out))
    assert t["estimator"].to_pylist() == ["zphot", "zphot_b16"]
    crps = t["crps"].to_numpy()
    assert np.isfinite(crps[0]) and np.isnan(crps[1])


@pytest.mark.parametrize("ext", ["csv", "json", "fits", "parquet"])
def test_output_formats(preds, cli, tmp_path, ext):
    out = tmp_path / f"s.{ext}"
    ok(cli("pz-score", preds, "-o", str(out)))
    if ext == "json":
        assert records(out)[0]["N"] == N
    else:
        assert read_table(str(out))["N"].to_pylist() == [N]


def test_stdout_machine_table_moves_human_table_to_stderr(preds, cli):
    res = cli("pz-score", preds, "-o", "-", "--format", "csv")
    lines = ok(res).splitlines()
    assert lines[0].startswith("estimator,N,bias") and len(lines) == 2
    assert "σ_MAD" in res.stderr.decode()


def test_stdin_input(preds, cli):
    with open(preds, "rb") as fh:
        text = ok(cli("pz-score", "-", input=fh.read()))
    assert "3,000" in text


def test_by_bins_edges_and_count(preds, cli, tmp_path):
    out = tmp_path / "s.json"
    ok(cli("pz-score", preds, "--by", "z", "--bins", "0,0.1,0.2,0.4", "-o", str(out)))
    rows = records(out)
    assert [(r["by_lo"], r["by_hi"]) for r in rows] == [(0, 0.1), (0.1, 0.2), (0.2, 0.4)]
    assert sum(r["N"] for r in rows) == N
    ok(cli("pz-score", preds, "--by", "ebv", "--bins", "4", "-o", str(out)))
    assert len(records(out)) == 4 and sum(r["N"] for r in records(out)) == N


def test_group_rows_mean_and_std(preds, cli, tmp_path):
    out = tmp_path / "s.json"
    ok(cli("pz-score", preds, "--group", "fold", "-o", str(out)))
    rows = records(out)
    assert [r["group"] for r in rows] == ["0", "1", "2", "3", "4", "mean", "std"]
    per = rows[:5]
    assert rows[5]["sigma_mad"] == pytest.approx(np.mean([r["sigma_mad"] for r in per]))
    assert rows[6]["bias"] == pytest.approx(np.std([r["bias"] for r in per], ddof=1))
    assert rows[5]["N"] == N


def test_drop_widest(preds, cli, tmp_path):
    out = tmp_path / "s.json"
    res = cli(
        "pz-score", preds, "--zphot", "zphot,zphot_b16", "--drop-widest", "10,20", "-o", str(out)
    )
    ok(res)
    rows = records(out)
    cnn = [r for r in rows if r["estimator"] == "zphot"]
    assert [(r["drop_widest"], r["N"]) for r in cnn] == [(0, N), (10, 2700), (20, 2400)]
    assert cnn[0]["width68"] > cnn[1]["width68"] > cnn[2]["width68"]
    assert "zphot_b16 has no PDF or width68" in res.stderr.decode()


def test_eta_threshold(preds, cli, tmp_path):
    out = tmp_path / "s.json"
    ok(cli("pz-score", preds, "--eta-threshold", "0.01", "-o", str(out)))
    assert records(out)[0]["eta"] > 20


def test_plot_writes_png(preds, cli, tmp_path):
    png = tmp_path / "p.png"
    ok(cli("pz-score", preds, "--zphot", "zphot,zphot_b16", "--plot", str(png)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20000
    failed(cli("pz-score", preds, "--plot", str(tmp_path / "p.txt")), code=2)


# --------------------------------------------------------------------------- truth tables


def test_truth_table_join(cli, tmp_path):
    t = make_predictions()
    pred = write(t.drop(["z", "fold"]), tmp_path / "p.parquet")
    truth = write(t.select(["specObjID", "z", "fold"]).slice(0, 2000), tmp_path / "t.fits")
    out = tmp_path / "s.json"
    res = cli(
        "pz-score",
        pred,
        "--truth-table",
        truth,
        "--id",
        "specObjID",
        "--group",
        "fold",
        "-o",
        str(out),
    )
    ok(res)
    assert "1000 rows have no specObjID" in res.stderr.decode()
    assert records(out)[-2]["N"] == 2000
    ids = t["specObjID"].to_numpy().copy()
    ids[5] = ids[4]
    dup = write(t.select(["z"]).append_column("specObjID", pa.array(ids)), tmp_path / "d.parquet")
    err = failed(cli("pz-score", pred, "--truth-table", dup))
    assert "occur more than once" in err and "d.parquet" in err


def test_nan_truth_needs_drop_nan(cli, tmp_path):
    t = make_predictions()
    z = t["z"].to_numpy().copy()
    z[:7] = np.nan
    path = write(
        t.set_column(t.schema.get_field_index("z"), "z", pa.array(z)), tmp_path / "n.parquet"
    )
    err = failed(cli("pz-score", path))
    assert "7 rows have NaN/inf truth in column 'z'" in err and "--drop-nan" in err
    assert "2,993" in ok(cli("pz-score", path, "--drop-nan"))


def test_null_predictions_are_counted_and_excluded(cli, tmp_path):
    t = make_predictions()
    zp = t["zphot"].to_numpy().copy()
    zp[:11] = np.nan
    pdf = np.stack(t["pdf"].to_numpy(zero_copy_only=False))
    pdf[:11] = np.nan
    t = t.set_column(t.schema.get_field_index("zphot"), "zphot", pa.array(zp))
    t = t.set_column(t.schema.get_field_index("pdf"), "pdf", to_arrow(pdf))
    res = cli("pz-score", write(t, tmp_path / "f.parquet"), "-o", str(tmp_path / "s.json"))
    ok(res)
    assert "11 rows with null zphot" in res.stderr.decode()
    row = records(tmp_path / "s.json")[0]
    assert row["N"] == N - 11 and np.isfinite(row["crps"])


def test_arrow_null_predictions(cli, tmp_path):
    """pz-predict writes nulls (not NaN) for bad-input rows: zphot null and the pdf cell null."""
    t = make_predictions()
    mask = np.zeros(N, dtype=bool)
    mask[[0, 7, 2999]] = True
    pdf = t["pdf"].combine_chunks()
    pdf = pa.FixedSizeListArray.from_arrays(pdf.values, pdf.type.list_size, mask=pa.array(mask))
    zp = pa.array(t["zphot"].to_numpy(), mask=mask)
    t = t.set_column(t.schema.get_field_index("zphot"), "zphot", zp)
    t = t.set_column(t.schema.get_field_index("pdf"), "pdf", pdf)
    res = cli(
        "pz-score",
        write(t, tmp_path / "n.parquet"),
        "-o",
        str(tmp_path / "s.json"),
        "--batch-size",
        "1000",
    )
    ok(res)
    assert "3 rows with null zphot" in res.stderr.decode()
    row = records(tmp_path / "s.json")[0]
    assert row["N"] == N - 3 and np.isfinite(row["crps"]) and row["pit_ks"] < 0.03


def test_dedupe_choices(cli, tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("specObjID,z,zphot\n1,0.1,0.1\n2,0.2,0.3\n1,0.1,0.2\n3,0.3,0.3\n")
    out = tmp_path / "s.json"
    for how, n, eta in (("first", 3, 100 / 3), ("last", 3, 200 / 3), ("all", 4, 50.0)):
        ok(cli("pz-score", str(csv), "--dedupe", how, "-o", str(out)))
        assert records(out)[0]["N"] == n and records(out)[0]["eta"] == pytest.approx(eta)
    assert "--dedupe" in failed(cli("pz-score", str(csv)))
    failed(cli("pz-score", str(csv), "--dedupe", "maybe"), code=2)


def test_custom_bins_from_metadata_and_mismatch(cli, tmp_path):
    b = P.Bins.linear(0, 0.5, 100)
    t = make_predictions(bins=b)
    out = tmp_path / "s.json"
    ok(cli("pz-score", write(t, tmp_path / "b.parquet"), "-o", str(out)))
    assert records(out)[0]["pit_ks"] < 0.03
    wrong = t.replace_schema_metadata({BIN_EDGES_KEY: P.Bins.default().to_json()})
    err = failed(cli("pz-score", write(wrong, tmp_path / "w.parquet")))
    assert "'pdf'" in err and "180 bins" in err


# --------------------------------------------------------------------------- bad input, UX


@pytest.mark.parametrize(
    "args, words",
    [
        (["--truth", "zz"], ["no truth column 'zz'", "columns: specObjID, z,", "--truth"]),
        (["--zphot", "zphot,nope"], ["no photo-z column 'nope'", "--zphot"]),
        (["--by", "snr"], ["no --by column 'snr'"]),
        (["--group", "run"], ["no --group column 'run'"]),
    ],
)
def test_missing_columns_are_named(preds, cli, args, words):
    err = failed(cli("pz-score", preds, *args))
    for w in words:
        assert w in err


@pytest.mark.parametrize(
    "args",
    [
        ["--bins", "3"],
        ["--by", "z", "--bins", "0.2,0.1"],
        ["--drop-widest", "120"],
        ["--eta-threshold", "0"],
        ["--by", "z", "--bins", "x"],
        ["-o", "scores.txt"],
    ],
)
def test_usage_errors_exit_2(preds, cli, args):
    failed(cli("pz-score", preds, *args), code=2)


def test_missing_file(cli, tmp_path):
    err = failed(cli("pz-score", str(tmp_path / "nothing.parquet")))
    assert "nothing.parquet" in err


def test_help_is_fast_and_ends_with_example(cli):
    res = cli("pz-score", "--help")
    text = ok(res)
    assert text.rstrip().splitlines()[-1].strip().startswith("pz-score ")
    code = (
        "import sys, photoz_tools.cli.score; "
        "bad = [m for m in ('numpy', 'scipy', 'matplotlib', 'pyarrow') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert ok(cli("pz-score", "--version")).startswith("pz-score (photoz-tools)")


def test_fits_input_matches_parquet(preds, cli, tmp_path):
    fits = write(make_predictions(), tmp_path / "pred.fits")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    ok(cli("pz-score", preds, "-o", str(a)))
    ok(cli("pz-score", fits, "-o", str(b)))
    want, got = records(a)[0], records(b)[0]
    assert want.pop("estimator") == got.pop("estimator")
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-6), k


def test_string_groups_and_non_numeric_by(cli, tmp_path):
    csv = tmp_path / "g.csv"
    csv.write_text("id,z,zphot,survey\n1,0.1,0.1,main\n2,0.2,0.3,lrg\n3,0.1,0.11,main\n")
    out = tmp_path / "s.json"
    ok(cli("pz-score", str(csv), "--group", "survey", "-o", str(out)))
    assert [r["group"] for r in records(out)] == ["lrg", "main", "mean", "std"]
    err = failed(cli("pz-score", str(csv), "--by", "survey"))
    assert "--by needs a numeric column" in err
