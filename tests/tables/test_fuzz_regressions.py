"""Regressions for the failures the fuzz and kill campaigns found (ROBUSTNESS.md #1-#7, #10):
each is the campaign's reproduction, which must now give a result or one clear line."""

from __future__ import annotations

import bz2
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photoz_tools import tables as T
from photoz_tools.tables.common import _host_tag

HARDENING = Path(__file__).resolve().parents[1] / "hardening"
#: above Linux's PID_MAX_LIMIT (2^22): no process can have it
NO_SUCH_PID = 2**22 + 1


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text.strip() and "\n" not in text.strip()
    return text


# --------------------------------------------------------------------------- #1 Parquet metadata


def test_parquet_with_a_non_utf8_metadata_key_reads(tmp_path):
    path = tmp_path / "x.parquet"
    table = pa.table({"a": [1.0]}).replace_schema_metadata({b"\xff": b"x", b"k": b"\xfe"})
    pq.write_table(table, path)
    got = T.read_table(path)
    assert got.column("a").to_pylist() == [1.0]
    with T.open_table(path) as reader:
        assert reader.metadata == {"\\xff": "x", "k": "\ufffd"}
    # and it can be written on (the escaped key is plain text now)
    T.write_table(got, tmp_path / "y.parquet")
    assert T.read_table(tmp_path / "y.parquet").column("a").to_pylist() == [1.0]


def test_parquet_with_a_non_utf8_unit_reads(tmp_path):
    path = tmp_path / "u.parquet"
    field = pa.field("ra", pa.float64(), metadata={b"unit": b"d\xffg"})
    pq.write_table(pa.table({"ra": [1.0]}, schema=pa.schema([field])), path)
    T.write_table(T.read_table(path), tmp_path / "u.fits")
    assert T.read_table(tmp_path / "u.fits").column("ra").to_pylist() == [1.0]


# --------------------------------------------------------------------------- #2, #4 FITS names


@pytest.mark.parametrize("rows", [[], [1.0]], ids=["zero-rows", "one-row"])
@pytest.mark.parametrize("name", ["ë", "\U000d9211", "ģ)ĭĥļ", "", "a ", "a\x01", "x" * 69])
def test_fits_writer_refuses_names_it_cannot_read_back(tmp_path, name, rows):
    path = tmp_path / "x.fits"
    with pytest.raises(T.TableError) as err:
        T.write_table(pa.table({name: pa.array(rows, pa.float64())}), path)
    msg = _one_line(err.value)
    assert msg.startswith(f"{path}: column {name!r} ")
    assert "Parquet" in msg
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left


def test_fits_writer_refuses_names_differing_only_in_non_ascii_or_case(tmp_path):
    path = tmp_path / "x.fits"
    with pytest.raises(T.TableError, match=r"column '!é' has a name with non-ASCII"):
        T.write_table(
            pa.table({"!é": pa.array([], pa.float64()), "!ó": pa.array([], pa.float64())}), path
        )
    # FITS matches names without regard to case: 'a' and 'A' swapped values before
    with pytest.raises(T.TableError, match=r"column 'A' has the same name as column 'a'"):
        T.write_table(pa.table({"a": [1.0], "A": [2.0]}), path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", [" a", "it's", "a&b", "x" * 68, "'" * 34, "objID"])
def test_fits_odd_but_valid_ascii_names_round_trip(tmp_path, name):
    for rows in ([], [1.5, -2.0]):
        path = tmp_path / f"ok{len(rows)}.fits"
        T.write_table(pa.table({name: pa.array(rows, pa.float64())}), path)
        got = T.read_table(path)
        assert got.column_names == [name]
        assert got.column(name).to_pylist() == rows


def test_fits_file_with_a_nameless_column_is_one_line(tmp_path):
    """A FITS file from elsewhere whose TTYPE is non-ASCII or missing (fuzz: seed 0 zero
    a=0.468931 b=0.8579 byte=139) was a KeyError."""
    import fitsio

    path = tmp_path / "x.fits"
    with fitsio.FITS(str(path), "rw", clobber=True) as f:
        f.write(np.zeros(2, dtype=[("a", "f8"), ("b", "f8")]))
    data = bytearray(path.read_bytes())
    i = data.index(b"TTYPE2  = 'b")
    data[i : i + 80] = b" " * 80  # TTYPE2 blanked out
    path.write_bytes(bytes(data))
    with pytest.raises(T.TableError) as err:
        T.read_table(path)
    assert _one_line(err.value).startswith(f"{path}: column 2 has no usable name (TTYPE2")


# --------------------------------------------------------------------------- #3 TNULL


def test_fits_non_integer_tnull_is_one_line(tmp_path):
    from astropy.io import fits

    path = tmp_path / "x.fits"
    h = fits.BinTableHDU.from_columns([fits.Column(name="a", format="J", array=np.arange(2))])
    h.header["TNULL1"] = "abc"
    h.writeto(path)
    with pytest.raises(T.TableError) as err:
        T.read_table(path)
    assert _one_line(err.value) == (
        f"{path}: column 'a': TNULL1 = 'abc' is not an integer "
        "(the null value of an integer column)"
    )


@pytest.mark.parametrize("byte", [0xA0, 0xFF])
def test_fits_header_card_with_a_non_text_byte_is_one_line(tmp_path, byte):
    """fuzz.py reader .fits, `seed 2 (empty.fits) set a=0.710133 b=0.9351 byte=160`: a byte
    that is not text where a TTYPE value starts made fitsio's header parse raise
    UnicodeDecodeError, an internal error."""
    path = tmp_path / "x.fits"
    T.write_table(pa.table({"name": pa.array([1.0, 2.0])}), path)
    data = bytearray(path.read_bytes())
    at = data.index(b"TTYPE1  = '", 2880) + len(b"TTYPE1  = ")
    data[at] = byte
    path.write_bytes(bytes(data))
    with pytest.raises(T.TableError) as err:
        T.read_table(path)
    assert _one_line(err.value).startswith(f"{path}: unreadable header of the table HDU (")


def test_fits_tnull_outside_the_column_range_maps_nothing(tmp_path):
    from astropy.io import fits

    path = tmp_path / "x.fits"
    h = fits.BinTableHDU.from_columns([fits.Column(name="a", format="J", array=np.arange(2))])
    h.header["TNULL1"] = 99999999999999999999  # was a TypeError from numpy
    h.writeto(path)
    assert T.read_table(path).column("a").to_pylist() == [0, 1]


def test_fits_integer_tnull_still_maps_nulls(tmp_path):
    path = tmp_path / "n.fits"
    T.write_table(pa.table({"a": pa.array([1, None, 3], pa.int64())}), path)
    assert T.read_table(path).column("a").to_pylist() == [1, None, 3]


# --------------------------------------------------------------------------- #5 frames


@pytest.fixture(scope="module")
def frame_bytes(tmp_path_factory) -> bytes:
    sys.path.insert(0, str(HARDENING))
    from helpers import write_frame

    path = write_frame(tmp_path_factory.mktemp("frame"), "r", np.ones((20, 30), np.float32))
    return bz2.decompress(path.read_bytes())


def _set_card(data: bytes, key: bytes, card: bytes) -> bytes:
    i = data.index(key.ljust(8) + b"=")
    return data[:i] + card.ljust(80) + data[i + 80 :]


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d: d[:10] + b"\x00" + d[11:], "frame.fits: unreadable "),  # the ROBUSTNESS repro
        (lambda d: _set_card(d, b"BITPIX", b"BITPIX  = 'x3'"), "unreadable BITPIX card"),
        (lambda d: _set_card(d, b"NAXIS1", b"NAXIS1  = 'abc'"), "unreadable NAXIS1 card"),
        (lambda d: _set_card(d, b"NAXIS1", b"NAXIS1  = -30"), "empty image"),
        (lambda d: _set_card(d, b"RUN", b"RUN     = 'abc'"), "unreadable RUN card"),
        (lambda d: _set_card(d, b"CAMCOL", b"CAMCOL  = 2.5"), "unreadable CAMCOL card"),
        (lambda d: _set_card(d, b"FRAME", b"FRAME   = 42           l"), "unreadable FRAME card"),
    ],
)
def test_load_frame_bad_header_cards_are_frame_errors(frame_bytes, change, words):
    from photoz_tools.imaging.frames import FrameError, load_frame

    with pytest.raises(FrameError) as err:
        load_frame(change(frame_bytes), name="frame.fits")
    msg = _one_line(err.value)
    assert msg.startswith("frame.fits: ") and words in msg
    assert all(" " <= c <= "~" for c in msg)


def test_load_frame_fuzz_repros(frame_bytes):
    """benchmarks/fuzz.py --only frames: `frame seed 1 flip a=0.008296 byte=15`, `seed 3 set
    a=0.156409 byte=108` raised astropy's VerifyError and a ValueError from frame_identity."""
    sys.path.insert(0, str(HARDENING.parents[1] / "benchmarks"))
    import fuzz

    from photoz_tools.imaging.frames import FrameError, load_frame

    seeds = fuzz.frame_seeds()
    for data in (
        fuzz.mutate(seeds[1], "flip", 0.008296, 0.5, 15),
        fuzz.mutate(seeds[3], "set", 0.156409, 0.5, 108),
    ):
        with pytest.raises(FrameError):
            load_frame(data, name="frame.fits")


def test_frame_identity_non_integer_cards():
    from astropy.io import fits

    from photoz_tools.imaging.frames import FrameError, frame_identity

    header = fits.Header({"RUN": "abc", "CAMCOL": 3, "FRAME": 42})
    with pytest.raises(FrameError, match=r"^x\.fits: unreadable RUN card"):
        frame_identity(header, "x.fits")
    assert frame_identity(fits.Header({"RUN": 7, "CAMCOL": 3, "FRAME": 42}), "x.fits") == (
        7,
        3,
        42,
    )
    assert frame_identity(header, "frame-r-002583-2-0136.fits.bz2") == (2583, 2, 136)


# --------------------------------------------------------------------------- #6, #7 functions


def test_bin_index_with_too_few_edges_is_a_clear_value_error():
    from photoz_tools.metrics import bin_index

    for edges in (np.array([]), np.array([0.5]), np.zeros((2, 2))):
        with pytest.raises(ValueError, match="at least 2 bin edges"):
            bin_index(np.array([0.1]), edges)
    assert bin_index(np.array([0.1, 1.0, 2.0, np.nan]), np.array([0.0, 0.5, 1.0])).tolist() == [
        0,
        1,
        -1,
        -1,
    ]


def test_pit_is_clipped_to_the_unit_interval():
    """`fuzz.make_pdf('huge', 204, 'in')`: a row with a 1e308 cell gave PIT = 1 + 2.2e-16."""
    sys.path.insert(0, str(HARDENING.parents[1] / "benchmarks"))
    import fuzz

    from photoz_tools import pdf as P

    p, z = fuzz.make_pdf("huge", 204, "in")
    bins = P.Bins.default()
    with np.errstate(over="ignore"):
        values = [
            P.pit(p, bins, z),
            P.cdf_at(p, bins, z),
            P.pit_crps(p, bins, z)[0],
            P.pit_crps_width(p, bins, z)[0],
        ]
    for v in values:
        v = np.asarray(v, float)
        assert np.all((v[np.isfinite(v)] >= 0.0) & (v[np.isfinite(v)] <= 1.0))
    # a row whose running sum overshoots 1 in the last bins
    row = np.full((1, 180), 1.0 / 180)
    row[0, -1] += 1e-15
    assert P.pit(row, bins, np.array([bins.edges[-1] - 1e-9]))[0] <= 1.0


# --------------------------------------------------------------------------- #10 stale temps


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_writer_removes_a_dead_process_temporary_and_keeps_live_ones(tmp_path):
    host = _host_tag()
    dead = [
        f".ds.parquet.{NO_SUCH_PID}@{host}.abcd1234.tmp",
        f".ds.parquet.{NO_SUCH_PID}@{host}.abcd_234.tmpz",  # a compressed copy's
    ]
    kept = [
        f".ds.parquet.{os.getpid()}@{host}.live1234.tmp",  # a live process's (this one)
        f".ds.parquet.1@{host}.init1234.tmp",  # pid 1 is alive
        f".ds.parquet.{NO_SUCH_PID}@elsewhere.abcd1234.tmp",  # another host's, recent
        ".ds.parquet.abcd1234.tmp",  # the old naming: no owner to check
        f".other.parquet.{NO_SUCH_PID}@{host}.abcd1234.tmp",  # another output's
        f".ds.parquet.{NO_SUCH_PID}@{host}.abcd1234.tmp.bak",  # not a temporary's name
    ]
    for name in dead + kept:
        (tmp_path / name).write_bytes(b"partial")
    T.write_table(pa.table({"a": [1]}), tmp_path / "ds.parquet")
    assert _temps(tmp_path) == sorted(kept)
    assert T.read_table(tmp_path / "ds.parquet").column("a").to_pylist() == [1]


def test_writer_removes_an_old_temporary_of_another_host(tmp_path):
    old = tmp_path / ".ds.fits.123@elsewhere.abcd1234.tmp"
    old.write_bytes(b"partial")
    os.utime(old, (1e9, 1e9))
    T.write_table(pa.table({"a": [1.0]}), tmp_path / "ds.fits")
    assert _temps(tmp_path) == []


def test_temporary_names_carry_the_owner_pid(tmp_path):
    writer = T.TableWriter(tmp_path / "ds.parquet", pa.schema([("a", pa.int64())]))
    try:
        (tmp,) = _temps(tmp_path)
        assert tmp.startswith(f".ds.parquet.{os.getpid()}@{_host_tag()}.")
        assert tmp.endswith(".tmp")
        # a second writer of the same output (this live process) leaves the first's alone
        T.write_table(pa.table({"a": [2]}), tmp_path / "ds.parquet")
        assert tmp in _temps(tmp_path)
        writer.write(pa.table({"a": [1]}))
        writer.close()
    finally:
        writer.abort()
    assert _temps(tmp_path) == []
    assert T.read_table(tmp_path / "ds.parquet").column("a").to_pylist() == [1]


def test_a_rerun_after_kill_9_leaves_no_temporary(tmp_path):
    """The ROBUSTNESS #10 scenario: a writer killed with SIGKILL, then the same output again."""
    dest = tmp_path / "ds.parquet"
    code = (
        "import os, signal, pyarrow as pa\nfrom photoz_tools import tables as T\n"
        "w = T.TableWriter(os.environ['DEST'], pa.schema([('a', pa.int64())]))\n"
        "w.write(pa.table({'a': list(range(1000))}))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "DEST": str(dest)}, timeout=120
    )
    assert run.returncode == -signal.SIGKILL
    assert len(_temps(tmp_path)) == 1 and not dest.exists()
    T.write_table(pa.table({"a": [1]}), dest)
    assert _temps(tmp_path) == []
    assert T.read_table(dest).column("a").to_pylist() == [1]
