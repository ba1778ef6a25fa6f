"""pz-predict --tta, --image-col and --ebv-col, checked against independent expectations: --tta
against np.rot90/np.flip applied to the input and predicted without TTA, the column options
against the same galaxies under the default names (with decoy columns of the default names)."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import dihedral, write_table

pytest.importorskip("keras")


def _read(path):
    from photoz_tools import tables

    t = tables.read_table(path)
    return {name: tables.column_array(t, name) for name in t.column_names}


def test_tta_averages_the_pdfs_of_the_8_rotations_and_flips(trained, pz, tmp_path):
    g = trained["data"]
    n = 3
    images, ebv = g["image"][:n], g["ebv"][:n]
    cat = write_table(
        tmp_path / "cat.parquet", {"objID": g["objID"][:n], "ebv": ebv, "image": images}
    )
    views = np.stack([v for img in images for v in dihedral(img)])  # (8n, 64, 64, 5)
    assert len({v.tobytes() for v in views[:8]}) == 8  # the galaxy is not symmetric
    aug = write_table(
        tmp_path / "views.parquet",
        {"objID": np.arange(8 * n, dtype=np.int64), "ebv": np.repeat(ebv, 8), "image": views},
    )
    model = ["-m", str(trained["bundle"]), "-q"]
    r = pz("pz-predict", *model, str(aug), "-o", str(tmp_path / "views_pred.parquet"))
    assert r.returncode == 0, r.stderr.decode()
    r = pz("pz-predict", *model, str(cat), "--tta", "-o", str(tmp_path / "tta.parquet"))
    assert r.returncode == 0, r.stderr.decode()
    r = pz("pz-predict", *model, str(cat), "-o", str(tmp_path / "plain.parquet"))
    assert r.returncode == 0, r.stderr.decode()
    per_view = _read(tmp_path / "views_pred.parquet")["pdf"].astype(np.float64).reshape(n, 8, -1)
    tta = _read(tmp_path / "tta.parquet")
    plain = _read(tmp_path / "plain.parquet")
    want = per_view.mean(axis=1)
    np.testing.assert_allclose(tta["pdf"], want, atol=2e-6)
    mid = (np.arange(180) + 0.5) * (0.4 / 180)
    np.testing.assert_allclose(tta["zphot"], want @ mid, atol=1e-5)
    # and it is not the plain prediction (the views do differ for this network)
    assert np.abs(plain["pdf"] - tta["pdf"]).max() > 1e-4
    np.testing.assert_allclose(plain["pdf"], per_view[:, 0], atol=2e-6)


def test_image_col_and_ebv_col_name_the_inputs(trained, pz, tmp_path):
    g = trained["data"]
    n = 5
    normal = write_table(
        tmp_path / "normal.parquet",
        {"objID": g["objID"][:n], "ebv": g["ebv"][:n], "image": g["image"][:n]},
    )
    renamed = write_table(
        tmp_path / "renamed.parquet",
        {
            "objID": g["objID"][:n],
            "EBV_SFD": g["ebv"][:n],
            "cube": g["image"][:n],
            # decoys under the default names: using them would change every prediction
            "ebv": np.full(n, 0.9, dtype=np.float32),
            "image": np.zeros((n, 64, 64, 5), dtype=np.float32),
        },
    )
    model = ["-m", str(trained["bundle"]), "-q"]
    r = pz("pz-predict", *model, str(normal), "-o", str(tmp_path / "a.parquet"))
    assert r.returncode == 0, r.stderr.decode()
    r = pz(
        "pz-predict",
        *model,
        str(renamed),
        "--image-col",
        "cube",
        "--ebv-col",
        "EBV_SFD",
        "-o",
        str(tmp_path / "b.parquet"),
    )
    assert r.returncode == 0, r.stderr.decode()
    a, b = _read(tmp_path / "a.parquet"), _read(tmp_path / "b.parquet")
    np.testing.assert_array_equal(a["pdf"], b["pdf"])
    assert b["objID"].tolist() == g["objID"][:n].tolist()
    # the decoys alone predict something else (so the check above has power)
    r = pz("pz-predict", *model, str(renamed), "-o", str(tmp_path / "c.parquet"))
    assert r.returncode == 0, r.stderr.decode()
    assert np.abs(_read(tmp_path / "c.parquet")["pdf"] - a["pdf"]).max() > 1e-4
    # a missing column is named
    r = pz(
        "pz-predict", *model, str(normal), "--image-col", "nope", "-o", str(tmp_path / "x.parquet")
    )
    assert r.returncode == 1 and b"nope" in r.stderr
    r = pz(
        "pz-predict", *model, str(normal), "--ebv-col", "E_BV", "-o", str(tmp_path / "x.parquet")
    )
    assert r.returncode == 1 and b"E_BV" in r.stderr
