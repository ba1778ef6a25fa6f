"""pz-pack end to end, as a user runs it: real files in tmp_path, the command as a subprocess."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photoz_tools import tables
from photoz_tools.errors import PzError, PzUsageError

N = 60


@pytest.fixture
def cutouts_and_catalog(tmp_path, synth):
    """pz-cutout-like table (shuffled, 5 ids unknown to the catalogue, one NaN image, one flagged
    row, one missing band) and a catalogue (FITS) with 8 galaxies that have no cutout."""
    rng = np.random.default_rng(5)
    lab = synth.labels(N + 8)
    cube = synth.cube(N + 8)
    order = rng.permutation(N)  # cutouts of galaxies 0..N-1, in another order
    objid = 10**17 + np.arange(N + 8, dtype=np.int64)
    objid_cut = objid[order].copy()
    objid_cut[:5] = 9 * 10**17 + np.arange(5)  # not in the catalogue
    img = cube[order].copy()
    img[10, 5, 5, 1] = np.nan
    n_frames = np.ones((N, 5), np.int16)
    n_frames[11, 4] = 0
    flags = np.zeros(N, np.int32)
    flags[12] = 1
    cut = pa.table(
        {
            "objID": tables.to_arrow(objid_cut),
            "image": tables.to_arrow(img),
            "n_frames": tables.to_arrow(n_frames),
            "cutout_flags": tables.to_arrow(flags),
            "flags": tables.to_arrow(np.full(N, 1 << 40, np.int64)),  # SDSS photo flags
        }
    )
    tables.write_table(cut, tmp_path / "cutouts.parquet")
    cat_rows = rng.permutation(N + 8)
    cat = pa.table(
        {
            "objID": objid[cat_rows],
            "z": lab["z"][cat_rows],
            "ebv": lab["EBV"][cat_rows],
            "ra": lab["ra"][cat_rows],
            "dered_petro_r": lab["dered_petro_r"][cat_rows],
            "primtarget": lab["primtarget"][cat_rows],
        }
    )
    tables.write_table(cat, tmp_path / "mgs.fits")
    truth = {int(o): float(z) for o, z in zip(objid, lab["z"], strict=True)}
    return tmp_path / "cutouts.parquet", tmp_path / "mgs.fits", objid_cut, img, truth


def run_ok(cli, *args, **kw):
    out = cli("pz-pack", *args, **kw)
    assert out.returncode == 0, out.stderr.decode()
    return out


def by_id(t: pa.Table, id_column: str) -> pa.Table:
    """The rows of a (shuffled) dataset in id order, to compare them with their source."""
    return t.take(pa.array(np.argsort(t.column(id_column).to_numpy(), kind="stable")))


def test_join_drops_bad_rows_and_counts(cli, cutouts_and_catalog, tmp_path):
    cut, cat, objid_cut, img, truth = cutouts_and_catalog
    out = run_ok(cli, str(cut), "--catalog", str(cat), "-o", str(tmp_path / "ds.parquet"))
    err = out.stderr.decode()
    t = by_id(pq.read_table(tmp_path / "ds.parquet"), "objID")
    bad = {10, 11, 12}
    want_rows = [i for i in range(5, N) if i not in bad]  # rows 0-4 have no catalogue row
    want_rows = sorted(want_rows, key=lambda i: objid_cut[i])
    assert t.column("objID").to_pylist() == objid_cut[want_rows].tolist()
    np.testing.assert_array_equal(tables.column_array(t, "image"), img[want_rows])
    assert np.allclose(t.column("z").to_numpy(), [truth[o] for o in objid_cut[want_rows]])
    assert {
        "z",
        "ebv",
        "ra",
        "n_frames",
        "cutout_flags",
        "flags",
        "fold",
        "split",
        "pack_flags",
    } <= set(t.column_names)
    assert t.column_names[0] == "objID" and t.column_names[-1] == "image"
    assert t.schema.field("fold").type == pa.int16() and t.schema.field("split").type == pa.string()
    fold = t.column("fold").to_numpy()
    split = np.array(t.column("split").to_pylist())
    assert ((split == "test") == (fold == 0)).all()
    assert (split == "validation").sum() == round(0.1 * (split != "test").sum())
    assert (t.column("pack_flags").to_numpy() == 0).all()
    assert "5 cutouts without a catalogue row, 13 catalogue rows without a cutout" in err
    assert "1 NaN/inf pixels" in err and "1 flagged by pz-cutout" in err
    assert "1 missing band" in err
    assert "dropped bad rows: " in err  # images, ebv and z alike (--bad flag keeps them)
    table_lines = [
        ln
        for ln in err.splitlines()
        if ln.split(":")[-1].split()[:1] in (["train"], ["validation"], ["test"])
    ]
    assert len(table_lines) == 3
    assert f"wrote {len(want_rows)} rows" in err
    meta = json.loads(t.schema.metadata[b"pz_pack"])
    assert meta["folds"] == 5 and meta["seed"] == 0 and meta["stratify_z"] is True
    assert b"pz_command" in t.schema.metadata


def test_bad_flag_keeps_rows_with_their_reasons(cli, cutouts_and_catalog, tmp_path):
    cut, cat, objid_cut, _, _ = cutouts_and_catalog
    err = run_ok(
        cli, str(cut), "-c", str(cat), "--bad", "flag", "-o", str(tmp_path / "ds.parquet")
    ).stderr.decode()
    assert "flagged bad rows in pack_flags: " in err
    t = pq.read_table(tmp_path / "ds.parquet", columns=["objID", "pack_flags"])
    flags = dict(
        zip(t.column("objID").to_pylist(), t.column("pack_flags").to_pylist(), strict=True)
    )
    assert len(flags) == N - 5
    assert flags[int(objid_cut[10])] == 1 and flags[int(objid_cut[11])] == 4
    assert flags[int(objid_cut[12])] == 2
    assert sum(v != 0 for v in flags.values()) == 3


def test_folds_do_not_depend_on_row_order_and_splits_options(cli, cutouts_and_catalog, tmp_path):
    cut, cat, *_ = cutouts_and_catalog
    rev = tables.read_table(cut)
    rev = rev.take(pa.array(np.arange(rev.num_rows)[::-1]))
    tables.write_table(rev, tmp_path / "rev.fits")  # FITS input too
    from photoz_tools.dataset import pack

    # the CLI runs are tested above; the source's order, to see it reversed
    pack(cut, tmp_path / "a.parquet", catalog=cat, keep_order=True)
    pack(tmp_path / "rev.fits", tmp_path / "b.parquet", catalog=cat, keep_order=True)
    a = pq.read_table(tmp_path / "a.parquet", columns=["objID", "fold"]).to_pylist()
    b = pq.read_table(tmp_path / "b.parquet", columns=["objID", "fold"]).to_pylist()
    assert sorted(map(tuple, (r.values() for r in a))) == sorted(
        map(tuple, (r.values() for r in b))
    )
    assert [r["objID"] for r in b] == [r["objID"] for r in a][::-1]
    run_ok(
        cli,
        str(cut),
        "-c",
        str(cat),
        "-k",
        "3",
        "--seed",
        "4",
        "--test-fold",
        "none",
        "--validation",
        "7",
        "-o",
        str(tmp_path / "c.parquet"),
    )
    c = pq.read_table(tmp_path / "c.parquet", columns=["fold", "split"])
    assert set(c.column("fold").to_pylist()) == {0, 1, 2}
    assert c.column("split").to_pylist().count("validation") == 7
    assert "test" not in c.column("split").to_pylist()


def test_stdin_and_stdout(cli, cutouts_and_catalog):
    cut, cat, *_ = cutouts_and_catalog
    out = run_ok(cli, "-", "-c", str(cat), input=cut.read_bytes())
    t = pq.read_table(io.BytesIO(out.stdout))
    assert t.num_rows == N - 8 and "fold" in t.column_names


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_mgs_cut_renames_and_fits_output(cli, sdss_npz, tmp_path, compressed):
    path, cube, labels = sdss_npz(n=N, compressed=compressed)
    with zipfile.ZipFile(path) as zf:
        assert (zf.getinfo("cube.npy").compress_type == zipfile.ZIP_DEFLATED) == compressed
    out = run_ok(cli, str(path), "--mgs-cut", "--batch-rows", "7", "-o", str(tmp_path / "ds.fits"))
    err = out.stderr.decode()
    keep = (labels["dered_petro_r"] <= 17.8) & (labels["z"] <= 0.4) & (labels["primtarget"] >= 64)
    assert f"MGS cut removed {N - keep.sum()} rows" in err
    assert "EBV->ebv" in err and "zphot->zphot_b16" in err
    t = by_id(tables.read_table(tmp_path / "ds.fits"), "specObjID")  # ids ascend in labels
    assert t.column_names[0] == "specObjID"
    assert t.column("specObjID").to_pylist() == labels["specObjID"][keep].tolist()
    np.testing.assert_array_equal(tables.column_array(t, "image"), cube[keep])
    np.testing.assert_allclose(t.column("ebv").to_numpy(), labels["EBV"][keep])
    assert {"zphot_b16", "mags", "fold", "split"} <= set(t.column_names)


def test_npz_label_map_and_example_format(cli, sdss_npz, tmp_path, synth):
    path, _, labels = sdss_npz(n=20)
    run_ok(
        cli,
        str(path),
        "--label-map",
        "zphot=zphot_beck,mags=",
        "--validation",
        "0",
        "-o",
        str(tmp_path / "a.parquet"),
    )
    names = pq.read_schema(tmp_path / "a.parquet").names
    assert "zphot_beck" in names and "mags" not in names and "zphot_b16" not in names
    ex = tmp_path / "data_example.npz"
    np.savez(
        ex,
        data=synth.cube(12),
        z=np.linspace(0.01, 0.3, 12)[:, None],
        ebv=np.full((12, 1), 0.03, np.float32),
    )
    run_ok(cli, str(ex), "-o", str(tmp_path / "b.parquet"))
    t = pq.read_table(tmp_path / "b.parquet")
    assert sorted(t.column("id").to_pylist()) == list(range(12))
    assert t.column("z").type == pa.float64() and t.num_rows == 12


def test_row_groups_are_sized_for_streaming(tmp_path, synth):
    n = 1000  # ~82 MB of images: more than one ~64 MB row group
    np.savez(
        tmp_path / "big.npz", cube=np.zeros((n, 64, 64, 5), np.float32) + 1, labels=synth.labels(n)
    )
    from photoz_tools.dataset import pack

    pack(tmp_path / "big.npz", tmp_path / "big.parquet", validation=0)
    md = pq.ParquetFile(tmp_path / "big.parquet").metadata
    sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    assert sum(sizes) == n and len(sizes) >= 2 and max(sizes) <= 1024


@pytest.mark.parametrize(
    "make, args, code, message",
    [
        ("dup", [], 1, "appears more than once"),
        ("ok", ["--test-fold", "7"], 2, "--test-fold 7"),
    ],
)
def test_errors_are_one_line(cli, cutouts_and_catalog, tmp_path, make, args, code, message):
    cut, cat, *_ = cutouts_and_catalog
    if make == "dup":
        t = tables.read_table(cut)
        tables.write_table(pa.concat_tables([t, t.slice(3, 1)]), tmp_path / "dup.parquet")
        cut = tmp_path / "dup.parquet"
    out = cli("pz-pack", str(cut), "-c", str(cat), *args, "-o", str(tmp_path / "x.parquet"))
    err = out.stderr.decode()
    assert out.returncode == code, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize(
    "kw, error, message",
    [
        ({"label_map": {"nosuch": "x"}}, PzUsageError, "--label-map"),
        ({"id_column": "nosuch"}, PzError, "no id column"),
        ({"validation": 10_000}, PzUsageError, "--validation"),
        ({"folds": 1}, PzUsageError, "--folds"),
    ],
)
def test_api_errors_name_the_option(cutouts_and_catalog, tmp_path, kw, error, message):
    from photoz_tools.dataset import pack

    cut, cat, *_ = cutouts_and_catalog
    with pytest.raises(error, match=message):
        pack(cut, tmp_path / "x.parquet", catalog=cat, **kw)
    assert not (tmp_path / "x.parquet").exists()


def test_python_api(cutouts_and_catalog, tmp_path):
    import photoz_tools

    cut, cat, *_ = cutouts_and_catalog
    s = photoz_tools.pack(cut, tmp_path / "ds.parquet", catalog=cat, folds=4, validation=0)
    assert s.rows == N - 8 and s.no_catalog == 5 and s.no_cutout == 13
    assert sum(sum(v) for v in s.per_split_fold.values()) == s.rows
    assert s.per_split_fold["validation"] == [0, 0, 0, 0]


def test_list_labels_names_the_columns_for_label_map(cli, sdss_npz):
    path, _, _ = sdss_npz(n=5)
    out = run_ok(cli, str(path), "--list-labels", "--label-map", "mags=")
    rows = [ln.split("\t") for ln in out.stdout.decode().splitlines()]
    assert rows[0] == ["label", "dtype", "column"]
    got = {r[0]: (r[1], r[2]) for r in rows[1:]}
    assert got["EBV"] == ("float32", "ebv") and got["zphot"] == ("float32", "zphot_b16")
    assert got["mags"] == ("float32[5]", "-") and got["specObjID"] == ("int64", "specObjID")


def test_npz_ids_repeated_error_unless_floats_lost_precision(tmp_path):
    from photoz_tools.dataset import pack

    lab = np.zeros(10, dtype=[("specObjID", "<i8"), ("z", "<f8")])
    lab["specObjID"] = 7
    np.savez(tmp_path / "i.npz", cube=np.ones((10, 64, 64, 5), np.float32), labels=lab)
    with pytest.raises(PzError, match="appears more than once"):
        pack(tmp_path / "i.npz", tmp_path / "i.parquet")
    lab = lab.astype([("specObjID", "<f8"), ("z", "<f8")])
    lab["specObjID"] = 2.99e17 + np.arange(10)  # 1e17 + 1 is not a float64
    np.savez(tmp_path / "f.npz", cube=np.ones((10, 64, 64, 5), np.float32), labels=lab)
    notes = []
    s = pack(tmp_path / "f.npz", tmp_path / "f.parquet", validation=0, log=notes.append)
    assert s.rows == 10 and any("lost precision" in n for n in notes)
