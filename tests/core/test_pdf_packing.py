"""Compact PDFs (pz-predict --pdf uint8 / uint8log): the packing functions, the columns and
metadata predict() writes, and pz-score restoring them. No Keras: predict() runs a stand-in
ensemble on a hand-made bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from photoz_tools import pdf as P
from photoz_tools.tables import open_table, read_table, to_arrow, write_table

BINS = P.Bins.default()


def gaussian_pdfs(n: int, seed: int = 0, outliers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pdf float32 (n, 180), z): Gaussian PDFs, the truth drawn from them; the first
    `outliers` truths moved 0.15 away (far in the tails, below max/510)."""
    from scipy.special import ndtr

    rng = np.random.default_rng(seed)
    z = rng.gamma(4, 0.025, n).clip(0.003, 0.39)
    sig = rng.uniform(0.006, 0.02, n) * (1 + z)
    mu = z + rng.normal(0, 1, n) * sig
    pdf = np.diff(ndtr((BINS.edges[None, :] - mu[:, None]) / sig[:, None]), axis=1)
    pdf /= pdf.sum(1, keepdims=True)
    z[:outliers] = np.where(mu[:outliers] < 0.2, mu[:outliers] + 0.15, mu[:outliers] - 0.15)
    return pdf.astype(np.float32), z


# --------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize("packing", P.PDF_PACKINGS)
def test_round_trip_sums_to_one_and_shapes(packing):
    p, _ = gaussian_pdfs(500)
    codes, pmax = P.pack_pdf(p, packing)
    assert codes.dtype == np.uint8 and codes.shape == p.shape
    assert pmax.dtype == np.float32 and pmax.shape == (500,)
    np.testing.assert_array_equal(pmax, p.max(axis=1))
    assert (codes.max(axis=1) == 255).all()  # the peak keeps the top code
    back = P.unpack_pdf(codes, pmax, packing)
    np.testing.assert_allclose(back.sum(axis=1), 1.0, atol=1e-12)
    one_c, one_m = P.pack_pdf(p[3], packing)  # a single row gives a row and a scalar
    np.testing.assert_array_equal(one_c, codes[3])
    np.testing.assert_allclose(P.unpack_pdf(one_c, one_m, packing), back[3])


def test_uint8_error_bound_and_zeros_below_max_over_510():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.full(180, 0.2), size=2000)  # spiky rows with long, tiny tails
    codes, pmax = P.pack_pdf(p, "uint8")
    raw = P.unpack_pdf(codes, pmax, "uint8", normalise=False)
    m = p.max(axis=1, keepdims=True)
    assert (np.abs(raw - p) <= m / 510 + m * 1e-7).all()  # + pdf_max's float32 rounding
    below = p < m / 510 * (1 - 1e-6)
    assert below.any() and (codes[below] == 0).all() and (raw[below] == 0).all()
    assert (codes[p > m / 510 * (1 + 1e-6)] > 0).all()
    # after renormalising, each bin moves by at most the bound plus the sum's correction
    back = P.unpack_pdf(codes, pmax, "uint8")
    s = raw.sum(axis=1, keepdims=True)
    assert (np.abs(back - p) <= m / 510 + m * 1e-7 + raw * np.abs(1 / s - 1)).all()


def test_uint8log_relative_error_and_floor():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.full(180, 0.2), size=2000)
    floor = 1e-4
    codes, pmax = P.pack_pdf(p, "uint8log", floor=floor)
    raw = P.unpack_pdf(codes, pmax, "uint8log", floor=floor, normalise=False)
    m = p.max(axis=1, keepdims=True)
    kept = p >= floor * m
    rel = np.abs(raw[kept] / p[kept] - 1)
    assert rel.max() <= floor ** (-1 / 508) - 1 + 1e-7  # half a code step on the log scale
    assert (codes[~kept] == 0).all() and (raw[~kept] == 0).all()
    assert (codes[kept] >= 1).all()
    # the tails that uint8 zeroes survive: between floor*max and max/510
    tail = kept & (p < m / 510)
    assert tail.any() and (raw[tail] > 0).all()


@pytest.mark.parametrize("packing", P.PDF_PACKINGS)
def test_bad_rows_get_nan_max_and_restore_to_nan(packing):
    p, _ = gaussian_pdfs(6)
    p = p.astype(np.float64)
    p[1] = np.nan
    p[4] = 0.0
    codes, pmax = P.pack_pdf(p, packing)
    assert np.isnan(pmax[[1, 4]]).all() and np.isfinite(pmax[[0, 2, 3, 5]]).all()
    assert (codes[[1, 4]] == 0).all()
    back = P.unpack_pdf(codes, pmax, packing)
    assert np.isnan(back[[1, 4]]).all() and np.isfinite(back[[0, 2, 3, 5]]).all()
    codes_f = codes.astype(np.float32)
    codes_f[2] = np.nan  # a null cell read back as NaN
    assert np.isnan(P.unpack_pdf(codes_f, pmax, packing)[2]).all()


def test_packing_metadata_round_trip_and_errors():
    spec = P.read_packing(P.packing_metadata("uint8log", floor=1e-5))
    assert spec == {"pdf": {"packing": "uint8log", "max_column": "pdf_max", "floor": 1e-5}}
    assert P.read_packing(P.packing_metadata("uint8"))["pdf"]["max_column"] == "pdf_max"
    assert P.read_packing(None) == {}
    for bad in ("nope", "[1]", json.dumps({"pdf": {"packing": "uint4", "max_column": "m"}})):
        with pytest.raises(ValueError):
            P.read_packing(bad)
    with pytest.raises(ValueError, match="packing"):
        P.pack_pdf(np.ones((2, 3)), "uint4")


# --------------------------------------------------------------------------- predict() output


class StandIn:
    """An Ensemble stand-in: PDFs from the E(B-V) column (ebv -> a Gaussian centred there)."""

    def __call__(self, images: np.ndarray, ebv: np.ndarray) -> np.ndarray:
        from scipy.special import ndtr

        mu = 0.02 + np.asarray(ebv, np.float64) * 3.0
        p = np.diff(ndtr((BINS.edges[None, :] - mu[:, None]) / 0.01), axis=1)
        return (p / p.sum(1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    n = 40
    rng = np.random.default_rng(3)
    img = rng.normal(0, 1, (n, 64, 64, 5)).astype(np.float32)
    img[5, 3, 3, 0] = np.nan  # bad input rows
    ebv = rng.uniform(0, 0.1, n).astype(np.float32)
    ebv[17] = np.nan
    path = tmp_path_factory.mktemp("pack") / "cat.parquet"
    cols = {"objID": np.arange(n, dtype=np.int64), "ebv": ebv, "image": img}
    write_table(pa.table({k: to_arrow(v) for k, v in cols.items()}), str(path))
    return path


def run_predict(catalog: Path, out: Path, pdf_dtype: str) -> None:
    from photoz_tools.model import bundle as bundlemod
    from photoz_tools.model.predict import predict

    b = bundlemod.Bundle(path=catalog.parent, manifest={}, bins=BINS, hash="0" * 16)
    predict(catalog, out, b, pdf_dtype=pdf_dtype, ensemble=StandIn(), batch_size=16)


@pytest.mark.parametrize("ext", [".parquet", ".fits"])
def test_predict_writes_codes_max_and_names_the_packing(catalog, tmp_path, ext):
    packing = "uint8"
    out = tmp_path / f"z{ext}"
    run_predict(catalog, out, packing)
    with open_table(str(out)) as r:
        spec = P.read_packing(r.metadata[P.PDF_PACKING_KEY])
    assert spec["pdf"]["packing"] == packing and spec["pdf"]["max_column"] == "pdf_max"
    t = read_table(str(out))
    from photoz_tools.tables import column_array

    codes = column_array(t, "pdf")
    pmax = column_array(t, "pdf_max")
    assert pmax.dtype == np.float32
    bad = np.zeros(len(t), bool)
    bad[[5, 17]] = True
    assert np.isnan(pmax[bad]).all() and np.isfinite(pmax[~bad]).all()
    assert (np.nanmax(codes[~bad], axis=1) == 255).all()
    # a null row restores to NaN: in Parquet its cell is null, in FITS (no null for integer
    # vector cells) pdf_max is NaN
    assert np.isnan(P.unpack_pdf(codes[bad], pmax[bad], packing)).all()
    if ext == ".parquet":  # nulls, not NaN, and uint8 cells
        assert t["pdf"].null_count == 2 and t["pdf_max"].null_count == 2
        assert t.schema.field("pdf").type.value_type == pa.uint8()
    ref = StandIn()(np.zeros((len(t), 1)), column_array(t, "ebv"))
    back = P.unpack_pdf(codes[~bad], pmax[~bad], packing)
    m = ref[~bad].max(axis=1, keepdims=True)
    tol = 1 / 255  # max/510, plus what renormalising moves
    assert (np.abs(back - ref[~bad]) <= m * tol).all()
    # the summaries come from the full-precision PDFs, not the codes
    np.testing.assert_allclose(column_array(t, "zphot")[~bad], P.zphot(ref[~bad], BINS), rtol=1e-6)


def test_predict_float32_has_no_packing_metadata(catalog, tmp_path):
    out = tmp_path / "f.parquet"
    run_predict(catalog, out, "float32")
    with open_table(str(out)) as r:
        assert P.PDF_PACKING_KEY not in r.metadata
        assert "pdf_max" not in r.column_names


def test_predict_refuses_unknown_pdf_dtype(catalog, tmp_path):
    from photoz_tools.errors import PzUsageError

    for bad in ("uint4", "uint8log"):  # uint8log: reported, not offered
        with pytest.raises(PzUsageError, match="uint8"):
            run_predict(catalog, tmp_path / "x.parquet", bad)


# --------------------------------------------------------------------------- pz-score restores


def predictions(pdf: np.ndarray, z: np.ndarray, packing: str | None, zphot: bool = True):
    """A predictions table as pz-predict writes it (summaries from the float PDFs)."""
    n = len(z)
    cols: dict[str, np.ndarray] = {"specObjID": np.arange(n, dtype=np.int64), "z": z}
    summ = P.summarize(pdf, BINS)
    if not zphot:
        summ.pop("zphot")
    cols.update(summ)
    meta = {"pz_bin_edges": BINS.to_json()}
    arrays = {k: to_arrow(np.asarray(v)) for k, v in cols.items()}
    if packing is None:
        arrays["pdf"] = to_arrow(pdf.astype(np.float32))
    else:
        codes, pmax = P.pack_pdf(pdf, packing)
        arrays["pdf"] = to_arrow(codes)
        arrays["pdf_max"] = to_arrow(pmax)
        meta[P.PDF_PACKING_KEY] = P.packing_metadata(packing)
    return pa.table(arrays), meta


def score_row(tmp_path: Path, name: str, pdf, z, packing, zphot: bool = True) -> dict:
    import photoz_tools

    t, meta = predictions(pdf, z, packing, zphot)
    path = tmp_path / f"{name}.parquet"
    write_table(t, str(path), metadata=meta)
    return photoz_tools.score(str(path)).to_pylist()[0]


@pytest.mark.parametrize("zphot", [True, False], ids=["zphot-column", "zphot-from-pdf"])
@pytest.mark.parametrize("packing", P.PDF_PACKINGS)
def test_score_on_packed_matches_float32(tmp_path, packing, zphot):
    pdf, z = gaussian_pdfs(3000, seed=4, outliers=30)
    ref = score_row(tmp_path, "f32", pdf, z, None, zphot)
    got = score_row(tmp_path, packing, pdf, z, packing, zphot)
    assert got["N"] == ref["N"] == 3000
    for k in ("bias", "sigma_mad", "eta"):
        assert got[k] == pytest.approx(ref[k], rel=1e-3, abs=2e-6), k
    assert got["crps"] == pytest.approx(ref["crps"], rel=2e-3)
    assert got["pit_ks"] == pytest.approx(ref["pit_ks"], abs=0.01)
    if not zphot:  # zphot from the restored PDF, not from the codes
        assert got["bias"] == pytest.approx(ref["bias"], abs=1e-5)


def test_score_pit_crps_use_restored_pdfs(tmp_path):
    """pz-score's per-galaxy PIT/CRPS equal those of unpack_pdf's PDFs (codes are not PDFs)."""
    from photoz_tools import scoring

    pdf, z = gaussian_pdfs(500, seed=5, outliers=10)
    t, meta = predictions(pdf, z, "uint8")
    path = tmp_path / "u8.parquet"
    write_table(t, str(path), metadata=meta)
    data = scoring.collect(str(path))
    est = data.estimators[0]
    codes, pmax = P.pack_pdf(pdf, "uint8")
    pit, crps = P.pit_crps(P.unpack_pdf(codes, pmax, "uint8"), BINS, z)
    np.testing.assert_allclose(est.pit, pit, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(est.crps, crps, rtol=1e-6)
    # the far outliers lie where uint8 keeps no probability: PIT exactly 0 or 1
    assert np.isin(est.pit[:10], (0.0, 1.0)).all()


def test_score_packed_null_rows_are_excluded(tmp_path):
    import photoz_tools

    pdf, z = gaussian_pdfs(300, seed=6)
    t, meta = predictions(pdf, z, "uint8")
    mask = np.zeros(300, bool)
    mask[[0, 99]] = True
    codes = t["pdf"].combine_chunks()
    codes = pa.FixedSizeListArray.from_arrays(codes.values, 180, mask=pa.array(mask))
    zp = pa.array(t["zphot"].to_numpy(), mask=mask)
    pm = pa.array(t["pdf_max"].to_numpy(), mask=mask)
    for name, col in (("pdf", codes), ("zphot", zp), ("pdf_max", pm)):
        t = t.set_column(t.schema.get_field_index(name), name, col)
    path = tmp_path / "n.parquet"
    write_table(t, str(path), metadata=meta)
    row = photoz_tools.score(str(path)).to_pylist()[0]
    assert row["N"] == 298 and np.isfinite(row["crps"])


def test_score_refuses_codes_without_metadata(tmp_path):
    from photoz_tools.errors import PzError

    pdf, z = gaussian_pdfs(50, seed=7)
    t, _ = predictions(pdf, z, "uint8")
    path = tmp_path / "nometa.parquet"
    write_table(t, str(path), metadata={"pz_bin_edges": BINS.to_json()})
    import photoz_tools

    with pytest.raises(PzError, match="pz_pdf_packing"):
        photoz_tools.score(str(path))
