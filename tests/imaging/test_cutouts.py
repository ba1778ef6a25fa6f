"""pz-cutout end to end on the real field: frames folders, flags, median, resume, the CLI."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photoz_tools.imaging.cutouts import (
    FLAG_EDGE,
    FLAG_MISSING_BAND,
    FLAG_OFF_FRAME,
    cutout,
    cutouts_from_frames,
    resample_on_frame,
)
from photoz_tools.imaging.frames import noise_rms

STAR = (323.397681, -0.761918)
GALAXY = (323.384263, -0.679296)


def catalogue(real_frames) -> pa.Table:
    ra_e, dec_e = real_frames["r"].pixel_to_world(np.array([20.0]), np.array([700.0]))
    return pa.table(
        {
            "objID": np.array([11, 5, 3, 99], dtype=np.int64),
            "ra": [STAR[0], GALAXY[0], float(ra_e[0]), 10.0],
            "dec": [STAR[1], GALAXY[1], float(dec_e[0]), 10.0],
            "z": [0.1, 0.2, 0.3, 0.4],
        }
    )


@pytest.fixture(scope="module")
def plain_dir(plain_frames):
    return next(iter(plain_frames.values())).parent


@pytest.fixture(scope="module")
def reference(plain_dir, real_frames):
    """The cutouts of the test catalogue from the uncompressed frames (2 worker processes)."""
    return cutout(catalogue(real_frames), frames=plain_dir, workers=2)


def test_cutouts_from_a_frames_folder(reference, real_frames):
    t = reference
    assert t.column("objID").to_pylist() == [11, 5, 3, 99]  # ids and order kept
    assert t.column("z").to_pylist() == [0.1, 0.2, 0.3, 0.4]  # other columns pass through
    img = t.column("image").combine_chunks().to_numpy_ndarray()
    assert img.shape == (4, 64, 64, 5) and img.dtype == np.float32
    cat = catalogue(real_frames)
    for b, band in enumerate("ugriz"):  # each band is its frame resampled, [y, x, band]
        v, ok = resample_on_frame(
            real_frames[band], np.asarray(cat["ra"])[:3], np.asarray(cat["dec"])[:3]
        )
        assert np.array_equal(np.where(ok, v, 0), img[:3, :, :, b])
    nfr = np.array(t.column("n_frames").to_pylist())
    flags = np.array(t.column("cutout_flags").to_pylist())
    assert nfr[:3].tolist() == [[1] * 5] * 3 and nfr[3].tolist() == [0] * 5
    assert flags[0] == 0 and flags[1] == 0
    assert flags[2] & FLAG_EDGE and not flags[2] & FLAG_MISSING_BAND
    assert flags[3] & FLAG_MISSING_BAND and flags[3] & FLAG_OFF_FRAME
    assert (img[3] == 0).all() and (img[2] == 0).any()  # SWarp's 0, flagged
    # north up, east left: the star is a peak at FITS (32.5, 32.5) -> numpy [31:33, 31:33]
    r = img[0, :, :, 2]
    assert r[31:33, 31:33].sum() > 0.5 * r.max()


def test_compressed_frames_any_layout_and_fill_nan(field_dir, real_frames, reference, tmp_path):
    """The shared folder holds .fits.bz2 frames and a psField file (skipped); --fill nan."""
    nested = tmp_path / "mirror" / "a" / "b"
    nested.mkdir(parents=True)
    for p in field_dir.iterdir():
        (nested / p.name).symlink_to(p)
    cat = catalogue(real_frames).slice(2, 2)
    t = cutout(cat, frames=tmp_path / "mirror", fill="nan", workers=1)
    img = t.column("image").combine_chunks().to_numpy_ndarray()
    ref = reference.column("image").combine_chunks().to_numpy_ndarray()[2:]
    covered = np.isfinite(img)
    assert np.isnan(img[1]).all() and not covered[0].all() and covered[0].any()
    assert np.array_equal(img[covered], ref[covered])


def test_median_of_overlapping_frames(plain_frames, real_frames, tmp_path, frame_maker):
    """Two epochs of r (the second x3): SWarp's median of two is their mean, n_frames 2."""
    from astropy.io import fits

    d = tmp_path / "epochs"
    d.mkdir()
    for p in plain_frames.values():
        (d / p.name).symlink_to(p)
    with fits.open(plain_frames["r"]) as hdul:
        hdul[0].data = hdul[0].data * 3
        hdul[0].header["RUN"] = 4000
        hdul.writeto(d / "frame-r-004000-2-0136.fits")
    res = cutouts_from_frames(
        [STAR[0]], [STAR[1]], [d / "frame-r-004000-2-0136.fits", plain_frames["r"]]
    )
    single, _ = resample_on_frame(real_frames["r"], [STAR[0]], [STAR[1]])
    assert res.n_frames[0].tolist() == [0, 0, 2, 0, 0]
    assert np.allclose(res.images[0, :, :, 2], 2 * single[0], rtol=1e-5, atol=1e-6)
    t = cutout(pa.table({"id": [1], "ra": [STAR[0]], "dec": [STAR[1]]}), frames=d, workers=1)
    assert t.column("n_frames").to_pylist() == [[1, 1, 2, 1, 1]]


@pytest.mark.swarp
def test_swarp_backend_matches_native_on_a_median(plain_frames, real_frames, tmp_path, swarp):
    from astropy.io import fits

    d = tmp_path / "epochs"
    d.mkdir()
    for band in "gr":
        (d / plain_frames[band].name).symlink_to(plain_frames[band])
    for k, scale in ((4000, 3.0), (4001, 0.5)):
        with fits.open(plain_frames["r"]) as hdul:
            hdul[0].data = hdul[0].data * scale
            hdul[0].header["RUN"] = k
            hdul.writeto(d / f"frame-r-00{k}-2-0136.fits")
    cat = pa.table({"id": [1, 2], "ra": [STAR[0], GALAXY[0]], "dec": [STAR[1], GALAXY[1]]})
    nat = cutout(cat, frames=d, workers=1)
    sw = cutout(cat, frames=d, workers=1, resampler="swarp")
    a = nat.column("image").combine_chunks().to_numpy_ndarray()
    b = sw.column("image").combine_chunks().to_numpy_ndarray()
    assert (
        nat.column("n_frames").to_pylist()
        == sw.column("n_frames").to_pylist()
        == [[0, 1, 3, 0, 0]] * 2
    )
    rms = noise_rms(real_frames["r"].image)
    assert np.abs(a - b).max() < 0.01 * rms


def test_resume_after_a_kill(plain_dir, real_frames, reference, tmp_path):
    """A run stopped after its first task leaves OUT.partial/; the rerun finishes the rest."""
    cat = tmp_path / "cat.parquet"
    pq.write_table(catalogue(real_frames), cat)
    out = tmp_path / "cut.parquet"

    class Killer:
        def update(self, **kw):
            pass

        def advance(self, n=1):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cutout(str(cat), out, frames=plain_dir, workers=1, progress=Killer())
    assert not out.exists() and (tmp_path / "cut.parquet.partial" / "done.txt").read_text()
    logs: list[str] = []
    cutout(str(cat), out, frames=plain_dir, workers=1, log=logs.append)
    assert any("resuming: 1 of" in m for m in logs)
    assert not (tmp_path / "cut.parquet.partial").exists()
    t = pq.read_table(out)
    assert t.column("image").equals(reference.column("image"))
    assert t.column("cutout_flags").equals(reference.column("cutout_flags"))


def test_cli_end_to_end_with_preview(plain_dir, real_frames, reference, tmp_path, cli):
    cat = tmp_path / "cat.fits"
    from astropy.table import Table

    Table(catalogue(real_frames).to_pydict()).write(cat)
    png = tmp_path / "p.png"
    r = cli(
        "pz-cutout",
        str(cat),
        "--frames",
        str(plain_dir),
        "-o",
        str(tmp_path / "c.fits"),
        "--preview",
        str(png),
        "-j",
        "2",
    )
    assert r.returncode == 0, r.stderr.decode()
    assert b"flagged missing_band" in r.stderr and png.stat().st_size > 10_000
    from photoz_tools.tables import read_table

    t = read_table(tmp_path / "c.fits")
    img = t.column("image").combine_chunks().to_numpy_ndarray()
    ref = reference.column("image").combine_chunks().to_numpy_ndarray()
    assert np.array_equal(img, ref)
    r = cli("pz-cutout", str(cat), "--frames", str(plain_dir), "-q")  # parquet on stdout
    assert r.returncode == 0 and r.stdout[:4] == b"PAR1" and r.stderr == b""


def test_cli_errors_and_help(tmp_path, cli, plain_dir):
    cat = tmp_path / "cat.parquet"
    pq.write_table(pa.table({"id": [1], "RA_deg": [1.0], "dec": [1.0]}), cat)
    r = cli("pz-cutout", str(cat), "--frames", str(plain_dir))
    err = r.stderr.decode()
    assert r.returncode == 1 and "no column 'ra'" in err and "--ra" in err
    assert len(err.strip().splitlines()) == 1
    r = cli("pz-cutout", str(cat), "--ra", "RA_deg")
    assert r.returncode == 1 and "--frames DIR" in r.stderr.decode()
    r = cli("pz-cutout", str(cat), "--ra", "RA_deg", "--frames", str(tmp_path / "nope"))
    assert r.returncode == 1 and "no such folder" in r.stderr.decode()
    t0 = time.perf_counter()
    r = cli("pz-cutout", "--help")
    assert r.returncode == 0 and time.perf_counter() - t0 < 5
    assert b"pz-cutout galaxies.parquet --frames" in r.stdout.strip().splitlines()[-1]
    assert b"Example" in b"".join(r.stdout.strip().splitlines()[-5:])
    import subprocess
    import sys

    code = (
        "import sys, photoz_tools.cli.cutout; "
        "print(any(m in sys.modules for m in ('numpy', 'astropy', 'pyarrow')))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
        == "False"
    )


def test_shutil_which_swarp_optional():
    """--resampler swarp fails with one clear line where SWarp is absent."""
    from photoz_tools.errors import PzError
    from photoz_tools.imaging import swarp

    if shutil.which("SWarp"):
        assert swarp.swarp_binary()
    else:
        with pytest.raises(PzError, match="apt-get install swarp"):
            swarp.swarp_binary()


def test_rows_off_every_frame_are_filled_and_flagged(plain_dir):
    t = cutout(
        {"id": [1, 2], "ra": [10.0, 11.0], "dec": [10.0, 10.0]},
        frames=plain_dir,
        workers=1,
        fill="nan",
    )
    assert np.isnan(t.column("image").combine_chunks().to_numpy_ndarray()).all()
    assert t.column("n_frames").to_pylist() == [[0] * 5] * 2
    assert t.column("cutout_flags").to_pylist() == [FLAG_MISSING_BAND | FLAG_OFF_FRAME] * 2


def test_partial_of_another_input_is_not_reused(plain_dir, real_frames, reference, tmp_path):
    """A leftover OUT.partial/ from a different catalogue is discarded, not resumed."""
    out = tmp_path / "cut.parquet"
    other = pa.table({"objID": [1], "ra": [STAR[0] + 0.001], "dec": [STAR[1]]})

    class Killer:
        def update(self, **kw):
            pass

        def advance(self, n=1):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cutout(other, out, frames=plain_dir, workers=1, progress=Killer())
    assert (tmp_path / "cut.parquet.partial").is_dir()
    logs: list[str] = []
    cutout(catalogue(real_frames), out, frames=plain_dir, workers=1, log=logs.append)
    assert not any("resuming" in m for m in logs)
    assert pq.read_table(out).column("image").equals(reference.column("image"))
