"""Partitioned catalogues: discovery, shards for array jobs, idempotent reruns and locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photoz_tools import partitions
from photoz_tools.errors import PzError, PzUsageError


def _write(path: Path, n: int, start: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"id": np.arange(start, start + n), "x": np.ones(n)}), path)
    return path


@pytest.fixture
def catalogue(tmp_path) -> Path:
    root = tmp_path / "cat"
    _write(root / "night=1" / "a.parquet", 3)
    _write(root / "night=1" / "b.parquet", 2, 10)
    _write(root / "night=2" / "part-0.parquet", 4, 20)
    _write(root / "top.parquet", 1, 30)
    # what pyarrow, Spark and LSDB skip: never data
    _write(root / "_metadata" / "x.parquet", 1)
    _write(root / "night=2" / ".part-1.parquet.tmp.parquet", 1)
    (root / "night=1" / "_SUCCESS").write_text("")
    (root / "README.txt").write_text("not data")
    return root


def test_a_folder_is_read_with_pyarrow_datasets_rules(catalogue):
    parts = partitions.discover(catalogue)
    assert [p.rel for p in parts] == [
        "night=1/a.parquet",
        "night=1/b.parquet",
        "night=2/part-0.parquet",
        "top.parquet",
    ]


def test_a_folder_without_parquet_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(PzError, match="a folder with no Parquet file") as err:
        partitions.discover(tmp_path / "empty")
    assert "\n" not in str(err.value)


def test_shards_cover_every_partition_exactly_once_and_stay_put_as_it_grows(tmp_path):
    parts = [partitions.Partition(tmp_path / f"p{i}.parquet", f"p{i}.parquet") for i in range(57)]
    for n in (1, 2, 5, 8):
        chosen = [partitions.select_shard(parts, (i, n)) for i in range(n)]
        flat = [p.rel for c in chosen for p in c]
        assert sorted(flat) == sorted(p.rel for p in parts) and len(flat) == len(set(flat))
        if n > 1:
            assert all(len(c) < len(parts) for c in chosen)
    # a new partition does not move the old ones to other shards
    more = [*parts, partitions.Partition(tmp_path / "new.parquet", "new.parquet")]
    before = {p.rel for p in partitions.select_shard(parts, (1, 4))}
    after = {p.rel for p in partitions.select_shard(more, (1, 4))}
    assert before <= after


@pytest.mark.parametrize("bad", ["3/3", "-1/2", "1", "a/b", "0/0", "1/2/3"])
def test_bad_shards_are_usage_errors(bad):
    with pytest.raises(PzUsageError, match=f"--shard {bad}"):
        partitions.parse_shard(bad)


def _copy_work(done: list):
    """A work function: copies the partition, with the stamp, atomically."""

    def work(part, out, meta):
        done.append(part.rel)
        t = pq.read_table(part.path)
        t = t.replace_schema_metadata({**(t.schema.metadata or {}), **meta})
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        pq.write_table(t, tmp)
        os.replace(tmp, out)
        return t.num_rows

    return work


def test_a_rerun_redoes_only_missing_or_stale_outputs(catalogue, tmp_path):
    out = tmp_path / "out"
    parts = partitions.discover(catalogue)
    done: list[str] = []
    s = partitions.run(parts, out, "k1", _copy_work(done))
    assert (s.done, s.up_to_date, s.failed, s.rows) == (4, 0, [], 10)
    assert partitions.discover(out) == [
        partitions.Partition(out / p.rel, p.rel) for p in parts
    ]  # the output reads as the same dataset: no lock or temporary file left
    mtimes = {p.rel: (out / p.rel).stat().st_mtime_ns for p in parts}

    done.clear()
    s = partitions.run(parts, out, "k1", _copy_work(done))
    assert (s.done, s.up_to_date) == (0, 4) and done == []
    assert {p.rel: (out / p.rel).stat().st_mtime_ns for p in parts} == mtimes  # not rewritten

    # a newer input, a deleted output: only those two are redone
    later = time.time() + 5
    os.utime(catalogue / "night=1" / "b.parquet", (later, later))
    (out / "top.parquet").unlink()
    s = partitions.run(parts, out, "k1", _copy_work(done))
    assert sorted(done) == ["night=1/b.parquet", "top.parquet"] and s.up_to_date == 2
    # another bundle or options: everything is redone
    done.clear()
    s = partitions.run(parts, out, "k2", _copy_work(done))
    assert s.done == 4


def test_a_failed_partition_is_counted_and_the_rest_is_done(catalogue, tmp_path):
    parts = partitions.discover(catalogue)
    done: list[str] = []
    copy = _copy_work(done)

    def work(part, out, meta):
        if part.rel == "night=1/b.parquet":
            raise PzError(f"{part.path}: column ebv missing")
        return copy(part, out, meta)

    s = partitions.run(parts, tmp_path / "out", "k", work)
    assert s.done == 3 and [rel for rel, _ in s.failed] == ["night=1/b.parquet"]
    line = s.line()
    assert "\n" not in line and "1 failed" in line and "column ebv missing" in line
    assert not (tmp_path / "out" / "night=1" / "b.parquet").exists()
    assert not list((tmp_path / "out").rglob(".*.lock"))


def test_a_live_lock_is_respected_and_a_dead_ones_taken_over(catalogue, tmp_path):
    parts = partitions.discover(catalogue)[:2]
    out = tmp_path / "out"
    live = partitions.Lock(out / parts[0].rel)
    assert live.acquire()  # this process: alive
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    stale = out / parts[1].rel
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.with_name(f".{stale.name}.lock").write_text(
        json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout), "t": 0})
    )
    leftover = stale.with_name(f".{stale.name}.a1b2c3.tmp")  # what the dead one was writing
    leftover.write_bytes(b"half a file")
    done: list[str] = []
    s = partitions.run(parts, out, "k", _copy_work(done))
    assert (s.locked, s.done) == (1, 1) and done == [parts[1].rel]
    assert not leftover.exists()
    live.release()
    assert not list(out.rglob(".*.lock"))


def test_a_hats_collection_gives_its_main_catalogue_only(tmp_path):
    """What LSDB's write_catalog makes: a collection of the catalogue and a margin catalogue
    (which repeats neighbouring pixels' rows): found with hats' reader, margins left out."""
    lsdb = pytest.importorskip("lsdb", reason="lsdb is not installed (the scale extra)")
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 300
    df = pd.DataFrame(
        {"objID": np.arange(n), "ra": rng.uniform(0, 40, n), "dec": rng.uniform(-10, 10, n)}
    )
    cat = lsdb.from_dataframe(
        df,
        catalog_name="gal",
        ra_column="ra",
        dec_column="dec",
        lowest_order=2,
        highest_order=4,
        partition_rows=50,
    )
    cat.write_catalog(tmp_path / "gal")
    assert (tmp_path / "gal" / "collection.properties").is_file()
    parts = partitions.discover(tmp_path / "gal")
    assert len(parts) > 1
    assert all(p.rel.startswith("gal/dataset/Norder=") for p in parts), [p.rel for p in parts]
    ids = np.concatenate(
        [pq.read_table(p.path, columns=["objID"])["objID"].to_numpy() for p in parts]
    )
    assert sorted(ids) == list(range(n))  # every galaxy once: no margin rows
    # the plain listing would have counted the margin catalogue's files too
    listed = partitions._listed(tmp_path / "gal")
    assert len(listed) > len(parts)
