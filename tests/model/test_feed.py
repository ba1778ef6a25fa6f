"""The training feed samples the whole training set, whatever the file's order (a dataset in
specObjID order is in plate order, so in sky position and redshift), with memory bounded by the
buffer, and its batches depend only on (seed, epoch, step)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

pytest.importorskip("keras")

from photoz_tools import tables  # noqa: E402
from photoz_tools.model import data, feed  # noqa: E402
from photoz_tools.pdf import Bins  # noqa: E402


@pytest.fixture(scope="module")
def sorted_dataset(tmp_path_factory, make_dataset):
    """1,500 generated galaxies sorted by z in 64-row row groups, with no pz-pack mark."""
    folder = tmp_path_factory.mktemp("feed")
    t = tables.read_table(make_dataset(folder / "gen.parquet", 1500, seed=3))
    t = t.take(pa.array(np.argsort(tables.column_array(t, "z"), kind="stable")))
    pq.write_table(t.replace_schema_metadata(None), folder / "zsorted.parquet", row_group_size=64)
    return folder / "zsorted.parquet"


def _selection(path):
    return data.select_rows(str(path), Bins.default(), val_size=0)


def test_batches_of_a_z_sorted_file_sample_the_whole_file(sorted_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("PZ_TRAIN_BUFFER_MB", "8")
    sel = _selection(sorted_dataset)
    z_all = sel.z[sel.train_rows]
    # the test has power: a window of the file's order (what the old feed drew from) fails it
    assert stats.ks_2samp(z_all[:128], z_all).pvalue < 1e-6
    chunks = feed.prepare(sel, tmp_path, seed=5)
    assert chunks.shuffled and chunks.path != str(sorted_dataset)  # a shuffled copy was made
    batches = feed.TrainingBatches(sel, 128, seed=5, chunks=chunks, augment=False)
    assert batches.buffer_rows == 512  # 8 MB is 102 images: the 4-batch floor
    for step, (_, y, _) in zip(range(10), batches.iterate(0), strict=False):
        # labels are bin numbers, monotonic in z: the KS statistic is the same as on z
        p = stats.ks_2samp(y, sel.labels[sel.train_rows]).pvalue
        assert p > 0.01, f"batch {step}: KS p = {p:.2g}"
    # the copy is reused, not rewritten, by a rerun
    again = feed.prepare(sel, tmp_path, seed=5)
    assert again.path == chunks.path and [*again.groups] == [*chunks.groups]
    assert sorted(np.concatenate(again.ids)) == sorted(sel.train_rows)


def test_a_dataset_pz_pack_shuffled_is_read_in_place(make_dataset, tmp_path):
    import json

    path = make_dataset(tmp_path / "d.parquet", 100, seed=1)
    t = tables.read_table(path)
    meta = dict(t.schema.metadata or {})
    meta[b"pz_pack"] = json.dumps({"order": "shuffled", "shuffle_seed": 0}).encode()
    pq.write_table(t.replace_schema_metadata(meta), path, row_group_size=32)
    sel = _selection(path)
    chunks = feed.prepare(sel, tmp_path / "work", seed=0)
    assert chunks.path == str(path) and len(chunks.groups) == 4
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_batches_depend_only_on_seed_epoch_and_step(sorted_dataset, tmp_path):
    sel = _selection(sorted_dataset)
    chunks = feed.prepare(sel, tmp_path, seed=1)

    def epoch(workers, epoch=0, start=0):
        b = feed.TrainingBatches(sel, 100, seed=9, chunks=chunks, workers=workers, buffer_rows=300)
        return list(b.iterate(epoch, start=start))

    one, three = epoch(1), epoch(3)
    assert len(one) == len(three) == 15
    for (x1, y1, _), (x3, y3, _) in zip(one, three, strict=True):
        np.testing.assert_array_equal(x1["image"], x3["image"])
        np.testing.assert_array_equal(y1, y3)
    resumed = epoch(2, start=6)
    for (x1, y1, _), (xr, yr, _) in zip(one[6:], resumed, strict=True):
        np.testing.assert_array_equal(x1["image"], xr["image"])
        np.testing.assert_array_equal(y1, yr)
    other = epoch(1, epoch=1)
    assert not np.array_equal(one[0][1], other[0][1])  # a new order each epoch
    # every training row once per epoch (the leftover rows of a partial batch aside)
    seen = np.concatenate([x["ebv"][:, 0] for x, _, _ in one])
    assert len(seen) == 1500 and len(np.unique(seen)) > 1490


def test_prefetch_hands_on_items_and_errors():
    items = list(feed.Prefetch(iter(range(20)), depth=3))
    assert items == list(range(20))

    def broken():
        yield 1
        raise RuntimeError("reader failed")

    it = feed.Prefetch(broken())
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="reader failed"):
        next(it)


def test_validation_batches_are_regrouped_to_full_batches():
    """Scattered validation rows come a few per row group; each few must not become a padded
    batch of its own (that multiplied validation's work ~16-fold)."""
    from photoz_tools.model.train import _regroup

    sizes = [3, 1, 5, 0, 7, 2]
    start, parts = 0, []
    for k in sizes:
        r = np.arange(start, start + k)
        parts.append((r, {"image": r.astype(np.float32)[:, None] * 2, "ebv": r[:, None] * 3}))
        start += k
    out = list(_regroup(iter(parts), 4))
    assert [len(r) for r, _ in out] == [4, 4, 4, 4, 2]
    rows = np.concatenate([r for r, _ in out])
    np.testing.assert_array_equal(rows, np.arange(18))
    for r, x in out:
        np.testing.assert_array_equal(x["image"][:, 0], r * 2)
        np.testing.assert_array_equal(x["ebv"][:, 0], r * 3)


def test_a_training_set_that_fits_is_read_once_and_permuted_each_epoch(sorted_dataset, tmp_path):
    """Re-reading the whole set before every epoch's first batch stalled the network at each
    epoch start; a set that fits the buffer is kept and drawn in a new permutation instead."""
    sel = _selection(sorted_dataset)
    chunks = feed.prepare(sel, tmp_path, seed=1)
    b = feed.TrainingBatches(sel, 100, seed=9, chunks=chunks, augment=False)
    assert b.buffer_rows >= chunks.n_rows
    reads = []
    real_read = b._read
    b._read = lambda readers, c: reads.append(c) or real_read(readers, c)
    e0 = list(b.iterate(0))
    n_reads = len(reads)
    assert n_reads == len(chunks.groups)
    e1 = list(b.iterate(1))
    assert len(reads) == n_reads  # the second epoch read nothing
    rows = np.concatenate([x["ebv"][:, 0] for x, _, _ in e0])
    assert len(rows) == len(b) * 100 and len(np.unique(rows)) == len(rows)  # each row once
    assert not np.array_equal(e0[0][1], e1[0][1])
    fresh = feed.TrainingBatches(sel, 100, seed=9, chunks=chunks, augment=False)
    resumed = list(fresh.iterate(1, start=4))  # a resumed run draws the same batches
    for (x1, y1, _), (xr, yr, _) in zip(e1[4:], resumed, strict=True):
        np.testing.assert_array_equal(x1["image"], xr["image"])
        np.testing.assert_array_equal(y1, yr)
