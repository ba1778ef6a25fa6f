"""SIGKILL mid-run, then rerun: the output is absent or complete, and the rerun's output equals
an uninterrupted run's. One fast trial per command that had none elsewhere (pz-query, pz-pack);
pz-train, pz-predict, pz-cutout and the table writer have theirs in tests/model, tests/imaging
and tests/tables; benchmarks/kill.py runs many trials of all six long commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from photoz_tools.cli.manpages import module_name


def _popen(command: str, *args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module_name(command), *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _kill_when(proc: subprocess.Popen, ready, limit: float = 60) -> None:
    """SIGKILL the process group as soon as `ready()` holds (or the run ends)."""
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < limit:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()


def _rows(path: Path) -> list:
    t = pq.read_table(path)
    return [t.column(n).to_pylist() for n in t.column_names]


@pytest.fixture
def slow_standin(catalog):
    """The stand-in answering each request after 0.15 s: a paged query takes a while."""
    from photoz_tools.sdss.standin import StandIn

    with StandIn(catalog=catalog, latency=0.15) as s:
        yield s


def test_pz_query_killed_mid_paging_then_rerun(slow_standin, tmp_path, catalog):
    spool, out = tmp_path / "spool", tmp_path / "cat.parquet"
    args = ["--url", slow_standin.url, "--page-size", "5", "--spool", str(spool), "-q"]
    proc = _popen("query", *args, "-o", str(out), cwd=tmp_path)
    _kill_when(proc, lambda: len(list(spool.glob("**/*.parquet"))) >= 2)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert not out.exists()
    for page in spool.glob("**/*.parquet"):
        pq.read_metadata(page)  # every page kept is whole
    n_before = len(slow_standin.requests)
    again = subprocess.run(
        [sys.executable, "-m", module_name("query"), *args, "-o", str(out)], capture_output=True
    )
    assert again.returncode == 0, again.stderr
    assert len(slow_standin.requests) - n_before < 9  # the kept pages were not asked again
    ids = pq.read_table(out).column("specObjID").to_pylist()
    assert ids == sorted(catalog.column("specObjID").to_pylist())  # all, once, in key order


def test_pz_pack_killed_then_rerun(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    labels = np.zeros(n, dtype=[("specObjID", "<i8"), ("z", "<f8"), ("EBV", "<f4")])
    labels["specObjID"] = 299_489_677_444_933_632 + np.arange(n) * 7919
    labels["z"] = rng.uniform(0.01, 0.39, n)
    labels["EBV"] = rng.uniform(0, 0.1, n)
    cube = rng.normal(0, 0.05, (n, 64, 64, 5)).astype(np.float32)
    np.savez(tmp_path / "sdss.npz", cube=cube, labels=labels)
    out = tmp_path / "ds.parquet"
    args = [str(tmp_path / "sdss.npz"), "--folds", "5", "--seed", "0", "-q", "-o", str(out)]
    proc = _popen("pack", *args, cwd=tmp_path)
    delay = 1.0 + 2.0 * rng.random()
    _kill_when(proc, lambda: time.sleep(delay) or True)
    if out.exists():  # the kill came after the rename: the file must be whole
        pq.read_table(out)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("sdss.npz", "ds.parquet")]
    assert not [p for p in leftovers if "ds.parquet" in p and not p.startswith(".")], leftovers
    again = subprocess.run([sys.executable, "-m", module_name("pack"), *args], capture_output=True)
    assert again.returncode == 0, again.stderr
    table = pq.read_table(out)
    ids = np.asarray(table.column("specObjID"))
    assert sorted(ids) == sorted(labels["specObjID"])  # every row once
    from photoz_tools.tables import column_array

    images = column_array(table, "image")
    where = {v: i for i, v in enumerate(labels["specObjID"])}
    for k in range(0, n, 37):  # the images travelled with their ids
        assert np.array_equal(images[k], cube[where[ids[k]]])
