"""pz-cutout options, checked by what they do, on five small synthetic SDSS-like frames:
--ra/--dec, --id, --fill, --batch-size, --format, --preview-count, --no-resume and $PZ_SWARP."""

from __future__ import annotations

import io
import os
import shutil
import stat

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

RA0, DEC0 = 150.0, 2.0
NX, NY = 200, 150
# offsets in arcsec (east, north): four well inside, one across the frame's east edge
OFFSETS = [(0, 0), (8, -5), (-10, 6), (5, 9), (33, 0)]
EDGE_ROW = 4


def _frame(path, band, data):
    from framekit import make_frame

    make_frame(path, band, ra0=RA0, dec0=DEC0, nx=NX, ny=NY, data=data, compress=False)


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    """frames folder + positions (ra, dec) of the five galaxies."""
    root = tmp_path_factory.mktemp("cutout-options")
    frames = root / "frames"
    frames.mkdir()
    cosd = np.cos(np.radians(DEC0))
    ra = np.array([RA0 + e / 3600 / cosd for e, _ in OFFSETS])
    dec = np.array([DEC0 + n / 3600 for _, n in OFFSETS])
    from astropy.wcs import WCS

    rng = np.random.default_rng(4)
    for k, band in enumerate("ugriz"):
        path = frames / f"frame-{band}-001000-3-0042.fits"
        data = rng.normal(0, 0.05, (NY, NX))
        _frame(path, band, data)
        w = WCS(str(path))
        x, y = w.all_world2pix(ra, dec, 0)
        yy, xx = np.mgrid[0:NY, 0:NX]
        for xi, yi in zip(x, y, strict=True):
            data += (1 + k) * np.exp(-((xx - xi) ** 2 + ((yy - yi) / 1.7) ** 2) / 8)
        path.unlink()
        _frame(path, band, data)
    return {"frames": frames, "ra": ra, "dec": dec, "root": root}


def _catalog(path, sky, **columns):
    n = len(sky["ra"])
    cols = {"objID": np.arange(n, dtype=np.int64) + 77, "ra": sky["ra"], "dec": sky["dec"]}
    cols.update(columns)
    pq.write_table(pa.table(cols), path)
    return path


def _images(path_or_table):
    from photoz_tools import tables

    t = (
        tables.read_table(path_or_table)
        if not isinstance(path_or_table, pa.Table)
        else path_or_table
    )
    return t, tables.column_array(t, "image")


@pytest.fixture(scope="module")
def reference(sky):
    """The default run's output table (all options at their defaults)."""
    from .conftest import invoke

    cat = _catalog(sky["root"] / "cat.parquet", sky)
    out = sky["root"] / "ref.parquet"
    r = invoke(
        "pz-cutout", str(cat), "--frames", str(sky["frames"]), "-j", "1", "-o", str(out), "-q"
    )
    assert r.returncode == 0, r.stderr.decode()
    return _images(out)


def _run(pz, sky, cat, *args):
    r = pz("pz-cutout", str(cat), "--frames", str(sky["frames"]), "-j", "1", "-q", *args)
    assert r.returncode == 0, r.stderr.decode()
    return r


def test_reference_is_sane(reference):
    t, img = reference
    flags = t.column("cutout_flags").to_pylist()
    assert [f & 1 for f in flags] == [0, 0, 0, 0, 1]  # only the edge row is flagged 'edge'
    # the galaxy sits at the centre (FITS pixel 32.5, 32.5 -> numpy [31:33, 31:33])
    assert img[0, 31:33, 31:33, 2].mean() > 0.5 * img[0, ..., 2].max()


def test_ra_dec_and_id_name_the_columns(pz, sky, reference, tmp_path):
    n = len(sky["ra"])
    gal = np.array([9, 3, 7, 1, 5], dtype=np.int64)
    cat = tmp_path / "cat.parquet"
    pq.write_table(
        pa.table(
            {
                "gal": gal,
                "RA_deg": sky["ra"],
                "DEC_deg": sky["dec"],
                # decoys under the default names: 1 degree away, off every frame
                "ra": sky["ra"] + 1.0,
                "dec": sky["dec"] - 1.0,
                "objID": np.zeros(n, dtype=np.int64),
            }
        ),
        cat,
    )
    out = tmp_path / "c.parquet"
    _run(pz, sky, cat, "--ra", "RA_deg", "--dec", "DEC_deg", "--id", "gal", "-o", str(out))
    t, img = _images(out)
    np.testing.assert_array_equal(img, reference[1])
    assert t.column("gal").to_pylist() == gal.tolist()  # rows and ids unchanged
    # --dec alone: the RA decoy is used, so every row is off the frame
    out2 = tmp_path / "d.parquet"
    _run(pz, sky, cat, "--dec", "DEC_deg", "--id", "gal", "-o", str(out2))
    t2, img2 = _images(out2)
    assert (img2 == 0).all() and all(f & 8 for f in t2.column("cutout_flags").to_pylist())
    r = pz(
        "pz-cutout",
        str(cat),
        "--frames",
        str(sky["frames"]),
        "--id",
        "nope",
        "-o",
        str(tmp_path / "x.parquet"),
    )
    assert r.returncode == 1 and b"nope" in r.stderr


def test_fill_nan_marks_exactly_the_uncovered_pixels(pz, sky, reference, tmp_path):
    cat = _catalog(tmp_path / "cat.parquet", sky)
    out = tmp_path / "nan.parquet"
    _run(pz, sky, cat, "--fill", "nan", "-o", str(out))
    t, img = _images(out)
    ref = reference[1]
    nan = np.isnan(img)
    assert not nan[:EDGE_ROW].any()  # fully covered rows: no NaN
    np.testing.assert_array_equal(img[~nan], ref[~nan])
    assert (ref[nan] == 0).all()  # NaN where the default writes SWarp's 0
    # closed form: the frame's y axis runs east (CD2_1 > 0), its centre at y = 75.5; cutout
    # column c (east left) lies (31.5 - c) pixels east of the galaxy, itself 33" east of the
    # frame centre: frame y = 75.5 + 33 / 0.396 + 31.5 - c. SWarp's valid area ends at
    # floor(y) <= NY - 3, so columns c < 190.33 - 148 = 42.33 are uncovered, in every row.
    expect = np.broadcast_to(np.arange(64) < 75.5 + 33 / 0.396 + 31.5 - (NY - 2), (64, 64))
    for band in range(5):
        np.testing.assert_array_equal(nan[EDGE_ROW, ..., band], expect)
    assert t.column("cutout_flags").to_pylist() == reference[0].column("cutout_flags").to_pylist()


def test_batch_size_sets_the_output_batches(pz, sky, reference, tmp_path, monkeypatch):
    from photoz_tools import tables

    seen = []

    class Spy(tables.TableWriter):
        def write(self, batch, *a, **k):
            seen.append(batch.num_rows)
            return super().write(batch, *a, **k)

    monkeypatch.setattr(tables, "TableWriter", Spy)
    cat = _catalog(tmp_path / "cat.parquet", sky)
    out = tmp_path / "b.parquet"
    _run(pz, sky, cat, "--batch-size", "2", "-o", str(out))
    assert seen == [2, 2, 1]  # the writer is handed batches of at most 2 rows
    np.testing.assert_array_equal(_images(out)[1], reference[1])


def test_format_writes_fits_on_stdout(pz, sky, reference, tmp_path):
    cat = _catalog(tmp_path / "cat.parquet", sky)
    r = _run(pz, sky, cat, "--format", "fits")
    assert r.stdout[:6] == b"SIMPLE"
    from astropy.io import fits

    with fits.open(io.BytesIO(r.stdout)) as hdul:
        data = hdul[1].data
        assert data["objID"].tolist() == list(range(77, 82))
        # FITS stores image[y, x, band] with TDIM = (5, 64, 64)
        np.testing.assert_array_equal(np.asarray(data["image"]), reference[1])


def test_preview_count_sets_the_cutouts_shown(pz, sky, tmp_path):
    from PIL import Image

    cat = _catalog(tmp_path / "cat.parquet", sky)
    sizes = {}
    for count in (1, 4, None):  # None: the default 16, of which the catalogue has 5
        png = tmp_path / f"p{count}.png"
        more = [] if count is None else ["--preview-count", str(count)]
        out = tmp_path / f"o{count}.parquet"
        _run(pz, sky, cat, "--preview", str(png), *more, "-o", str(out))
        sizes[count] = Image.open(png).size
    # square-ish grids: 1 panel, 2x2 for 4, 3 columns x 2 rows for all 5
    w1, h1 = sizes[1]
    assert sizes[4][0] == 2 * w1 and sizes[None][0] == 3 * w1
    assert sizes[4][1] == sizes[None][1] > h1


def test_no_resume_ignores_a_partial_folder(pz, sky, reference, tmp_path, monkeypatch):
    from photoz_tools import tables

    cat = _catalog(tmp_path / "cat.parquet", sky)
    out = tmp_path / "c.parquet"

    class Killed(tables.TableWriter):
        def write(self, *a, **k):
            raise KeyboardInterrupt  # the run dies once every cutout is in OUTPUT.partial

    with monkeypatch.context() as m:
        m.setattr(tables, "TableWriter", Killed)
        r = pz("pz-cutout", str(cat), "--frames", str(sky["frames"]), "-j", "1", "-o", str(out))
    assert r.returncode != 0 and not out.exists()
    partial = tmp_path / "c.parquet.partial"
    r_band = np.load(partial / "image_r.npy", mmap_mode="r+")
    r_band[:] = 123.0  # what a resumed run will read back
    r_band.flush()
    del r_band
    shutil.copytree(partial, tmp_path / "tampered")
    _run(pz, sky, cat, "-o", str(out))  # resumes: the partial's pixels come back
    assert (_images(out)[1][..., 2] == 123.0).all()
    out.unlink()
    shutil.copytree(tmp_path / "tampered", partial, dirs_exist_ok=True)
    _run(pz, sky, cat, "--no-resume", "-o", str(out))
    np.testing.assert_array_equal(_images(out)[1], reference[1])


def test_pz_swarp_names_the_binary(pz, sky, reference, tmp_path):
    cat = _catalog(tmp_path / "cat.parquet", sky)
    args = ["--resampler", "swarp", "-o", str(tmp_path / "s.parquet")]
    r = pz(
        "pz-cutout",
        str(cat),
        "--frames",
        str(sky["frames"]),
        "-j",
        "1",
        *args,
        env={"PZ_SWARP": str(tmp_path / "no-such-swarp")},
    )
    assert r.returncode == 1 and b"no-such-swarp" in r.stderr, r.stderr.decode()
    real = shutil.which("SWarp") or shutil.which("swarp")
    if real is None:
        pytest.skip("SWarp not installed: only the refusal of a missing $PZ_SWARP is checked")
    log = tmp_path / "calls.txt"
    wrapper = tmp_path / "my-swarp"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    r = pz(
        "pz-cutout",
        str(cat),
        "--frames",
        str(sky["frames"]),
        "-j",
        "1",
        "-q",
        *args,
        env={"PZ_SWARP": str(wrapper), "PATH": os.environ["PATH"]},
    )
    assert r.returncode == 0, r.stderr.decode()
    assert log.is_file() and "-RESAMPLING_TYPE LANCZOS3" in log.read_text()
    _, img = _images(tmp_path / "s.parquet")
    covered = reference[1] != 0
    np.testing.assert_allclose(img[covered], reference[1][covered], atol=2e-3)
