"""Fetching frames from a SAS (the package's local stand-in over real HTTP on 127.0.0.1).

Small synthetic SDSS-like frames keep these fast; the faults are the stand-in's (truncated
bodies, HTTP 500, dropped connections, 404).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photoz_tools.imaging.cutouts import FLAG_FETCH_FAILED, FLAG_MISSING_BAND, cutout
from photoz_tools.sdss.frameindex import FrameRef
from photoz_tools.sdss.sas import FetchError, SasClient
from photoz_tools.sdss.standin import StandIn

REF = FrameRef("r", 1000, 3, 42)


@pytest.fixture
def sas_root(tmp_path, frame_maker):
    root = tmp_path / "sas"
    for i, band in enumerate("ugriz"):
        frame_maker(
            root / "frames" / "301" / "1000" / "3",
            band=band,
            seed=i,
            data=np.full((150, 200), float(i + 1), np.float32),
        )
    return root


def client(standin, tmp_path, retries=2):
    return SasClient(standin.sas_url, tmp_path / "cache", retries=retries, timeout=5, backoff=0)


def test_server_errors_and_drops_are_retried_then_reported(sas_root, tmp_path):
    with StandIn(sas_root=sas_root) as s:
        s.inject("http500", 10, target="sas")
        with pytest.raises(FetchError, match="HTTP 500.*rerun"):
            client(s, tmp_path, retries=2).get(REF.sas_path)
        assert len(s.requests) == 3


def test_fetch_caches_verified_bytes(sas_root, tmp_path):
    with StandIn(sas_root=sas_root) as s:
        c = client(s, tmp_path)
        data, fits_bytes = c.get(REF.sas_path)
        n = len(s.requests)
        data2, _ = c.get(REF.sas_path)  # from the cache: no new request
        assert len(s.requests) == n
    src = sas_root / REF.sas_path
    assert data == data2 == src.read_bytes()
    assert (tmp_path / "cache" / REF.sas_path).read_bytes() == src.read_bytes()
    assert fits_bytes.startswith(b"SIMPLE")


def test_truncated_download_is_retried_never_cached(sas_root, tmp_path):
    with StandIn(sas_root=sas_root) as s:
        s.inject("truncate", 1, target="sas")
        c = client(s, tmp_path)
        c.get(REF.sas_path)
        assert sum(r.fault == "truncate" for r in s.requests) == 1
        assert (tmp_path / "cache" / REF.sas_path).read_bytes() == (
            sas_root / REF.sas_path
        ).read_bytes()

        s.inject("truncate", 5, target="sas")
        other = FrameRef("g", 1000, 3, 42)
        with pytest.raises(FetchError, match="truncated"):
            client(s, tmp_path, retries=2).get(other.sas_path)
    folder = tmp_path / "cache" / other.sas_path
    assert not folder.exists()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no .part files


def test_server_errors_and_drops_are_retried(sas_root, tmp_path):
    with StandIn(sas_root=sas_root) as s:
        s.inject("http500", 1, target="sas")
        s.inject("drop", 1, target="sas")
        s.inject("html200", 1, target="sas")  # an error page with status 200 is no frame
        data, _ = client(s, tmp_path, retries=3).get(REF.sas_path)
    assert data == (sas_root / REF.sas_path).read_bytes()


def test_missing_frame_is_a_clear_error(sas_root, tmp_path):
    with StandIn(sas_root=sas_root) as s, pytest.raises(FetchError, match="404"):
        client(s, tmp_path).get(FrameRef("r", 9999, 1, 1).sas_path)


def test_corrupt_cache_entry_is_fetched_again(sas_root, tmp_path):
    bad = tmp_path / "cache" / REF.sas_path
    bad.parent.mkdir(parents=True)
    bad.write_bytes((sas_root / REF.sas_path).read_bytes()[:100])
    with StandIn(sas_root=sas_root) as s:
        client(s, tmp_path).get(REF.sas_path)
        assert len(s.requests) == 1
    assert bad.read_bytes() == (sas_root / REF.sas_path).read_bytes()


def test_cutout_from_the_sas_with_a_frames_table(sas_root, tmp_path):
    """pz-query frames' table -> frames fetched once into the cache -> cutouts; a frame that
    404s flags its rows instead of failing the run."""
    frames = pa.table(
        {
            "run": [1000],
            "rerun": ["301"],
            "camcol": [3],
            "field": [42],
            "ra_min": [149.98],
            "ra_max": [150.02],
            "dec_min": [1.985],
            "dec_max": [2.015],
        }
    )
    cat = pa.table({"objID": [7, 8], "ra": [150.0, 150.002], "dec": [2.0, 2.001]})
    (sas_root / FrameRef("z", 1000, 3, 42).sas_path).unlink()  # z is missing on the server
    with StandIn(sas_root=sas_root) as s:
        out = cutout(cat, frame_index=frames, sas_url=s.sas_url, cache=tmp_path / "c", workers=1)
        n = len(s.requests)
        again = cutout(cat, frame_index=frames, sas_url=s.sas_url, cache=tmp_path / "c", workers=1)
        assert len(s.requests) == n + 1  # only the missing z is asked again
    assert out.column("objID").to_pylist() == [7, 8]
    nfr = np.array(out.column("n_frames").to_pylist())
    assert nfr.tolist() == [[1, 1, 1, 1, 0]] * 2
    flags = np.array(out.column("cutout_flags").to_pylist())
    assert (flags & FLAG_FETCH_FAILED).all() and (flags & FLAG_MISSING_BAND).all()
    img = out.column("image").combine_chunks().to_numpy_ndarray()
    for b in range(4):  # constant frames b+1: the cutout is the constant (times ~1 flux scale)
        assert np.allclose(img[..., b], b + 1, rtol=1e-3)
    assert (img[..., 4] == 0).all()
    assert again.equals(out)


def test_own_field_fallback(sas_root, tmp_path, cli):
    """Without a frames table, each row's own run/camcol/field columns name its frames."""
    cat = tmp_path / "cat.parquet"
    pq.write_table(
        pa.table(
            {
                "specObjID": [1],
                "ra": [150.0],
                "dec": [2.0],
                "run": [1000],
                "rerun": [301],
                "camcol": [3],
                "field": [42],
            }
        ),
        cat,
    )
    with StandIn(sas_root=sas_root) as s:
        r = cli(
            "pz-cutout",
            str(cat),
            "--sas-url",
            s.sas_url,
            "--cache",
            str(tmp_path / "c"),
            "-o",
            str(tmp_path / "out.parquet"),
        )
    assert r.returncode == 0, r.stderr.decode()
    assert b"own field" in r.stderr
    t = pq.read_table(tmp_path / "out.parquet")
    assert t.column("n_frames").to_pylist() == [[1, 1, 1, 1, 1]]


def test_each_frame_read_once_across_overlapping_fields(tmp_path, frame_maker):
    """Three overlapping fields along RA: galaxies grouped by frame, every frame read once;
    galaxies in the overlaps combine both fields' frames."""
    d = tmp_path / "fields"
    step = 45.0 / 3600  # frames are 59" along RA: neighbours overlap by ~14"
    for k in range(3):
        for i, band in enumerate("ugriz"):
            frame_maker(
                d / f"f{k}",
                band=band,
                field=40 + k,
                ra0=150.0 + k * step,
                data=np.full((150, 200), float(i + 1), np.float32),
                compress=False,
            )
    ra = np.linspace(150.0 - 10 / 3600, 150.0 + 2 * step + 10 / 3600, 40)
    rng = np.random.default_rng(3)
    cat = pa.table({"id": rng.permutation(40), "ra": rng.permutation(ra), "dec": np.full(40, 2.0)})
    logs: list[str] = []
    out = cutout(cat, frames=d, workers=1, log=logs.append)
    assert any("15 frame reads of 15 frames" in m for m in logs)
    nfr = np.array(out.column("n_frames").to_pylist())
    assert nfr.min() >= 1 and (nfr == 2).any() and (nfr[:, 0] == nfr[:, 4]).all()
    img = out.column("image").combine_chunks().to_numpy_ndarray()
    for b in range(5):
        assert np.allclose(img[..., b], b + 1, rtol=1e-3)  # covered everywhere, no seams


def test_resume_after_sigkill(tmp_path, frame_maker):
    """kill -9 in the middle of a run; the rerun resumes from OUT.partial/ and gives the same
    table as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    d = tmp_path / "f"
    for i, band in enumerate("ugriz"):
        frame_maker(d, band=band, nx=400, ny=300, seed=i, compress=False)
    rng = np.random.default_rng(0)
    n = 600
    cat = tmp_path / "cat.parquet"
    pq.write_table(
        pa.table(
            {
                "id": np.arange(n),
                "ra": 150 + rng.uniform(-0.01, 0.01, n),
                "dec": 2 + rng.uniform(-0.015, 0.015, n),
            }
        ),
        cat,
    )
    out = tmp_path / "out.parquet"
    cmd = [
        sys.executable,
        "-m",
        "photoz_tools.cli.cutout",
        str(cat),
        "--frames",
        str(d),
        "-o",
        str(out),
        "-j",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = tmp_path / "out.parquet.partial" / "done.txt"
    t0 = time.time()
    while time.time() - t0 < 120 and proc.poll() is None:
        if done.is_file() and done.read_text().strip():
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:
        pytest.skip("the run finished before it could be killed")
    assert not out.exists()
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and "resuming" in r.stderr, r.stderr
    ref = cutout(str(cat), None, frames=d, workers=1)
    got = pq.read_table(out)
    assert got.column("image").equals(ref.column("image"))
    assert got.column("id").equals(ref.column("id"))
