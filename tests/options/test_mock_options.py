"""pz-mock --repeat, --deep-fraction, --epochs, --ebv, --no-compress and `serve --host`,
checked on the survey they produce (catalogue-only surveys where frames are not needed)."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("galsim")

DEEP_RA = 300.0  # the main region sits at RA ~150, the deep "Stripe 82" one at RA ~330


def _survey(pz, out, *args):
    r = pz("pz-mock", "--seed", "5", "-j", "1", "-q", "-o", str(out), *args)
    assert r.returncode == 0, r.stderr.decode()
    return pq.read_table(out / "catalog.parquet"), pq.read_table(out / "frames.parquet")


def test_repeat_renders_each_photometry_row_that_many_times(pz, tmp_path):
    z = [0.05, 0.08, 0.11, 0.15, 0.2]
    cols = {"specObjID": [1, 2, 3, 4, 5], "z": z}
    for k, b in enumerate("ugriz"):
        cols[f"dered_petro_{b}"] = [18.9 - 0.5 * k + 0.1 * i for i in range(5)]
    pq.write_table(pa.table(cols), tmp_path / "phot.parquet")
    args = ["--photometry", str(tmp_path / "phot.parquet"), "--per-field", "20", "--catalog-only"]
    cat, _ = _survey(pz, tmp_path / "sky", *args, "--repeat", "3")
    assert cat.num_rows == 15
    got = np.sort(np.asarray(cat.column("z")))
    np.testing.assert_allclose(got, np.repeat(z, 3), atol=1e-6)
    # each repeat is a new galaxy: its own position and E(B-V)
    ra = np.asarray(cat.column("ra"))
    zz = np.asarray(cat.column("z"))
    for v in z:
        assert len(set(ra[np.isclose(zz, v, atol=1e-6)].round(8))) == 3
    once, _ = _survey(pz, tmp_path / "once", *args)
    assert once.num_rows == 5


def test_deep_fraction_epochs_and_ebv(pz, tmp_path):
    n = 60
    args = ["-n", str(n), "--per-field", "15", "--catalog-only"]
    cat, index = _survey(
        pz, tmp_path / "deep", *args, "--deep-fraction", "0.5", "--epochs", "3", "--ebv", "0.1"
    )
    ra = np.asarray(cat.column("ra"))
    deep = ra > DEEP_RA
    assert deep.sum() == n // 2  # --deep-fraction 0.5
    # --epochs 3: every deep field is imaged by 3 runs, the main region's by one
    runs: dict[tuple, set] = {}
    for row in index.to_pylist():
        is_deep = row["ra_min"] > DEEP_RA
        runs.setdefault((is_deep, row["camcol"], row["field"]), set()).add(row["run"])
    deep_runs = {k: v for k, v in runs.items() if k[0]}
    assert deep_runs and all(len(v) == 3 for v in deep_runs.values())
    assert all(len(v) == 1 for k, v in runs.items() if not k[0])
    assert len({r for v in deep_runs.values() for r in v}) == 3
    # --ebv scales the dust map (its median over the whole sky; a small survey sees a local
    # patch of it): the same survey at the default 0.03 has the same galaxies, 0.3x the E(B-V)
    same, _ = _survey(pz, tmp_path / "same", *args, "--deep-fraction", "0.5", "--epochs", "3")
    np.testing.assert_allclose(np.asarray(same.column("ra")), ra)
    np.testing.assert_allclose(
        np.asarray(cat.column("ebv")), np.asarray(same.column("ebv")) * 0.1 / 0.03, rtol=1e-5
    )

    plain, plain_index = _survey(pz, tmp_path / "plain", *args)
    assert (np.asarray(plain.column("ra")) < DEEP_RA).all()  # default: no deep region
    assert len(set(plain_index.column("run").to_pylist())) == 1


def test_no_compress_writes_plain_fits_frames(pz, tmp_path):
    out = tmp_path / "sky"
    args = ["-n", "2", "--per-field", "2", "--neighbours", "0", "--stars", "0"]
    _, index = _survey(pz, out, *args, "--no-compress")
    files = sorted((out / "frames").rglob("frame-*"))
    assert len(files) == 5 * index.num_rows and files
    assert all(f.name.endswith(".fits") for f in files)
    from astropy.io import fits

    for f in files[:1]:
        assert f.read_bytes()[:6] == b"SIMPLE"
        with fits.open(f) as hdul:
            assert hdul[0].data.shape == (1489, 2048)
    # "pz-cutout --frames reads either": the galaxies are found on the plain frames
    cut = out / "cutouts.parquet"
    r = pz(
        "pz-cutout",
        str(out / "catalog.parquet"),
        "--frames",
        str(out / "frames"),
        "-j",
        "1",
        "-o",
        str(cut),
    )
    assert r.returncode == 0, r.stderr.decode()
    from photoz_tools import tables

    t = tables.read_table(cut)
    img = tables.column_array(t, "image")
    assert (tables.column_array(t, "n_frames") >= 1).all()
    centre, ring = img[:, 28:36, 28:36, 2].mean(axis=(1, 2)), img[:, :8, :, 2].mean(axis=(1, 2))
    assert (centre > ring + 0.05).all()  # a galaxy in the middle of each r-band cutout


def _free_port(host: str) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, 0))
        except OSError:
            return False
    return True


def test_serve_host_listens_on_that_address(pz, tmp_path):
    host = "127.0.0.2"
    if not _free_port(host):
        pytest.skip(f"{host} is not a local address here")
    cat, _ = _survey(pz, tmp_path / "sky", "-n", "20", "--per-field", "20", "--catalog-only")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "photoz_tools.cli.mock",
            "serve",
            str(tmp_path / "sky"),
            "--host",
            host,
            "--port",
            "0",
            "-q",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        urls = dict(proc.stdout.readline().split(None, 1) for _ in range(2))
        url = urls["skyserver"].strip()
        assert url.startswith(f"http://{host}:")
        port = int(url.split(":")[2].split("/")[0])
        out = tmp_path / "mgs.parquet"
        r = pz("pz-query", "--url", url, "-o", str(out), "--retries", "0", "--timeout", "10", "-q")
        assert r.returncode == 0, r.stderr.decode()
        assert sorted(pq.read_table(out).column("specObjID").to_pylist()) == sorted(
            cat.column("specObjID").to_pylist()
        )
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # not listening on the default address
    finally:
        proc.terminate()
        proc.wait(10)
