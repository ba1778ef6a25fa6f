"""The bucket shuffle: rows come out sorted by their keys, in one bucket or many, with memory
bounded by the budget and no temporary file left behind."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photoz_tools import tables
from photoz_tools.shuffle import (
    KEY_COLUMN,
    ShuffleBufferTooSmall,
    bucket_shuffle,
    is_shuffled,
    random_keys,
)

IMAGE_BYTES = 64 * 64 * 5 * 4


def make_table(n: int, seed: int = 0) -> pa.Table:
    """id, a float, a string and a (64, 64, 5) image whose pixel [0, 0, 0] is the row number."""
    rng = np.random.default_rng(seed)
    img = rng.normal(0, 1, (n, 64, 64, 5)).astype(np.float32)
    img[:, 0, 0, 0] = np.arange(n)
    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64) * 7 + 3),
            "z": pa.array(rng.uniform(0, 0.4, n)),
            "split": pa.array(rng.choice(["train", "validation", "test"], n).tolist()),
            "image": tables.to_arrow(img),
        }
    )


def batches_of(table: pa.Table, keys: np.ndarray, size: int):
    for start in range(0, table.num_rows, size):
        yield keys[start : start + size], table.slice(start, size).combine_chunks().to_batches()[0]


def run(table, keys, n_keys=None, size=7, **kw):
    out: list[pa.RecordBatch] = []
    kw.setdefault("buffer_bytes", 1 << 30)
    got = bucket_shuffle(
        batches_of(table, keys, size),
        table.schema,
        len(keys) if n_keys is None else n_keys,
        out.append,
        **kw,
    )
    result = pa.Table.from_batches(out, schema=table.schema) if out else table.slice(0, 0)
    assert got == result.num_rows
    return result, out


def test_random_keys_are_a_seeded_permutation():
    k = random_keys(1000, 3)
    assert k.dtype == np.int64 and sorted(k) == list(range(1000))
    assert (k == random_keys(1000, 3)).all() and not (k == random_keys(1000, 4)).all()
    assert not (k == np.arange(1000)).all()
    assert len(random_keys(0, 0)) == 0


@pytest.mark.parametrize("buffer_bytes", [1 << 30, 3 * IMAGE_BYTES])
def test_output_is_the_input_permuted_by_the_keys(tmp_path, buffer_bytes):
    t = make_table(50)
    keys = random_keys(50, 0)
    out, _ = run(t, keys, buffer_bytes=buffer_bytes, tmpdir=tmp_path)
    order = np.argsort(keys)  # output row j is the source row whose key is j
    assert out.column("id").to_pylist() == t.column("id").take(pa.array(order)).to_pylist()
    np.testing.assert_array_equal(
        tables.column_array(out, "image"), tables.column_array(t, "image")[order]
    )
    assert out.column("split").to_pylist() == np.array(t.column("split"))[order].tolist()
    assert out.schema.names == t.schema.names and KEY_COLUMN not in out.schema.names


def test_gaps_in_the_keys(tmp_path):
    t = make_table(40)
    keys = random_keys(100, 1)[:40]  # 40 of 100 destinations: the rows a caller kept
    for budget in (1 << 30, 2 * IMAGE_BYTES):
        out, _ = run(t, keys, n_keys=100, buffer_bytes=budget, tmpdir=tmp_path)
        order = np.argsort(keys)
        assert out.column("id").to_pylist() == t.column("id").take(pa.array(order)).to_pylist()


def test_many_buckets_equal_one_bucket_and_buckets_stay_within_the_budget(tmp_path, monkeypatch):
    import photoz_tools.shuffle as shuffle

    t = make_table(60)
    keys = random_keys(60, 2)
    one, _ = run(t, keys, buffer_bytes=1 << 30, tmpdir=tmp_path)
    sizes = []
    read = pq.read_table

    def spy(path, *a, **k):  # every bucket pass 2 loads
        got = read(path, *a, **k)
        sizes.append((got.num_rows, got.nbytes))
        return got

    monkeypatch.setattr(pq, "read_table", spy)
    budget = 4 * IMAGE_BYTES + 1000
    many, _ = run(t, keys, buffer_bytes=budget, tmpdir=tmp_path)
    assert many.equals(one)
    assert len(sizes) >= 60 // 4  # several buckets, each loaded once
    assert sum(n for n, _ in sizes) == 60
    assert max(n for n, _ in sizes) <= 4
    assert max(b for _, b in sizes) <= budget
    assert shuffle.KEY_COLUMN not in many.column_names


def test_write_gets_slices_not_the_whole_bucket(tmp_path):
    t = make_table(30)
    _, out = run(t, random_keys(30, 0), buffer_bytes=40 * IMAGE_BYTES, tmpdir=tmp_path)
    assert len(out) > 1 and max(b.num_rows for b in out) <= 10  # buffer / 4


def test_temp_files_are_removed_after_success_and_failure(tmp_path):
    t = make_table(30)
    keys = random_keys(30, 0)
    seen = []

    def write(rb):
        seen.append(sorted(p.name for p in tmp_path.iterdir()))

    bucket_shuffle(
        batches_of(t, keys, 4),
        t.schema,
        30,
        write,
        buffer_bytes=3 * IMAGE_BYTES,
        tmpdir=tmp_path,
    )
    assert seen and all(len(names) == 1 and names[0].startswith(".") for names in seen)
    assert list(tmp_path.iterdir()) == []

    calls = []

    def failing(rb):
        calls.append(rb.num_rows)
        if len(calls) == 3:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        bucket_shuffle(
            batches_of(t, keys, 4),
            t.schema,
            30,
            failing,
            buffer_bytes=3 * IMAGE_BYTES,
            tmpdir=tmp_path,
        )
    assert list(tmp_path.iterdir()) == []

    def source():  # a failure in pass 1 (the caller's reader)
        yield from batches_of(t.slice(0, 10), keys[:10], 4)
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        bucket_shuffle(source(), t.schema, 30, write, buffer_bytes=3 * IMAGE_BYTES, tmpdir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_one_bucket_writes_no_file(tmp_path):
    t = make_table(20)
    names = []

    def write(rb):
        names.extend(p.name for p in tmp_path.iterdir())

    bucket_shuffle(
        batches_of(t, random_keys(20, 0), 6),
        t.schema,
        20,
        write,
        buffer_bytes=1 << 30,
        tmpdir=tmp_path,
    )
    assert names == []


def test_empty_input(tmp_path):
    t = make_table(0)
    calls = []
    assert bucket_shuffle([], t.schema, 0, calls.append, buffer_bytes=1, tmpdir=tmp_path) == 0
    empty = t.to_batches()[0] if t.to_batches() else pa.RecordBatch.from_pylist([], t.schema)
    n = bucket_shuffle(
        [(np.empty(0, np.int64), empty)] * 3,
        t.schema,
        10,
        calls.append,
        buffer_bytes=1,
        tmpdir=tmp_path,
    )
    assert n == 0 and calls == [] and list(tmp_path.iterdir()) == []


def test_tensor_column_keeps_its_type_through_the_bucket_files(tmp_path):
    t = make_table(12)
    out, batches = run(t, random_keys(12, 5), buffer_bytes=2 * IMAGE_BYTES, tmpdir=tmp_path)
    want = pa.fixed_shape_tensor(pa.float32(), (64, 64, 5))
    assert out.schema.field("image").type == want
    assert all(b.schema.field("image").type == want for b in batches)
    assert out.schema.field("split").type == pa.string()


def test_bad_keys_are_refused(tmp_path):
    t = make_table(6)
    for keys, n_keys in (
        (np.array([0, 1, 2, 3, 4, 4]), 6),
        (np.array([0, 1, 2, 3, 4, 9]), 6),
        (np.arange(5), 6),
    ):
        with pytest.raises(ValueError):
            bucket_shuffle(
                [(keys, t.to_batches()[0])],
                t.schema,
                n_keys,
                lambda rb: None,
                buffer_bytes=1 << 30,
                tmpdir=tmp_path,
            )


def test_a_budget_needing_too_many_files_says_how_much_is_enough(tmp_path):
    t = make_table(4)
    with pytest.raises(ShuffleBufferTooSmall, match="at least") as err:
        bucket_shuffle(
            batches_of(t, np.arange(4), 4),
            t.schema,
            10**6,
            lambda rb: None,
            buffer_bytes=IMAGE_BYTES,
            tmpdir=tmp_path,
        )
    assert err.value.need_bytes > IMAGE_BYTES
    assert list(tmp_path.iterdir()) == []


def test_is_shuffled_reads_pz_pack_metadata():
    assert is_shuffled({"pz_pack": json.dumps({"order": "shuffled", "shuffle_seed": 0})})
    assert not is_shuffled({"pz_pack": json.dumps({"order": "source", "shuffle_seed": None})})
    assert not is_shuffled({"pz_pack": json.dumps({"folds": 5})})  # written before the shuffle
    assert not is_shuffled({"pz_pack": "not json"})
    assert not is_shuffled({})
    assert is_shuffled({b"pz_pack": json.dumps({"order": "shuffled"}).encode()})
