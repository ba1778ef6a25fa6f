"""predict_frame per partition of a HATS catalogue through LSDB (issue 11): made with
lsdb.from_dataframe, opened with lsdb.open_catalog, predicted with map_partitions, written with
LSDB's own write_catalog and read back; equal to predict_arrays for the same galaxies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from .conftest import galaxies

lsdb = pytest.importorskip("lsdb")


def _catalogue(n: int, seed: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    g = galaxies(n, seed)
    rng = np.random.default_rng(seed + 100)
    images = g["image"].copy()
    ebv = g["ebv"].copy()
    images[3, 10, 10, 2] = np.nan  # a bad pixel and a missing E(B-V): null predictions
    ebv[5] = np.nan
    df = pd.DataFrame(
        {
            "objID": g["objID"],
            "ra": rng.uniform(150.0, 152.0, n),
            "dec": rng.uniform(1.0, 3.0, n),
            "ebv": ebv,
            "image": [im.reshape(-1) for im in images],  # a flat float32 list per row
        }
    )
    return df, {"objID": g["objID"], "images": images, "ebv": ebv}


def test_lsdb_map_partitions_predict(tmp_path, tiny_bundle, monkeypatch):
    import dask

    from photoz_tools import pdf as pdfcore
    from photoz_tools.model import predict as pr
    from photoz_tools.model import predict_partitions
    from photoz_tools.model.predict import predict_arrays
    from photoz_tools.model.predict_frame import bundle_bins, frame_meta, predict_frame

    n = 48
    df, g = _catalogue(n, seed=7)
    bundle = str(tiny_bundle)
    built = []  # the ensemble is built once per process, not per partition

    class CountingEnsemble(pr.Ensemble):
        def __init__(self, *a, **k):
            built.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(predict_partitions, "_LOADED", {})
    monkeypatch.setattr(pr, "Ensemble", CountingEnsemble)
    with dask.config.set(scheduler="synchronous"):
        cat = lsdb.from_dataframe(
            df,
            catalog_name="gals",
            ra_column="ra",
            dec_column="dec",
            lowest_order=2,
            highest_order=8,
            partition_rows=16,
        )
        assert 1 < len(cat.get_healpix_pixels()) < 12
        cat.write_catalog(tmp_path / "gals", progress_bar=False)

        opened = lsdb.open_catalog(tmp_path / "gals")
        meta = frame_meta(opened.meta, bundle_bins(bundle).n)
        pred = opened.map_partitions(lambda part: predict_frame(part, bundle), meta=meta)
        pred.write_catalog(tmp_path / "zphot", catalog_name="zphot", progress_bar=False)
        back = lsdb.open_catalog(tmp_path / "zphot").compute()
    assert len(built) == 1

    assert "image" not in back.columns
    assert sorted(back["objID"].tolist()) == sorted(g["objID"].tolist())  # each exactly once
    back = back.set_index("objID").loc[g["objID"]]

    bins = bundle_bins(bundle)
    bad = np.zeros(n, bool)
    bad[[3, 5]] = True
    p = predict_arrays(
        bundle, np.where(bad[:, None, None, None], 0, g["images"]), np.where(bad, 0, g["ebv"])
    )
    want = pdfcore.summarize(p, bins)
    for c in pdfcore.SUMMARY_COLUMNS[:-1]:
        got = back[c].to_numpy(dtype=np.float64, na_value=np.nan)
        assert np.isnan(got[bad]).all(), c
        assert np.allclose(got[~bad], want[c][~bad], atol=1e-5), c
    flags = back["pz_flags"].to_numpy()
    assert (flags[bad] == pdfcore.FLAG_BAD_INPUT).all()
    assert (flags[~bad] == want["pz_flags"][~bad]).all()
    pdfs = back["pdf"]
    assert pdfs.isna().to_numpy()[bad].all()
    got_p = np.stack([np.asarray(v, np.float32) for v in pdfs.to_numpy()[~bad]])
    assert got_p.shape == (n - 2, bins.n)
    assert np.allclose(got_p, p[~bad], atol=1e-5)

    # pz-predict's own folder mode on the same collection: its output is a HATS catalogue too
    # (properties, partition_info, _common_metadata), read by LSDB, margins left out
    from photoz_tools import partitions

    out = tmp_path / "cli_out"
    s = predict_partitions.predict_partitioned(tmp_path / "gals", out, bundle)
    assert not s.failed and s.done == len(cat.get_healpix_pixels())
    assert (out / "collection.properties").is_file() and not (out / "gals_5arcs").exists()
    with dask.config.set(scheduler="synchronous"):
        ours = lsdb.open_catalog(out)
        assert ours.get_healpix_pixels() == opened.get_healpix_pixels()
        ours = ours.compute().set_index("objID").loc[g["objID"]]
    assert ours.index.is_unique and "image" not in ours.columns
    np.testing.assert_allclose(
        ours["zphot"].to_numpy(np.float64, na_value=np.nan),
        back["zphot"].to_numpy(np.float64, na_value=np.nan),
        atol=1e-6,
    )
    props = out / "gals" / "hats.properties"
    assert "hats_nrows=48" in props.read_text() and "photoz-tools" in props.read_text()
    made = props.stat().st_mtime_ns
    again = predict_partitions.predict_partitioned(tmp_path / "gals", out, bundle)
    assert again.up_to_date == s.done and props.stat().st_mtime_ns == made  # nothing rewritten
    assert not partitions.finish_hats(tmp_path / "gals", out, "other-key", again)


def test_predict_frame_refuses_wrong_image_shape(tiny_bundle):
    from photoz_tools.errors import PzError
    from photoz_tools.model.predict_frame import predict_frame

    df = pd.DataFrame({"ebv": [0.02], "image": [np.zeros(100, np.float32)]})
    with pytest.raises(PzError, match=r"column 'image'.*\(100,\)"):
        predict_frame(df, str(tiny_bundle))


def test_image_cells_take_flat_lists_and_refuse_other_shapes():
    from photoz_tools.errors import PzError
    from photoz_tools.model.data import image_cells

    cube = np.arange(2 * 64 * 64 * 5, dtype=np.float32).reshape(2, 64, 64, 5)
    assert image_cells(cube, "image", "t.parquet") is cube
    flat = image_cells(cube.reshape(2, -1), "image", "t.parquet")
    assert np.array_equal(flat, cube)  # row-major (y, x, band), as numpy and LSDB write it
    with pytest.raises(PzError) as e:
        image_cells(np.zeros((3, 32, 32, 5), np.float32), "cutout", "t.parquet")
    assert str(e.value) == (
        "t.parquet: column 'cutout' holds cells of shape (32, 32, 5); the model takes "
        "(64, 64, 5) images (or 20480 values, 64x64 ugriz)"
    )
