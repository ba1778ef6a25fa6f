"""pz-predict over a partitioned catalogue folder: same partitioning out, equal to the
single-table run row for row, shards for array jobs, and idempotent cron reruns."""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("keras")

from photoz_tools import tables  # noqa: E402


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory, catalog):
    """The 40-galaxy catalogue split into 4 hive-style partitions (and non-data files)."""
    root = tmp_path_factory.mktemp("survey") / "cat"
    t = tables.read_table(catalog)
    for k, (night, lo, hi) in enumerate(
        [("20261101", 0, 13), ("20261101", 13, 20), ("20261102", 20, 33), ("20261103", 33, 40)]
    ):
        path = root / f"night={night}" / f"part-{k}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t.slice(lo, hi - lo), path)
    (root / "_SUCCESS").write_text("")
    return root


def _rel_files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_a_folder_in_gives_the_same_partitions_out_equal_to_the_table_run(
    cli, tmp_path, catalogue, catalog, tiny_bundle, model_env
):
    out = tmp_path / "zphot"
    r = cli("pz-predict", "-m", str(tiny_bundle), str(catalogue), "-o", str(out), env=model_env)
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "4 partitions: 4 done, 0 up to date" in err[0], err
    assert "40 rows" in err[0]
    assert _rel_files(out) == [
        "night=20261101/part-0.parquet",
        "night=20261101/part-1.parquet",
        "night=20261102/part-2.parquet",
        "night=20261103/part-3.parquet",
    ]  # no lock, temporary or state file: the folder reads as a dataset
    whole = cli("pz-predict", "-m", str(tiny_bundle), str(catalog), "-q", env=model_env)
    assert whole.returncode == 0, whole.stderr.decode()
    want = pq.read_table(io.BytesIO(whole.stdout))
    got = pa.concat_tables(
        pq.read_table(out / rel, partitioning=None) for rel in _rel_files(out)
    ).select(want.column_names)
    for name in want.column_names:
        if name == "pdf":
            np.testing.assert_allclose(
                tables.column_array(got, name), tables.column_array(want, name), atol=1e-6
            )
        else:
            assert got.column(name).equals(want.column(name)), name

    # a rerun with nothing new rewrites nothing
    mtimes = {rel: (out / rel).stat().st_mtime_ns for rel in _rel_files(out)}
    r = cli("pz-predict", "-m", str(tiny_bundle), str(catalogue), "-o", str(out), env=model_env)
    assert r.returncode == 0 and "0 done, 4 up to date" in r.stderr.decode()
    assert {rel: (out / rel).stat().st_mtime_ns for rel in _rel_files(out)} == mtimes

    # a new night and a changed partition: only those are done; other options: all again
    new = catalogue / "night=20261104" / "part-4.parquet"
    new.parent.mkdir()
    pq.write_table(tables.read_table(catalog).slice(0, 5), new)
    later = time.time() + 5
    os.utime(catalogue / "night=20261102" / "part-2.parquet", (later, later))
    r = cli("pz-predict", "-m", str(tiny_bundle), str(catalogue), "-o", str(out), env=model_env)
    assert "5 partitions: 2 done, 3 up to date" in r.stderr.decode(), r.stderr.decode()
    r = cli(
        "pz-predict",
        *("-m", str(tiny_bundle), str(catalogue), "-o", str(out), "--pdf", "float16"),
        env=model_env,
    )
    assert "5 done, 0 up to date" in r.stderr.decode(), r.stderr.decode()
    new.unlink()
    new.parent.rmdir()


def test_shards_split_the_partitions_and_a_bad_partition_fails_alone(
    cli, tmp_path, catalogue, tiny_bundle, model_env
):
    outs = []
    for i in range(2):
        out = tmp_path / f"shard{i}"
        r = cli(
            "pz-predict",
            *("-m", str(tiny_bundle), str(catalogue), "-o", str(out), "--shard", f"{i}/2"),
            env=model_env,
        )
        assert r.returncode == 0, r.stderr.decode()
        outs.append(set(_rel_files(out)))
    assert not outs[0] & outs[1] and len(outs[0] | outs[1]) == 4

    bad = tmp_path / "cat"
    for rel in _rel_files(catalogue):
        if rel.endswith(".parquet"):
            (bad / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(catalogue / rel, bad / rel)
    broken = bad / "night=20261102" / "part-2.parquet"
    broken.unlink()
    broken.write_bytes(b"PAR1 not really")
    out = tmp_path / "zbad"
    r = cli("pz-predict", "-m", str(tiny_bundle), str(bad), "-o", str(out), env=model_env)
    assert r.returncode == 1
    line = r.stderr.decode().strip()
    assert "\n" not in line and "3 done" in line and "1 failed" in line, line
    assert "night=20261102/part-2.parquet" in line
    assert len(_rel_files(out)) == 3


@pytest.mark.parametrize(
    "args, expect",
    [
        (["-o", "-"], "give -o FOLDER"),
        (["--shard", "2/2", "-o", "x"], "--shard 2/2"),
    ],
)
def test_usage_errors_of_a_folder_input(cli, tmp_path, catalogue, tiny_bundle, args, expect):
    r = cli("pz-predict", "-m", str(tiny_bundle), str(catalogue), *args, cwd=tmp_path)
    assert r.returncode == 2 and expect in r.stderr.decode(), r.stderr.decode()
    assert r.stderr.decode().strip().count("\n") == 0
    assert not (tmp_path / "x").exists()


def test_shard_needs_a_folder(cli, catalog, tiny_bundle):
    r = cli("pz-predict", "-m", str(tiny_bundle), str(catalog), "--shard", "0/2")
    assert r.returncode == 2 and "only with a catalogue folder" in r.stderr.decode()


def _kill_first_worker_mid_partition(proc, out, timeout=240):
    """Wait for a Dask worker to lock an output partition, then kill -9 it (mid-partition: it
    holds the lock while it loads the bundle and predicts). Returns the partition's name."""
    import json
    import signal

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        for lock in out.rglob(".*.lock") if out.exists() else []:
            try:
                pid = json.loads(lock.read_text())["pid"]
            except (OSError, ValueError, KeyError):
                continue
            os.kill(pid, signal.SIGKILL)
            return lock.name[1 : -len(".lock")]
        time.sleep(0.05)
    raise AssertionError("no worker locked a partition in time")


def _start(tiny_bundle, catalogue, out, model_env, **env):
    import subprocess
    import sys

    from photoz_tools.cli.manpages import module_name

    return subprocess.Popen(
        [sys.executable, "-m", module_name("predict"), "-m", str(tiny_bundle), str(catalogue)]
        + ["-o", str(out), "--scheduler", "local:2"],
        env={**os.environ, **model_env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_a_killed_dask_worker_costs_only_its_partition(
    cli, tmp_path, catalogue, tiny_bundle, model_env
):
    """A real LocalCluster of 2 worker processes: one is killed -9 while it holds a partition;
    dask retries it on a live worker, the stale lock of the dead one is taken over, and the
    result equals the single-process run file for file."""
    ref = tmp_path / "ref"
    r = cli("pz-predict", "-m", str(tiny_bundle), str(catalogue), "-o", str(ref), env=model_env)
    assert r.returncode == 0, r.stderr.decode()
    out = tmp_path / "zdask"
    proc = _start(tiny_bundle, catalogue, out, model_env)
    _kill_first_worker_mid_partition(proc, out)
    _, err = proc.communicate(timeout=600)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 0, err.decode()[-3000:]
    assert "4 partitions: 4 done" in lines[-1], lines
    assert _rel_files(out) == _rel_files(ref)
    for rel in _rel_files(ref):
        want, got = pq.read_table(ref / rel), pq.read_table(out / rel)
        assert got.column_names == want.column_names, rel
        for name in want.column_names:
            if pa.types.is_floating(want.schema.field(name).type) or name == "pdf":
                # the workers share the cores (fewer threads each): another reduction order
                np.testing.assert_allclose(
                    tables.column_array(got, name), tables.column_array(want, name), atol=1e-6
                )
            else:
                assert got.column(name).equals(want.column(name)), (rel, name)


@pytest.mark.slow
def test_when_dask_gives_up_the_summary_names_the_partition_and_a_rerun_finishes(
    cli, tmp_path, catalogue, tiny_bundle, model_env
):
    out = tmp_path / "zdask"
    proc = _start(
        tiny_bundle, catalogue, out, model_env, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0"
    )
    victim = _kill_first_worker_mid_partition(proc, out)
    _, err = proc.communicate(timeout=600)
    line = err.decode().strip().splitlines()[-1]
    assert proc.returncode == 1, err.decode()[-3000:]
    assert "3 done" in line and "1 failed" in line and "KilledWorker" in line, line
    assert victim in line and "rerun to finish it" in line
    # no partial file of the killed partition, and its dead owner's lock cleared
    assert len(_rel_files(out)) == 3, _rel_files(out)
    r = cli("pz-predict", "-m", str(tiny_bundle), str(catalogue), "-o", str(out), env=model_env)
    assert r.returncode == 0 and "1 done, 3 up to date" in r.stderr.decode(), r.stderr.decode()
    assert len(_rel_files(out)) == 4
