"""Bad input gets one clear TableError line naming the file (and column/row), never a traceback."""

from __future__ import annotations

import bz2
import gzip

import fitsio
import numpy as np
import pyarrow as pa
import pytest

from photoz_tools import tables as T
from photoz_tools.errors import PzError


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and isinstance(exc.value, PzError)
    return text


def test_missing_file(tmp_path):
    with pytest.raises(T.TableError) as exc:
        T.open_table(tmp_path / "nope.fits")
    assert one_line(exc) == f"{tmp_path / 'nope.fits'}: no such file"


def test_folder_is_not_a_table(tmp_path):
    with pytest.raises(T.TableError, match="is a folder"):
        T.open_table(tmp_path)


@pytest.mark.parametrize("ext", ["fits", "parquet", "csv", "fits.gz", "dat"])
def test_empty_file(tmp_path, ext):
    path = tmp_path / f"empty.{ext}"
    path.write_bytes(b"")
    with pytest.raises(T.TableError) as exc:
        T.open_table(path)
    assert one_line(exc) == f"{path}: empty file (0 bytes), not a table"


def test_truncated_fits(tmp_path, table):
    path = tmp_path / "t.fits"
    T.write_table(table, path)
    data = path.read_bytes()
    cut = tmp_path / "cut.fits"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(T.TableError) as exc:
        T.open_table(cut)
    msg = one_line(exc)
    assert msg.startswith(f"{cut}: truncated FITS file") and str(len(data) // 2) in msg


def test_fits_cut_inside_header(tmp_path, table):
    path = tmp_path / "t.fits"
    T.write_table(table, path)
    cut = tmp_path / "cut.fits"
    cut.write_bytes(path.read_bytes()[:4000])  # primary HDU complete, table header cut
    with pytest.raises(T.TableError) as exc:
        T.open_table(cut)
    assert one_line(exc).startswith(f"{cut}: ")


def test_corrupted_fits_header(tmp_path):
    path = tmp_path / "bad.fits"
    path.write_bytes(b"SIMPLE  = " + b"garbage" * 500)
    with pytest.raises(T.TableError) as exc:
        T.open_table(path)
    assert one_line(exc).startswith(f"{path}: not a readable FITS file")


def test_fits_extension_but_not_fits(tmp_path):
    path = tmp_path / "t.fits"
    path.write_bytes(b"\x00\x01binary junk" * 100)
    with pytest.raises(T.TableError) as exc:
        T.open_table(path)
    assert "not a FITS file" in one_line(exc)


def test_truncated_parquet(tmp_path, table):
    path = tmp_path / "t.parquet"
    T.write_table(table, path)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(T.TableError) as exc:
        T.open_table(cut)
    assert one_line(exc).startswith(f"{cut}: not a readable Parquet file (truncated or corrupted?)")


def test_corrupted_parquet_pages(tmp_path, table_factory):
    """A footer that parses but garbage pages: the error comes while streaming, still one line."""
    table = table_factory(40).select(["specObjID", "pdf"])
    path = tmp_path / "t.parquet"
    T.write_table(table, path)
    data = bytearray(path.read_bytes())
    for i in range(200, min(len(data) - 2000, 20000)):
        data[i] = (data[i] * 7 + 13) % 256
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(data))
    with pytest.raises(T.TableError) as exc:
        with T.open_table(bad) as reader:
            for batch in reader.iter_batches():
                T.column_array(batch, "pdf")
    assert one_line(exc).startswith(f"{bad}: ")


def test_image_only_fits_has_no_table(tmp_path):
    path = tmp_path / "image.fits"
    fitsio.write(str(path), np.zeros((64, 64), np.float32))
    with pytest.raises(T.TableError) as exc:
        T.open_table(path)
    msg = one_line(exc)
    assert msg.startswith(f"{path}: no table HDU in this FITS file")
    assert "HDU 0: image 64x64" in msg


def test_corrupt_gzip_and_bzip2(tmp_path, table):
    T.write_table(table.select(["specObjID"]), tmp_path / "t.fits")
    raw = (tmp_path / "t.fits").read_bytes()
    for ext, packed in (("gz", gzip.compress(raw)), ("bz2", bz2.compress(raw))):
        path = tmp_path / f"cut.fits.{ext}"
        path.write_bytes(packed[: len(packed) // 2])
        with pytest.raises(T.TableError) as exc:
            T.open_table(path)
        assert one_line(exc).startswith(f"{path}: corrupt or truncated")


def test_unknown_format(tmp_path):
    path = tmp_path / "table.dat"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(T.TableError) as exc:
        T.open_table(path)
    assert "cannot tell the table format" in one_line(exc)


def test_missing_required_column_named_and_listed(tmp_path, table):
    T.write_table(table.select(["specObjID", "ra", "z"]), tmp_path / "t.fits")
    with pytest.raises(T.TableError) as exc:
        T.open_table(tmp_path / "t.fits", columns=["ra", "image"])
    assert one_line(exc) == f"{tmp_path / 't.fits'}: no column 'image' (columns: specObjID, ra, z)"
    reader = T.open_table(tmp_path / "t.fits")
    with pytest.raises(T.TableError) as exc:
        T.require_columns(reader, ["z", "zphot"], what="the --zphot column")
    assert one_line(exc) == (
        f"{tmp_path / 't.fits'}: no column 'zphot' (the --zphot column; columns: specObjID, ra, z)"
    )
    with pytest.raises(T.TableError, match="did you mean 'z'"):
        T.require_columns(reader.schema, ["Z"], what="pred.fits")
    T.require_columns(reader, ["ra", "z"])


def test_wrong_image_dtype_and_shape(tmp_path):
    table = pa.table(
        {
            "image": T.to_arrow(np.zeros((2, 64, 64, 5), np.float64)),
            "small": T.to_arrow(np.zeros((2, 32, 32, 5), np.float32)),
            "pdf": T.to_arrow(np.zeros((2, 100), np.float32)),
            "pdf64": T.to_arrow(np.zeros((2, 180), np.float64)),
        }
    )
    T.write_table(table, tmp_path / "t.fits")
    reader = T.open_table(tmp_path / "t.fits")
    with pytest.raises(T.TableError) as exc:
        T.check_cell(reader, "image", (64, 64, 5), "float32")
    assert one_line(exc) == (
        f"{tmp_path / 't.fits'}: column 'image' holds float64 (64, 64, 5) "
        "cells; expected float32 (64, 64, 5)"
    )
    with pytest.raises(T.TableError, match=r"'small' holds float32 \(32, 32, 5\) cells; expected"):
        T.check_cell(reader, "small", (64, 64, 5), "float32")
    with pytest.raises(
        T.TableError,
        match=r"'pdf' holds float32 \(100,\) cells; expected "
        r"float32 or float16 \(180\)",
    ):
        T.check_cell(reader, "pdf", (180,), ("float32", "float16"))
    assert T.check_cell(reader, "pdf", (None,), ("float32", "float16")) == (100,)
    with pytest.raises(T.TableError, match="'pdf64' holds float64"):
        T.check_cell(reader.schema, "pdf64", (None,), ("float32", "float16"), what="in.fits")
    with pytest.raises(T.TableError, match="no column 'cube'"):
        T.check_cell(reader, "cube", (64, 64, 5), "float32")


def test_scalar_where_image_expected(tmp_path):
    schema = pa.schema([("image", pa.float32())])
    with pytest.raises(T.TableError, match=r"x.parquet: column 'image' holds float32 scalar"):
        T.check_cell(schema, "image", (64, 64, 5), "float32", what="x.parquet")


def test_nan_and_inf_in_required_columns(table_factory):
    table = table_factory(10)
    ebv = np.full(10, 0.05)
    ebv[[3, 7]] = [np.nan, np.inf]
    batch = table.append_column("ebv", pa.array(ebv)).to_batches()[0]
    T.check_finite(batch, ["z", "image"], "cat.fits", "--drop-bad")
    with pytest.raises(T.TableError) as exc:
        T.check_finite(batch, ["z", "ebv"], "cat.fits", "--drop-bad", row_offset=1000)
    assert one_line(exc) == (
        "cat.fits: column 'ebv' has NaN/inf or null values in 2 rows of "
        "rows 1000-1009 (first: row 1003); --drop-bad drops those rows"
    )
    image = T.column_array(batch, "image").copy()
    image[5, 10, 10, 2] = np.nan
    bad = pa.record_batch([T.to_arrow(image)], names=["image"])
    with pytest.raises(T.TableError, match="'image' has NaN/inf or null values in 1 row "):
        T.check_finite(bad, ["image"], "cat.fits", "--drop-bad")
    keep = T.finite_rows(batch, ["ebv", "z"])
    assert keep.tolist() == [i not in (3, 7) for i in range(10)]


def test_duplicate_ids():
    T.check_unique_ids(np.arange(5, dtype=np.int64), "objID", "cat.fits")
    ids = np.array([5, 1237648720693755918, 3, 1237648720693755918, 5, 5], dtype=np.int64)
    with pytest.raises(T.TableError) as exc:
        T.check_unique_ids(ids, "objID", "cat.fits")
    assert one_line(exc).startswith(
        "cat.fits: 2 duplicate values in id column 'objID' (e.g. 5 appears 3 times)"
    )
    with pytest.raises(T.TableError, match="1 duplicate value in id column 'id'"):
        T.check_unique_ids(pa.array([1, 2, 2]), "id", "x.parquet")


def test_image_column_to_csv_refused(tmp_path, table):
    with pytest.raises(T.TableError) as exc:
        T.write_table(table, tmp_path / "t.csv")
    assert one_line(exc) == (
        f"{tmp_path / 't.csv'}: column 'image' holds 64x64x5 cells, which "
        "CSV cannot store; write FITS or Parquet, or drop the column"
    )
    with pytest.raises(T.TableError, match="'pdf' holds 180-value cells"):
        T.write_table(table.select(["specObjID", "pdf"]), tmp_path / "t.csv")
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_extension_and_missing_folder(tmp_path, table):
    with pytest.raises(T.TableError, match="cannot tell the output format"):
        T.write_table(table, tmp_path / "out.txt")
    with pytest.raises(T.TableError, match="folder .* does not exist"):
        T.write_table(table, tmp_path / "no" / "out.fits")


def test_fits_string_wider_than_first_batch(tmp_path):
    schema = pa.schema([("name", pa.string())])
    with pytest.raises(T.TableError, match=r"row 1 holds a 20-byte string, longer than the FITS"):
        with T.TableWriter(tmp_path / "t.fits", schema) as writer:
            writer.write(pa.record_batch([pa.array(["a"])], schema=schema))
            writer.write(pa.record_batch([pa.array(["x" * 20])], schema=schema))
    assert list(tmp_path.iterdir()) == []


APP = """
import sys
import typer
from photoz_tools import tables
from photoz_tools.cli import common

app = common.make_app("pz-demo", "open a table")

@app.command()
def main(path: str) -> None:
    with tables.open_table(path, columns=["z"]) as reader:
        for batch in reader.iter_batches():
            pass

sys.exit(common.run(app))
"""


@pytest.mark.parametrize("content", [b"", b"SIMPLE  = junk", None])
def test_cli_prints_one_line_and_exit_1(tmp_path, content):
    """Through the shared CLI base: one line on stderr, exit 1, no traceback."""
    import subprocess
    import sys

    script = tmp_path / "app.py"
    script.write_text(APP)
    path = tmp_path / "in.fits"
    if content is None:
        T.write_table(pa.table({"id": pa.array([1, 2])}), path)
    else:
        path.write_bytes(content)
    result = subprocess.run(
        [sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    err = result.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"pz-demo: error: {path}: ")
    if content is None:
        assert err.endswith("no column 'z' (columns: id)")


def test_output_path_is_a_folder(tmp_path, table):
    (tmp_path / "out.parquet").mkdir()
    with pytest.raises(T.TableError) as exc:
        T.write_table(table.select(["specObjID"]), tmp_path / "out.parquet")
    assert one_line(exc).startswith(f"{tmp_path / 'out.parquet'}: cannot write (")
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]
