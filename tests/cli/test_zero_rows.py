"""A zero-row table gives a zero-row output with the full schema (issue 13), for every command
that reads a table (pz-predict's is checked with a trained bundle elsewhere). A zero-row input
is not the same as every row being dropped: that stays a failure, with its count.

Commands run in-process (the `pz` fixture of conftest.py); nothing here reaches the network.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from photoz_tools import tables

IMAGE = (64, 64, 5)


def _write(path, n: int, **cols) -> str:
    tables.write_table(pa.table({k: tables.to_arrow(np.asarray(v)) for k, v in cols.items()}), path)
    return str(path)


def cutouts(path, n: int = 0, ids=None) -> str:
    rng = np.random.default_rng(0)
    return _write(
        path,
        n,
        objID=np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, np.int64),
        image=rng.normal(0, 0.05, (n, *IMAGE)).astype(np.float32),
        n_frames=np.ones((n, 5), np.int16),
        cutout_flags=np.zeros(n, np.int32),
    )


def catalogue(path, n: int = 0) -> str:
    return _write(
        path,
        n,
        objID=np.arange(n, dtype=np.int64),
        z=np.full(n, 0.1),
        ebv=np.full(n, 0.02),
        ra=np.full(n, 150.0),
        dec=np.full(n, 2.0),
    )


# --------------------------------------------------------------------------- pz-cutout


@pytest.mark.parametrize("out", ["c.parquet", "c.fits"])
def test_cutout(pz, tmp_path, out):
    cat = catalogue(tmp_path / "cat.parquet")
    index = _write(
        tmp_path / "frames.parquet",
        1,
        run=[1000],
        rerun=["301"],
        camcol=[3],
        field=[42],
        ra_min=[149.98],
        ra_max=[150.02],
        dec_min=[1.985],
        dec_max=[2.015],
    )
    code, _, err = pz(
        "pz-cutout",
        cat,
        "--frame-index",
        index,
        "--sas-url",
        "http://127.0.0.1:9",  # never contacted: no row needs a frame
        "--cache",
        tmp_path / "cache",
        "-j",
        "1",
        "-o",
        tmp_path / out,
    )
    assert code == 0, err
    t = tables.read_table(str(tmp_path / out))
    assert t.num_rows == 0
    assert t.column_names == ["objID", "z", "ebv", "ra", "dec", "image", "n_frames", "cutout_flags"]
    assert t.schema.field("image").type.shape == list(IMAGE)


# --------------------------------------------------------------------------- pz-pack

PACKED = ["objID", "z", "ebv", "ra", "dec", "n_frames", "cutout_flags", "fold", "split"]


@pytest.mark.parametrize(
    "out, more",
    [("ds.parquet", []), ("ds.fits", []), ("ds.parquet", ["--keep-order"])],
)
def test_pack_with_a_catalogue(pz, tmp_path, out, more):
    cut = cutouts(tmp_path / "cut.parquet")
    cat = catalogue(tmp_path / "cat.fits", n=3)  # galaxies without cutouts: still zero rows
    code, _, err = pz("pz-pack", cut, "-c", cat, *more, "-o", tmp_path / out)
    assert code == 0, err
    assert "wrote 0 rows" in err
    t = tables.read_table(str(tmp_path / out))
    assert t.num_rows == 0
    assert t.column_names == [*PACKED, "pack_flags", "image"]
    assert t.schema.field("image").type.shape == list(IMAGE)
    assert json.loads(t.schema.metadata[b"pz_pack"])["folds"] == 5


def test_pack_without_a_catalogue_keeps_its_columns(pz, tmp_path):
    cut = _write(
        tmp_path / "cut.fits",
        0,
        objID=np.zeros(0, np.int64),
        z=np.zeros(0),
        ebv=np.zeros(0),
        image=np.zeros((0, *IMAGE), np.float32),
    )
    code, _, err = pz("pz-pack", cut, "-o", tmp_path / "ds.parquet")
    assert code == 0, err
    assert "no column 'z'" not in err  # the zero-row table has its z column
    t = tables.read_table(str(tmp_path / "ds.parquet"))
    assert t.num_rows == 0
    assert t.column_names == ["objID", "z", "ebv", "fold", "split", "pack_flags", "image"]


def _npz(path, n: int, layout: str) -> str:
    """The authors' sdss.npz (cube + a labels record array) or their example file (data as
    (N, 5, 64, 64) + plain z and ebv of shape (N, 1)), with n rows."""
    if layout == "sdss":
        labels = np.zeros(
            n, [("specObjID", "<i8"), ("z", "<f8"), ("EBV", "<f4"), ("mags", "<f4", 5)]
        )
        labels["specObjID"] = np.arange(n) + 7
        labels["z"] = 0.1
        np.savez(path, cube=np.full((n, *IMAGE), 0.01, np.float32), labels=labels)
    else:
        data = np.full((n, IMAGE[2], *IMAGE[:2]), 0.01, np.float32)
        np.savez(path, data=data, z=np.full((n, 1), 0.1), ebv=np.full((n, 1), 0.02))
    return str(path)


@pytest.mark.parametrize("layout", ["sdss", "example"])
@pytest.mark.parametrize("out", ["ds.parquet", "ds.fits"])
def test_pack_an_npz(pz, tmp_path, layout, out):
    """The npz reader yields one empty batch for a zero-row file, so the schema is the one two
    rows of the same layout give (it once failed with 'no rows to pack')."""
    code, _, err = pz(
        "pz-pack", _npz(tmp_path / "two.npz", 2, layout), "-o", tmp_path / "two.parquet"
    )
    assert code == 0, err
    code, _, err = pz("pz-pack", _npz(tmp_path / "zero.npz", 0, layout), "-o", tmp_path / out)
    assert code == 0, err
    assert "wrote 0 rows" in err
    t = tables.read_table(str(tmp_path / out))
    two = tables.read_table(str(tmp_path / "two.parquet"))
    assert t.num_rows == 0 and two.num_rows == 2
    assert t.column_names == two.column_names
    assert t.column_names[-4:] == ["fold", "split", "pack_flags", "image"]
    assert t.column_names[0] == ("specObjID" if layout == "sdss" else "id")
    for f in t.schema:  # FITS names a list's child 'item', Parquet 'element': compare the rest
        g = two.schema.field(f.name).type
        assert str(f.type).replace("item", "element") == str(g).replace("item", "element")
    assert t.schema.field("image").type.shape == list(IMAGE)
    assert json.loads(t.schema.metadata[b"pz_pack"])["folds"] == 5


def test_pack_with_every_row_dropped_is_still_a_failure(pz, tmp_path):
    cut = cutouts(tmp_path / "cut.parquet", n=2, ids=[90, 91])  # no catalogue row for either
    cat = catalogue(tmp_path / "cat.parquet", n=3)
    code, _, err = pz("pz-pack", cut, "-c", cat, "-o", tmp_path / "ds.parquet")
    assert code == 1
    assert "no rows left to pack (2 image rows, 2 without a catalogue row)" in err
    assert not (tmp_path / "ds.parquet").exists()


# --------------------------------------------------------------------------- pz-score


def test_score_gives_n_0_and_every_column(pz, tmp_path):
    pdf = tables.to_arrow(np.zeros((1, 180), np.float32)).slice(0, 0)
    pred = tmp_path / "pred.parquet"
    tables.write_table(
        pa.table(
            {
                "objID": pa.array([], pa.int64()),
                "z": pa.array([], pa.float64()),
                "zphot": pa.array([], pa.float64()),
                "zphot_b16": pa.array([], pa.float64()),
                "pdf": pdf,
            }
        ),
        str(pred),
    )
    out = tmp_path / "s.parquet"
    code, stdout, err = pz("pz-score", pred, "--zphot", "zphot,zphot_b16", "-o", out)
    assert code == 0, err
    assert "the table has no rows" in err and "N = 0" in err
    t = tables.read_table(str(out))
    assert t.column("estimator").to_pylist() == ["zphot", "zphot_b16"]
    assert t.column("N").to_pylist() == [0, 0]
    for c in ("bias", "sigma_mad", "eta", "crps", "pit_ks", "pit_cvm", "width68"):
        assert all(np.isnan(t.column(c).to_numpy())), c
    assert t.column("N_excluded").to_pylist() == [0, 0]
    assert json.loads(t.schema.metadata[b"pz_score_dropped"]) == {}
    assert "zphot_b16" in stdout


def test_score_joined_to_a_truth_table(pz, tmp_path):
    """Zero predictions joined to a catalogue: nothing to match is not 'no id matches'."""
    pred = _write(tmp_path / "p.csv", 0, objID=np.zeros(0, np.int64), zphot=np.zeros(0))
    cat = catalogue(tmp_path / "cat.fits", n=3)
    code, _, err = pz("pz-score", pred, "--truth-table", cat, "-o", tmp_path / "s.csv")
    assert code == 0, err
    assert (tmp_path / "s.csv").read_text().splitlines()[1].startswith("zphot,0,nan")
