"""An interrupted pz-mock leaves a folder marked unfinished (no mock.json); a rerun with the
same parameters resumes it, removes the killed run's temporaries and gives the same survey."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("galsim")

from photoz_tools.errors import PzError  # noqa: E402
from photoz_tools.mock.survey import MANIFEST, PARTIAL, mock  # noqa: E402

SMALL = dict(n=40, seed=5, per_field=20, neighbours=5, stars=5, jobs=1, compress=False)


class Killed(Exception):
    pass


def _stop_after(frames: int):
    def progress(done: int, total: int) -> None:
        if done >= frames:
            raise Killed

    return progress


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix == ".fits"
    }


def test_interrupted_survey_is_unfinished_then_resumes_to_the_same_survey(tmp_path: Path, cli):
    import pyarrow.parquet as pq

    out = tmp_path / "sky"
    with pytest.raises(Killed):
        mock(out, **SMALL, progress=_stop_after(5))  # one field of two rendered
    # nothing says "finished": no mock.json, no catalogue; the partial manifest names the survey
    assert not (out / MANIFEST).exists()
    assert not (out / "catalog.parquet").exists()
    assert json.loads((out / PARTIAL).read_text())["parameters"]["seed"] == 5
    assert len(_files(out)) == 5
    r = cli("pz-mock", "serve", str(out), "--port", "0")
    assert r.returncode == 1 and b"no mock.json" in r.stderr and b"Traceback" not in r.stderr
    # what a run killed with SIGKILL leaves: temporaries of the frame, photometry and table
    # writers
    frame_dir = next(p.parent for p in out.rglob("frame-*.fits"))
    stale = [
        frame_dir / ".tmp-k2a9x_3b.fits",
        out / "photometry" / ".tmp-003900-1-0012.npz",
        out / ".catalog.parquet.ab12cd34.tmp",
        out / ".mock.json.tmp",
    ]
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a file")
    # other parameters: refused, the folder left as it was
    with pytest.raises(PzError, match="other parameters"):
        mock(out, **{**SMALL, "seed": 6})
    assert all(p.exists() for p in stale) and not (out / MANIFEST).exists()

    res = mock(out, **SMALL)  # the rerun resumes
    assert res.frames_written == 5 and res.n_frames == 10
    assert (out / MANIFEST).is_file() and not (out / PARTIAL).exists()
    assert not any(p.exists() for p in stale)
    assert not [p for p in out.rglob(".*") if p.name != MANIFEST]  # no hidden file left

    ref = mock(tmp_path / "ref", **SMALL)  # uninterrupted
    assert res.frames_written + 5 == ref.frames_written
    assert pq.read_table(res.catalog).equals(pq.read_table(ref.catalog))
    assert pq.read_table(res.frames_index).equals(pq.read_table(ref.frames_index))
    assert _files(out) == _files(tmp_path / "ref")
    a = json.loads((out / MANIFEST).read_text())
    b = json.loads((tmp_path / "ref" / MANIFEST).read_text())
    assert a == b

    # a finished survey rerun: still finished, nothing rendered again
    again = mock(out, **SMALL)
    assert again.frames_written == 0 and (out / MANIFEST).is_file()
    assert not (out / PARTIAL).exists()


def test_a_survey_being_written_is_not_written_twice(tmp_path: Path):
    import fcntl
    import os

    out = tmp_path / "sky"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running pz-mock holds it
        (out / ".tmp-x.fits").write_bytes(b"")
        with pytest.raises(PzError, match="another pz-mock is writing"):
            mock(out, n=5, per_field=5, frames=False)
        assert not (out / PARTIAL).exists()
    finally:
        os.close(fd)
    (out / ".tmp-x.fits").unlink()
    res = mock(out, n=5, per_field=5, frames=False)  # the lock went with its holder
    assert res.n_galaxies == 5 and (out / MANIFEST).is_file()


def test_pz_mock_killed_leaves_no_lock_and_an_unfinished_folder(tmp_path: Path):
    """SIGKILL to pz-mock alone (its worker processes left behind): the folder's lock goes with
    it, the folder is marked unfinished, and a rerun finishes it."""
    import fcntl
    import os
    import signal
    import subprocess
    import sys
    import time

    from photoz_tools.cli.manpages import module_name

    out = tmp_path / "sky"
    args = ["-n", "40", "--seed", "5", "--per-field", "20", "--neighbours", "5", "--stars", "5"]
    args += ["--no-compress", "-j", "2", "-q", "-o", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", module_name("mock"), *args],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.rglob("frame-*.fits")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the main process only: workers may be left
        proc.wait(timeout=30)
        assert not (out / MANIFEST).exists() and (out / PARTIAL).is_file()
        assert not (out / "catalog.parquet").exists()
        fd = os.open(out, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: no worker holds it
        finally:
            os.close(fd)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the workers left behind
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
        proc.stderr.close()
    res = mock(out, **SMALL)
    assert res.n_frames == 10 and (out / MANIFEST).is_file() and not (out / PARTIAL).exists()
    assert not [p for p in out.rglob(".*") if p.name != MANIFEST]


def test_interrupted_with_workers_stops_them_at_once(tmp_path: Path):
    import multiprocessing as mp

    out = tmp_path / "sky"
    with pytest.raises(Killed):
        mock(out, **{**SMALL, "jobs": 2}, progress=_stop_after(5))
    assert not mp.active_children()  # terminated, not left rendering the other fields
    assert not (out / MANIFEST).exists() and (out / PARTIAL).is_file()
