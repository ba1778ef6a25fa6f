"""pz-pack's row order: a seeded random order by default (said on stderr, recorded in the
metadata, memory bounded by PZ_PACK_BUFFER_MB), the source's order with --keep-order."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from photoz_tools import tables
from photoz_tools.errors import PzError, PzUsageError
from photoz_tools.shuffle import is_shuffled

N = 60
BASE_ID = 299489677444933632  # conftest's make_labels: specObjID = BASE_ID + row * 7919
NOTE = "rows written in a random order (seed {}); --keep-order keeps the source's order"


def run_ok(cli, *args, **kw):
    out = cli("pz-pack", *args, **kw)
    assert out.returncode == 0, out.stderr.decode()
    return out


def rows_of(path) -> tuple[list[int], np.ndarray]:
    """(source row of each output row, from its id; the image's marker pixel) of a dataset."""
    t = tables.read_table(path)
    ids = np.array(t.column("specObjID").to_pylist(), dtype=np.int64)
    return ((ids - BASE_ID) // 7919).tolist(), tables.column_array(t, "image")[:, 0, 0, 0]


def hidden(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_default_order_is_a_seeded_permutation_of_the_source(cli, sdss_npz, tmp_path):
    path, _, _ = sdss_npz(n=N)
    out = run_ok(cli, str(path), "--batch-rows", "7", "-o", str(tmp_path / "a.parquet"))
    assert NOTE.format(0) in out.stderr.decode()
    rows, marker = rows_of(tmp_path / "a.parquet")
    assert sorted(rows) == list(range(N)) and rows != list(range(N))
    assert marker.tolist() == rows  # every image travelled with its own row
    # the same seed, the same order (batch size does not matter); another seed, another order
    run_ok(cli, str(path), "-o", str(tmp_path / "b.parquet"))
    assert rows_of(tmp_path / "b.parquet")[0] == rows
    out = run_ok(cli, str(path), "--seed", "1", "-o", str(tmp_path / "c.parquet"))
    assert NOTE.format(1) in out.stderr.decode()
    other = rows_of(tmp_path / "c.parquet")[0]
    assert sorted(other) == list(range(N)) and other != rows
    # folds and splits belong to the id, not to the position
    run_ok(cli, str(path), "--keep-order", "-o", str(tmp_path / "k.parquet"))
    a, k = (
        pq.read_table(tmp_path / f"{f}.parquet", columns=["specObjID", "fold", "split"])
        for f in "ak"
    )
    assert sorted(a.to_pylist(), key=str) == sorted(k.to_pylist(), key=str)


def test_keep_order_keeps_the_source_order(cli, sdss_npz, tmp_path):
    path, _, _ = sdss_npz(n=N)
    out = run_ok(cli, str(path), "--keep-order", "-o", str(tmp_path / "k.parquet"))
    assert "random order" not in out.stderr.decode()
    rows, marker = rows_of(tmp_path / "k.parquet")
    assert rows == list(range(N)) and marker.tolist() == rows
    meta = json.loads(pq.read_schema(tmp_path / "k.parquet").metadata[b"pz_pack"])
    assert meta["order"] == "source" and meta["shuffle_seed"] is None
    with tables.open_table(tmp_path / "k.parquet") as r:
        assert not is_shuffled(r.metadata)


def test_quiet_silences_the_note(cli, sdss_npz, tmp_path):
    path, _, _ = sdss_npz(n=10)
    out = run_ok(cli, str(path), "-q", "-o", str(tmp_path / "q.parquet"))
    assert out.stderr.decode() == ""


@pytest.mark.parametrize("suffix", ["parquet", "fits"])
def test_the_order_is_recorded_in_the_metadata(cli, sdss_npz, tmp_path, suffix):
    path, _, _ = sdss_npz(n=30)
    dest = tmp_path / f"ds.{suffix}"
    run_ok(cli, str(path), "--seed", "3", "-o", str(dest))
    with tables.open_table(dest) as r:
        meta = json.loads(r.metadata["pz_pack"])
        assert is_shuffled(r.metadata)
    assert meta["order"] == "shuffled" and meta["shuffle_seed"] == 3 and meta["seed"] == 3


@pytest.mark.parametrize("suffix", ["parquet", "fits"])
def test_a_small_buffer_shuffles_through_files_to_the_same_order(cli, sdss_npz, tmp_path, suffix):
    path, _, _ = sdss_npz(n=N)
    run_ok(cli, str(path), "-o", str(tmp_path / f"mem.{suffix}"))
    # 0.5 MB holds 6 images: ~10 bucket files
    out = run_ok(
        cli,
        str(path),
        "--batch-rows",
        "8",
        "-o",
        str(tmp_path / f"disk.{suffix}"),
        env={"PZ_PACK_BUFFER_MB": "0.5"},
    )
    assert NOTE.format(0) in out.stderr.decode()
    mem, disk = (
        tables.read_table(tmp_path / f"mem.{suffix}"),
        tables.read_table(tmp_path / f"disk.{suffix}"),
    )
    assert disk.column("specObjID").to_pylist() == mem.column("specObjID").to_pylist()
    for c in ("fold", "split", "z", "pack_flags"):
        assert disk.column(c).to_pylist() == mem.column(c).to_pylist(), c
    np.testing.assert_array_equal(
        tables.column_array(disk, "image"), tables.column_array(mem, "image")
    )
    assert set(disk.column("split").to_pylist()) == {"train", "validation", "test"}  # FITS width
    assert hidden(tmp_path) == []


def test_the_buffer_bounds_the_buckets(sdss_npz, tmp_path, monkeypatch):
    import photoz_tools.shuffle as shuffle
    from photoz_tools.dataset import pack

    path, _, _ = sdss_npz(n=N)
    loaded = []
    read = pq.read_table

    def spy(p, *a, **k):
        t = read(p, *a, **k)
        if shuffle.TEMP_PREFIX in str(p):
            loaded.append(t.nbytes)
        return t

    monkeypatch.setattr(pq, "read_table", spy)
    monkeypatch.setenv("PZ_PACK_BUFFER_MB", "0.5")
    s = pack(path, tmp_path / "ds.parquet", batch_rows=5)
    assert s.rows == N and s.shuffle_seed == 0
    assert len(loaded) >= 5 and max(loaded) <= 0.5 * 2**20
    assert hidden(tmp_path) == []


def test_no_temp_files_remain_after_a_failure(cli, sdss_npz, tmp_path):
    from numpy.lib import format as npformat

    path, cube, labels = sdss_npz(n=N)
    import zipfile

    bad = tmp_path / "truncated.npz"  # the cube breaks off after 40 of its 60 rows
    with zipfile.ZipFile(bad, "w") as zf:
        with zf.open("cube.npy", "w") as fp:
            npformat.write_array_header_1_0(fp, npformat.header_data_from_array_1_0(cube))
            fp.write(cube[:40].tobytes())
        with zf.open("labels.npy", "w") as fp:
            npformat.write_array(fp, labels)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = cli(
        "pz-pack",
        str(bad),
        "--batch-rows",
        "8",
        "-o",
        str(out_dir / "ds.parquet"),
        env={"PZ_PACK_BUFFER_MB": "0.5"},
    )
    assert out.returncode == 1 and "truncated" in out.stderr.decode()
    assert list(out_dir.iterdir()) == []


def test_a_failing_write_leaves_nothing(sdss_npz, tmp_path, monkeypatch):
    from photoz_tools.dataset import pack

    path, _, _ = sdss_npz(n=N)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    calls = []
    real = tables.TableWriter.write

    def write(self, data):
        calls.append(data.num_rows)
        if len(calls) == 4:  # in pass 2, with bucket files on disk
            assert any(n.startswith(".pz-shuffle-") for n in hidden(out_dir))
            raise PzError("disk full")
        real(self, data)

    monkeypatch.setattr(tables.TableWriter, "write", write)
    monkeypatch.setenv("PZ_PACK_BUFFER_MB", "0.5")
    with pytest.raises(PzError, match="disk full"):
        pack(path, out_dir / "ds.parquet")
    assert list(out_dir.iterdir()) == []


def test_stdout_shuffles_in_the_system_temp_folder(cli, sdss_npz, tmp_path):
    path, _, _ = sdss_npz(n=N)
    temp = tmp_path / "systemp"
    temp.mkdir()
    out = run_ok(cli, str(path), env={"PZ_PACK_BUFFER_MB": "0.5", "TMPDIR": str(temp)})
    import io

    t = pq.read_table(io.BytesIO(out.stdout))
    assert sorted(t.column("specObjID").to_pylist()) == sorted(
        (BASE_ID + np.arange(N) * 7919).tolist()
    )
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("value", ["abc", "0", "-3", "nan"])
def test_a_bad_buffer_size_is_a_usage_error(cli, sdss_npz, tmp_path, value):
    path, _, _ = sdss_npz(n=5)
    out = cli(
        "pz-pack", str(path), "-o", str(tmp_path / "x.parquet"), env={"PZ_PACK_BUFFER_MB": value}
    )
    err = out.stderr.decode()
    assert out.returncode == 2 and "PZ_PACK_BUFFER_MB" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.parquet").exists()
    run_ok(cli, str(path), "--keep-order", "-o", str(tmp_path / "x.parquet"), env={})


def test_a_buffer_too_small_for_the_file_count_names_the_variable(sdss_npz, tmp_path, monkeypatch):
    import photoz_tools.shuffle as shuffle
    from photoz_tools.dataset import pack

    path, _, _ = sdss_npz(n=N)
    monkeypatch.setattr(shuffle, "MAX_BUCKETS", 3)
    monkeypatch.setenv("PZ_PACK_BUFFER_MB", "0.5")
    with pytest.raises(PzUsageError, match="PZ_PACK_BUFFER_MB=0.5: too small"):
        pack(path, tmp_path / "ds.parquet")
    assert list(p.name for p in tmp_path.iterdir()) == ["sdss.npz"]


def test_help_names_keep_order_and_the_buffer(cli):
    out = run_ok(cli, "--help", env={"COLUMNS": "200"})
    text = out.stdout.decode()
    assert "--keep-order" in text and "PZ_PACK_BUFFER_MB" in text
