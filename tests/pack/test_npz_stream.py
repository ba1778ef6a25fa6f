"""The .npz streaming reader: rows read chunk by chunk from stored and deflated zip members."""

from __future__ import annotations

import tracemalloc
import zipfile

import numpy as np
import pytest

from photoz_tools.dataset import NpyMember, NpzSource
from photoz_tools.errors import PzError


@pytest.mark.parametrize("compressed", [False, True])
def test_member_rows_in_chunks_equal_the_array(sdss_npz, compressed):
    path, cube, labels = sdss_npz(n=37, compressed=compressed)
    with zipfile.ZipFile(path) as zf:
        kind = zf.getinfo("cube.npy").compress_type
        assert kind == (zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED)
        m = NpyMember(zf, "cube.npy", str(path))
        assert m.shape == cube.shape and m.dtype == np.float32
        chunks = list(m.iter_chunks(10))
        assert [len(c) for c in chunks] == [10, 10, 10, 7]
        np.testing.assert_array_equal(np.concatenate(chunks), cube)
        m.close()
        lab = NpyMember(zf, "labels.npy", str(path))
        got = np.concatenate(list(lab.iter_chunks(8)))
        assert got.dtype.names == labels.dtype.names
        np.testing.assert_array_equal(got, labels)


@pytest.mark.parametrize("compressed", [False, True])
def test_reading_the_cube_keeps_memory_bounded_by_the_chunk(tmp_path, compressed):
    n = 100  # 8.2 MB of images; a chunk of 4 rows is 0.33 MB
    cube = np.round(np.random.default_rng(0).normal(0, 1, (n, 64, 64, 5)), 1).astype(np.float32)
    path = tmp_path / "big.npz"
    (np.savez_compressed if compressed else np.savez)(path, cube=cube)
    total = 0.0
    del cube
    with zipfile.ZipFile(path) as zf:
        m = NpyMember(zf, "cube.npy", str(path))
        tracemalloc.start()
        for chunk in m.iter_chunks(4):
            total += float(chunk[:, 0, 0, 0].sum())
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    chunk_bytes = 4 * 64 * 64 * 5 * 4
    # a few chunk-sized buffers (zip inflate, bytes, array), never the cube
    assert peak < 8 * chunk_bytes, f"peak {peak / 1e6:.1f} MB while streaming an 8 MB cube"


def test_big_endian_and_v2_header_members(tmp_path):
    from numpy.lib import format as npformat

    labels = np.arange(12, dtype=">f8").reshape(6, 2)
    path = tmp_path / "be.npz"
    with zipfile.ZipFile(path, "w") as zf, zf.open("z.npy", "w") as fp:
        npformat.write_array(fp, labels, version=(2, 0))
    with zipfile.ZipFile(path) as zf:
        m = NpyMember(zf, "z.npy", str(path))
        got = m.read(4)
        assert got.dtype.isnative
        np.testing.assert_array_equal(got, labels[:4])


def test_source_never_calls_np_load(sdss_npz, monkeypatch):
    path, cube, labels = sdss_npz(n=20)

    def boom(*a, **k):
        raise AssertionError("np.load would read the whole cube")

    monkeypatch.setattr(np, "load", boom)
    src = NpzSource(path)
    assert src.rows == 20
    assert "ebv" in src.column_names and "zphot_b16" in src.column_names
    imgs, cols = zip(*src.iter_batches(6), strict=True)
    np.testing.assert_array_equal(np.concatenate(imgs), cube)
    np.testing.assert_array_equal(np.concatenate([c["z"] for c in cols]), labels["z"])
    assert np.concatenate([c["mags"] for c in cols]).shape == (20, 5)
    src.close()


def test_example_format_data_z_ebv(tmp_path):
    n = 9
    path = tmp_path / "data_example.npz"
    np.savez(
        path,
        data=np.ones((n, 64, 64, 5), np.float64),  # float64 images become float32
        z=np.full((n, 1), 0.1),
        ebv=np.full((n, 1), 0.02),
    )
    src = NpzSource(path)
    assert src.cube == "data.npy"
    ((img, cols),) = list(src.iter_batches(100))
    assert img.dtype == np.float32
    assert img.shape == (n, 64, 64, 5) and cols["z"].shape == (n,) and cols["ebv"].shape == (n,)


def test_channels_first_cube_is_transposed(tmp_path):
    cube = np.random.default_rng(0).normal(size=(3, 5, 64, 64)).astype(np.float32)
    path = tmp_path / "cf.npz"
    np.savez(path, cube=cube)
    ((img, _),) = list(NpzSource(path).iter_batches(10))
    np.testing.assert_array_equal(img, cube.transpose(0, 2, 3, 1))


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"cube": np.zeros((2, 32, 32, 5), np.float32)}, "(N, 64, 64, 5)"),
        ({"labels": np.zeros(3)}, "no image cube"),
    ],
)
def test_bad_npz_layouts_are_one_clear_error(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(PzError, match=message.replace("(", r"\(").replace(")", r"\)")):
        NpzSource(path)


def test_truncated_member_is_reported(sdss_npz, tmp_path):
    path, cube, _ = sdss_npz(n=10)
    # rewrite the cube member with 3 rows missing but the header of 10
    from numpy.lib import format as npformat

    cut = tmp_path / "cut.npz"
    with zipfile.ZipFile(cut, "w") as zf, zf.open("cube.npy", "w") as fp:
        npformat.write_array_header_1_0(fp, npformat.header_data_from_array_1_0(cube))
        fp.write(cube[:7].tobytes())
    with zipfile.ZipFile(cut) as zf:
        m = NpyMember(zf, "cube.npy", str(cut))
        m.read(5)
        with pytest.raises(PzError, match="truncated"):
            m.read(5)
