"""pz-pack on labels that cannot be right (issue 14): ebv < 0 or NaN, z missing or impossible,
columns of the wrong type, no z at all. Flagged or dropped with a count, or refused by name."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photoz_tools import tables
from photoz_tools.dataset import BAD_EBV, BAD_Z, FLAG_NAMES, NONFINITE, pack
from photoz_tools.errors import PzError, PzUsageError

N = 24
EBV, Z = FLAG_NAMES[BAD_EBV], FLAG_NAMES[BAD_Z]


def npz_with(tmp_path, synth, **edits) -> tuple[str, np.ndarray]:
    lab = synth.labels(N)
    for name, (rows, value) in edits.items():
        lab[name][rows] = value
    path = tmp_path / "s.npz"
    np.savez(path, cube=synth.cube(N), labels=lab)
    return str(path), lab


def flags_by_id(path, id_column: str = "specObjID") -> dict[int, int]:
    t = pq.read_table(path, columns=[id_column, "pack_flags"]).to_pylist()
    return {r[id_column]: r["pack_flags"] for r in t}


def test_bad_ebv_and_z_dropped_with_counts(tmp_path, synth):
    path, lab = npz_with(
        tmp_path, synth, EBV=([1, 2, 3], [-0.02, np.nan, np.inf]), z=([4, 5], [np.nan, 99.0])
    )
    s = pack(path, tmp_path / "d.parquet", validation=0)
    assert s.bad[EBV] == 3 and s.bad[Z] == 2 and s.rows == N - 5
    kept = set(pq.read_table(tmp_path / "d.parquet")["specObjID"].to_pylist())
    assert not kept & {int(lab["specObjID"][i]) for i in range(1, 6)}


def test_bad_ebv_and_z_flagged_per_row(tmp_path, synth):
    path, lab = npz_with(tmp_path, synth, EBV=([0, 7], [-1.0, np.nan]), z=([7, 9], [np.nan, -3]))
    s = pack(path, tmp_path / "d.parquet", validation=0, bad="flag")
    assert s.rows == N and s.bad == {EBV: 2, Z: 2}
    f = flags_by_id(tmp_path / "d.parquet")
    ids = lab["specObjID"]
    assert f[int(ids[0])] == BAD_EBV and f[int(ids[7])] == BAD_EBV | BAD_Z
    assert f[int(ids[9])] == BAD_Z and sum(v != 0 for v in f.values()) == 3


def test_zero_ebv_and_slightly_negative_z_are_fine(tmp_path, synth):
    path, _ = npz_with(tmp_path, synth, EBV=([0, 1], [0.0, 0.0]), z=([2], [-0.003]))
    s = pack(path, tmp_path / "d.parquet", validation=0)
    assert s.rows == N and not s.bad


def test_a_z_label_that_is_not_a_redshift_is_refused(tmp_path, synth):
    path, _ = npz_with(tmp_path, synth)
    with pytest.raises(PzError) as err:  # ra renamed to z, the real z dropped
        pack(path, tmp_path / "d.parquet", label_map={"z": "", "ra": "z"})
    msg = str(err.value)
    assert "s.npz: column 'z' does not hold redshifts" in msg and "--label-map" in msg
    assert "\n" not in msg and not (tmp_path / "d.parquet").exists()


def test_every_row_bad_is_a_failure_that_says_why(tmp_path, synth):
    path, _ = npz_with(tmp_path, synth, EBV=(slice(None), -1.0))
    with pytest.raises(PzError, match=rf"no rows left to pack .*{N} {EBV}"):
        pack(path, tmp_path / "d.parquet")
    assert not (tmp_path / "d.parquet").exists()


def test_nan_validation_is_a_usage_error(tmp_path, synth):
    path, _ = npz_with(tmp_path, synth)
    with pytest.raises(PzUsageError, match="--validation"):
        pack(path, tmp_path / "d.parquet", validation=float("nan"))


# --------------------------------------------------------------------------- tables


def cutouts(tmp_path, synth, n: int = N, **columns) -> str:
    img = synth.cube(n)
    img[2, 1, 1, 0] = np.nan
    t = {"objID": np.arange(n, dtype=np.int64) + 10**17, "image": img, **columns}
    path = tmp_path / "c.parquet"
    tables.write_table(pa.table({k: tables.to_arrow(np.asarray(v)) for k, v in t.items()}), path)
    return str(path)


def test_cutouts_without_z_and_no_catalogue_are_said(tmp_path, synth):
    notes: list[str] = []
    src = cutouts(tmp_path, synth, ebv=np.full(N, 0.03))
    s = pack(src, tmp_path / "d.parquet", validation=0, warn=notes.append)
    assert s.rows == N - 1 and s.bad == {FLAG_NAMES[NONFINITE]: 1}
    assert len(notes) == 1 and "c.parquet: no column 'z'" in notes[0]
    assert "--catalog" in notes[0] and s.notes == notes


def test_catalogue_without_z_is_said_with_the_label_map_hint(tmp_path, synth):
    notes: list[str] = []
    src = cutouts(tmp_path, synth)
    cat = tmp_path / "cat.parquet"
    ids = np.arange(N, dtype=np.int64) + 10**17
    tables.write_table(pa.table({"objID": ids, "redshift": np.full(N, 0.1)}), cat)
    pack(src, tmp_path / "d.parquet", catalog=cat, validation=0, warn=notes.append)
    assert any("no column 'z'" in m and "--label-map OLD=z" in m for m in notes)


def test_catalogue_nan_z_and_negative_ebv_flagged(tmp_path, synth):
    src = cutouts(tmp_path, synth)
    ids = np.arange(N, dtype=np.int64) + 10**17
    z = np.full(N, 0.1)
    z[[3, 4]] = np.nan
    ebv = np.full(N, 0.02)
    ebv[5] = -0.5
    cat = tmp_path / "cat.fits"
    tables.write_table(pa.table({"objID": ids, "z": z, "ebv": ebv}), cat)
    s = pack(src, tmp_path / "d.parquet", catalog=cat, validation=0, bad="flag")
    assert s.bad == {FLAG_NAMES[NONFINITE]: 1, EBV: 1, Z: 2}
    f = flags_by_id(tmp_path / "d.parquet", "objID")
    assert f[int(ids[3])] == BAD_Z and f[int(ids[5])] == BAD_EBV and f[int(ids[2])] == NONFINITE


def test_string_ebv_column_is_refused_by_file_and_column(tmp_path, synth):
    src = cutouts(tmp_path, synth, z=np.full(N, 0.1))
    ids = np.arange(N, dtype=np.int64) + 10**17
    cat = tmp_path / "cat.parquet"
    tables.write_table(pa.table({"objID": ids, "ebv": pa.array(["0.1"] * N)}), cat)
    with pytest.raises(PzError, match=r"cat\.parquet: column 'ebv' holds string values"):
        pack(src, tmp_path / "d.parquet", catalog=cat)
    assert not (tmp_path / "d.parquet").exists()


@pytest.mark.parametrize("ext", ["parquet", "fits"])
@pytest.mark.parametrize(
    "shape, dtype, ok",
    [
        ((32, 32, 5), np.float32, False),
        ((64, 64, 4), np.float32, False),
        ((64, 64, 5), np.float64, True),  # cast, as pz-train and pz-predict do
        ((64, 64, 5), np.int16, True),
    ],
)
def test_image_shapes_refused_by_name_and_dtypes_cast(tmp_path, ext, shape, dtype, ok):
    n = 4
    t = {
        "objID": np.arange(n, dtype=np.int64),
        "image": np.ones((n, *shape), dtype),
        "z": np.full(n, 0.1),
    }
    src = tmp_path / f"c.{ext}"
    tables.write_table(pa.table({k: tables.to_arrow(v) for k, v in t.items()}), src)
    out = tmp_path / "d.parquet"
    if ok:
        assert pack(src, out, validation=0).rows == n
        assert pq.read_schema(out).field("image").type.value_type == pa.float32()
        return
    with pytest.raises(PzError) as err:
        pack(src, out, validation=0)
    assert f"c.{ext}: column 'image' holds images of shape {shape}" in str(err.value)
    assert "(64, 64, 5)" in str(err.value) and not out.exists()


def test_text_cutout_flags_are_refused_by_name(tmp_path, synth):
    src = cutouts(tmp_path, synth, z=np.full(N, 0.1), cutout_flags=np.array(["0"] * N))
    with pytest.raises(PzError, match=r"c\.parquet: column 'cutout_flags' holds <U1 values"):
        pack(src, tmp_path / "d.parquet")


def test_a_catalogue_z_that_is_not_a_redshift_names_the_catalogue_row(tmp_path, synth):
    src = cutouts(tmp_path, synth)
    ids = np.arange(N, dtype=np.int64) + 10**17
    cat = tmp_path / "cat.parquet"
    z = np.full(N, 0.1)
    z[: N // 2 + 1] = 1e5  # catalogue rows 0..12 (reversed: image rows 23..11)
    tables.write_table(pa.table({"objID": ids[::-1].copy(), "z": z}), cat)
    with pytest.raises(PzError) as err:
        pack(src, tmp_path / "d.parquet", catalog=cat)
    assert f"cat.parquet: column 'z' does not hold redshifts: {N // 2 + 1} of {N}" in str(err.value)
    assert "(row 12: 100000)" in str(err.value)  # image row 11 is catalogue row 12
