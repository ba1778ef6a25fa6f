"""pz-pack --flag-mask, --stratify/--no-stratify and --format, checked by what they do on a
small pz-cutout-like table."""

from __future__ import annotations

import io

import numpy as np
import pytest

from .conftest import write_table

N = 100
# pz-cutout's bits: 1 edge, 2 missing band, 4 NaN input, 8 centre off frame, 16 fetch failed
FLAGS = np.array([0, 1, 2, 8, 16, 1 | 8, 1, 0, 4, 0] * (N // 10), dtype=np.int32)


@pytest.fixture(scope="module")
def cutouts(tmp_path_factory):
    rng = np.random.default_rng(8)
    path = tmp_path_factory.mktemp("pack") / "cutouts.parquet"
    ids = 10_000 + rng.permutation(N).astype(np.int64)
    z = rng.uniform(0.01, 0.39, N)
    images = rng.normal(0, 0.05, (N, 64, 64, 5)).astype(np.float32)
    images[:, 0, 0, 0] = ids  # which galaxy each image is
    write_table(
        path,
        {
            "objID": ids,
            "z": z,
            "ebv": rng.uniform(0.0, 0.1, N),
            "image": images,
            "n_frames": np.ones((N, 5), dtype=np.int16),
            "cutout_flags": FLAGS,
        },
    )
    return {"path": path, "ids": ids, "z": z}


def _read(path_or_bytes):
    from photoz_tools import tables

    src = path_or_bytes
    if isinstance(src, bytes):
        from astropy.table import Table

        t = Table.read(io.BytesIO(src), format="fits")
        return {name: np.asarray(t[name]) for name in t.colnames}
    t = tables.read_table(src)
    return {name: tables.column_array(t, name) for name in t.column_names}


def _pack(pz, cutouts, tmp_path, *args, name="d.parquet"):
    out = tmp_path / name
    r = pz("pz-pack", str(cutouts["path"]), "-o", str(out), "-q", *args)
    assert r.returncode == 0, r.stderr.decode()
    return _read(out)


def test_flag_mask_picks_the_bits_that_make_a_row_bad(pz, cutouts, tmp_path):
    by_id = dict(zip(cutouts["ids"].tolist(), FLAGS.tolist(), strict=True))
    default = _pack(pz, cutouts, tmp_path, name="all.parquet")
    assert sorted(default["objID"].tolist()) == sorted(i for i, f in by_id.items() if f == 0)
    edge_ok = _pack(pz, cutouts, tmp_path, "--flag-mask", "30", name="30.parquet")
    assert sorted(edge_ok["objID"].tolist()) == sorted(i for i, f in by_id.items() if f & 30 == 0)
    assert {by_id[i] for i in edge_ok["objID"].tolist()} == {0, 1}
    # --bad flag: every row kept, bit 2 (pz-cutout flag) exactly where flags & mask
    flagged = _pack(pz, cutouts, tmp_path, "--bad", "flag", "--flag-mask", "8", name="f.parquet")
    assert len(flagged["objID"]) == N
    got = {
        i: int(p) & 2 for i, p in zip(flagged["objID"].tolist(), flagged["pack_flags"], strict=True)
    }
    assert got == {i: 2 if f & 8 else 0 for i, f in by_id.items()}


def _fold_counts(d, k=5):
    """Counts of each fold in each z quintile (rows sorted by z)."""
    order = np.argsort(d["z"], kind="stable")
    fold = np.asarray(d["fold"])[order]
    return np.array([np.bincount(q, minlength=k) for q in np.array_split(fold, k)])


def test_stratify_gives_every_fold_the_same_z_distribution(pz, cutouts, tmp_path):
    args = ["--folds", "5", "--seed", "3", "--bad", "flag"]
    strat = _pack(pz, cutouts, tmp_path, *args, "--stratify", name="s.parquet")
    assert (_fold_counts(strat) == N // 25).all()  # 20 rows per quintile: 4 of each fold
    plain = _pack(pz, cutouts, tmp_path, *args, "--no-stratify", name="p.parquet")
    counts = _fold_counts(plain)
    assert (counts.sum(axis=0) == N // 5).all()  # folds still balanced overall ...
    assert not (counts == N // 25).all()  # ... but not within each z range
    # the default with a z column is stratified
    default = _pack(pz, cutouts, tmp_path, *args, name="d.parquet")
    assert dict(zip(default["objID"].tolist(), default["fold"].tolist(), strict=True)) == dict(
        zip(strat["objID"].tolist(), strat["fold"].tolist(), strict=True)
    )


def test_format_fits_on_stdout(pz, cutouts, tmp_path):
    ref = _pack(pz, cutouts, tmp_path, "--bad", "flag", "--keep-order")
    r = pz(
        "pz-pack", str(cutouts["path"]), "--bad", "flag", "--keep-order", "--format", "fits", "-q"
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout[:6] == b"SIMPLE"
    got = _read(r.stdout)
    assert got["objID"].tolist() == ref["objID"].tolist() == cutouts["ids"].tolist()
    np.testing.assert_array_equal(got["image"], ref["image"])
    assert got["fold"].tolist() == ref["fold"].tolist()
    # text formats cannot hold images: one line naming the column, nothing on stdout
    r = pz("pz-pack", str(cutouts["path"]), "--format", "ecsv", "-q")
    assert r.returncode == 2 and r.stdout == b"" and b"'image'" in r.stderr
    assert r.stderr.decode().count("\n") == 1
    r = pz("pz-pack", str(cutouts["path"]), "--format", "nosuch", "-q")
    assert r.returncode == 2 and b"--format" in r.stderr
