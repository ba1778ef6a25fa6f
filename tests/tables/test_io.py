"""stdin (spooled, sniffed), stdout (--format), closed pipes and atomic writes."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import stat
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photoz_tools import tables as T

READ_STDIN = (
    "import sys, json; from photoz_tools import tables as T\n"
    "cols = sys.argv[1].split(',') if len(sys.argv) > 1 and sys.argv[1] else None\n"
    "r = T.open_table('-', columns=cols)\n"
    "t = r.read()\n"
    "print(json.dumps([r.name, r.format, r.num_rows, t.column_names, r.metadata.get('k')]))\n"
    "T.write_table(t, '-', format=sys.argv[2] if len(sys.argv) > 2 else None)\n"
    "r.close()\n"
)


def run_py(code: str, *args: str, stdin: bytes = b"", env: dict | None = None):
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize("kind", ["parquet", "fits", "fits.gz", "fits.bz2", "csv", "ecsv"])
def test_stdin_sniffed_and_stdout_roundtrip(tmp_path, table, same, kind):
    if kind in ("csv", "ecsv"):
        table = table.select(["specObjID", "ra", "z", "class"])
    path = tmp_path / f"t.{kind}"
    T.write_table(table, path, metadata={"k": "v"})
    spool = tmp_path / "spool"
    spool.mkdir()
    fmt = "parquet" if kind == "fits" else "fits"
    if kind in ("csv", "ecsv"):
        fmt = "csv" if kind == "ecsv" else "ecsv"
    result = run_py(READ_STDIN, "", fmt, stdin=path.read_bytes(), env={"TMPDIR": str(spool)})
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.split(b"\n", 1)
    name, got_format, rows, names, k = __import__("json").loads(lines[0])
    assert (name, got_format.split(".")[0], rows) == ("stdin", kind.split(".")[0], table.num_rows)
    assert names == table.column_names
    if kind not in ("csv",):
        assert k == "v"
    out = tmp_path / f"out.{fmt}"
    out.write_bytes(lines[1])
    back = T.read_table(out)
    if kind in ("csv", "ecsv"):
        assert back.column("specObjID").to_pylist() == table.column("specObjID").to_pylist()
    else:
        same(table, back)
    assert list(spool.iterdir()) == []  # spooled copies are removed


def test_stdin_column_selection_and_default_parquet(tmp_path, table):
    T.write_table(table, tmp_path / "t.fits")
    result = run_py(READ_STDIN, "pdf,specObjID", stdin=(tmp_path / "t.fits").read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    data = result.stdout.split(b"\n", 1)[1]
    assert data[:4] == b"PAR1"  # stdout defaults to Parquet
    back = pq.read_table(io.BytesIO(data))
    assert back.column_names == ["pdf", "specObjID"]
    assert np.array_equal(T.column_array(back, "pdf"), T.column_array(table, "pdf"))


def test_stdin_empty_is_one_line_error():
    result = run_py(
        "from photoz_tools import tables as T\n"
        "try:\n    T.open_table(None)\nexcept T.TableError as e:\n    print(e)"
    )
    assert result.stdout.decode().strip() == "stdin: empty input on stdin (0 bytes), not a table"


def test_stdin_is_spooled_not_read_into_memory(tmp_path, table_factory):
    """A 60 MB table on stdin: the reader's RSS stays well below the file size."""
    table = table_factory(180)  # 180 x 80 KB images = 59 MB
    path = tmp_path / "t.parquet"
    T.write_table(table, path)
    code = (
        "import resource\nfrom photoz_tools import tables as T\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "with T.open_table('-', batch_rows=8) as r:\n"
        "    n = sum(b.num_rows for b in r.iter_batches())\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(n, (peak - base) // 1024)\n"
    )
    with open(path, "rb") as fin:
        result = subprocess.run(
            [sys.executable, "-c", code], stdin=fin, capture_output=True, timeout=120
        )
    assert result.returncode == 0, result.stderr.decode()
    rows, grown_mb = map(int, result.stdout.split())
    assert rows == 180
    assert grown_mb < 40, f"RSS grew by {grown_mb} MB reading a 59 MB table from stdin"


WRITE_STDOUT = (
    "import sys, numpy as np\nfrom photoz_tools import tables as T\n"
    "import pyarrow as pa\n"
    "schema = pa.schema([('pdf', pa.list_(pa.float32(), 180))])\n"
    "pdf = np.random.default_rng(0).random((20000, 180), np.float32)\n"
    "batch = pa.record_batch([T.to_arrow(pdf)], schema=schema)\n"
    "try:\n"
    "    with T.TableWriter('-', schema, format=sys.argv[1]) as w:\n"
    "        for _ in range(5):\n"
    "            w.write(batch)\n"
    "except BrokenPipeError:\n"
    "    sys.stderr.write('BrokenPipeError\\n')\n"
    "    sys.exit(3)\n"
)


@pytest.mark.parametrize("fmt", ["parquet", "fits"])
def test_closed_stdout_raises_broken_pipe(tmp_path, fmt):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITE_STDOUT, fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    head = proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 3, err
    assert err.strip().splitlines()[-1] == "BrokenPipeError"
    assert head[:4] in (b"PAR1", b"SIMP")
    assert list(tmp_path.iterdir()) == []  # the stdout spool is gone too


def test_atomic_write_replaces_only_on_close(tmp_path, table):
    dest = tmp_path / "out.fits"
    dest.write_bytes(b"old")
    writer = T.TableWriter(dest, table.schema)
    writer.write(table)
    assert dest.read_bytes() == b"old"
    temps = [p for p in tmp_path.iterdir() if p.name != "out.fits"]
    assert len(temps) == 1 and temps[0].name.startswith(".out.fits.")  # same folder
    writer.close()
    assert T.read_table(dest).num_rows == table.num_rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fits"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("ext", ["fits", "parquet", "csv", "fits.gz"])
def test_exception_in_context_aborts(tmp_path, table, ext):
    table = table.select(["specObjID", "z"])
    dest = tmp_path / f"out.{ext}"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with T.TableWriter(dest, table.schema) as writer:
            writer.write(table)
            raise RuntimeError("killed half-way")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [f"out.{ext}"]


def test_abort_leaves_nothing(tmp_path, table):
    writer = T.TableWriter(tmp_path / "new.parquet", table.schema)
    writer.write(table)
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_killed_writer_leaves_old_file(tmp_path):
    """A process killed mid-write leaves the old file intact (only a hidden temp file behind)."""
    dest = tmp_path / "out.parquet"
    T.write_table(pa.table({"a": [1]}), dest)
    code = (
        "import os, signal, pyarrow as pa\nfrom photoz_tools import tables as T\n"
        "w = T.TableWriter(os.environ['DEST'], pa.schema([('a', pa.int64())]))\n"
        "w.write(pa.table({'a': list(range(1000))}))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "DEST": str(dest)}, timeout=120)
    assert T.read_table(dest).column("a").to_pylist() == [1]


def test_writer_metadata_precedence_and_units(tmp_path):
    schema = pa.schema(
        [pa.field("ra", pa.float64()), pa.field("r", pa.float32(), metadata={b"unit": b"mag"})],
        metadata={b"pz_command": b"old", b"keep": b"1"},
    )
    T.write_table(
        pa.table({"ra": [1.0], "r": pa.array([17.0], pa.float32())}).cast(schema),
        tmp_path / "t.parquet",
        metadata={"pz_command": "mid", "x": "2"},
        provenance={"pz_command": "new"},
    )
    reader = T.open_table(tmp_path / "t.parquet")
    assert reader.metadata == {"pz_command": "new", "keep": "1", "x": "2"}
    assert reader.schema.field("ra").metadata == {b"unit": b"deg"}
    assert reader.schema.field("r").metadata == {b"unit": b"mag"}


def test_reader_schema_carries_metadata_to_writer(tmp_path, table, metadata, same):
    T.write_table(table, tmp_path / "a.fits", metadata=metadata)
    with (
        T.open_table(tmp_path / "a.fits") as reader,
        T.TableWriter(tmp_path / "b.parquet", reader.schema) as writer,
    ):
        for batch in reader.iter_batches(batch_rows=3):
            writer.write(batch)
    assert (
        T.open_table(tmp_path / "b.parquet").metadata[T.BIN_EDGES_KEY] == metadata[T.BIN_EDGES_KEY]
    )
    same(table, T.read_table(tmp_path / "b.parquet"))


def test_compressed_outputs_are_real_gzip_and_bzip2(tmp_path, table):
    table = table.select(["specObjID", "pdf"])
    T.write_table(table, tmp_path / "t.fits.gz")
    T.write_table(table, tmp_path / "t.fits.bz2")
    assert gzip.decompress((tmp_path / "t.fits.gz").read_bytes())[:9] == b"SIMPLE  ="
    assert bz2.decompress((tmp_path / "t.fits.bz2").read_bytes())[:9] == b"SIMPLE  ="


def test_writer_casts_compatible_types_and_checks_columns(tmp_path):
    schema = pa.schema([("id", pa.int64()), ("z", pa.float32())])
    with T.TableWriter(tmp_path / "t.parquet", schema) as writer:
        writer.write(pa.table({"z": [0.1, 0.2], "id": pa.array([1, 2], pa.int32()), "x": [1, 2]}))
    back = T.read_table(tmp_path / "t.parquet")
    assert back.schema.names == ["id", "z"] and back.schema.field("z").type == pa.float32()
    with pytest.raises(T.TableError, match="lacks column 'z'"):
        with T.TableWriter(tmp_path / "u.parquet", schema) as writer:
            writer.write(pa.table({"id": [1]}))


def test_parquet_stream_memory_flat_across_row_groups(tmp_path):
    """Many row groups (as a long table has): RSS must not grow with the groups read.

    pyarrow 26 keeps every row group's buffers when one reader iterates the whole file; the
    reader opens one per group. 120 MB of PDFs in 2 MB row groups, read in 1000-row batches."""
    code = (
        "import resource, sys, numpy as np\n"
        "from photoz_tools import tables as T\n"
        "import pyarrow as pa\n"
        "T.writing.ROW_GROUP_BYTES = 2 << 20\n"
        "schema = pa.schema([('pdf', pa.list_(pa.float32(), 180))])\n"
        "with T.TableWriter(sys.argv[1], schema) as w:\n"
        "    for i in range(40):\n"
        "        pdf = np.random.default_rng(i).random((4096, 180), np.float32)\n"
        "        w.write(pa.record_batch([T.to_arrow(pdf)], schema=schema))\n"
        "rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
        "peaks = []\n"
        "with T.open_table(sys.argv[1], batch_rows=1000) as r:\n"
        "    for i, b in enumerate(r.iter_batches()):\n"
        "        peaks.append(rss())\n"
        "print(len(peaks), peaks[len(peaks) // 4], peaks[-1])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "p.parquet")], capture_output=True, timeout=300
    )
    assert result.returncode == 0, result.stderr.decode()
    n, quarter, end = map(int, result.stdout.split())
    assert n >= 164
    assert end - quarter < 20, f"RSS grew from {quarter} MB to {end} MB while streaming"


def test_terminal_stdin_and_stdout_refused():
    """Forgetting the input must not hang on a terminal, nor print Parquet bytes on one."""
    import pty

    code = (
        "import pyarrow as pa\nfrom photoz_tools import tables as T\n"
        "for f in (lambda: T.open_table('-'), lambda: T.TableWriter('-', pa.schema([]))):\n"
        "    try:\n        f()\n    except T.TableError as e:\n        print('ERR', e)\n"
    )
    leader, follower = pty.openpty()
    result = subprocess.run(
        [sys.executable, "-c", code],
        stdin=follower,
        stdout=follower,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert result.returncode == 0, result.stderr.decode()
    text = out.decode()
    assert "ERR no input table: stdin is a terminal" in text
    assert "ERR stdout is a terminal: refusing to print a binary parquet table" in text


PIPE_APP = """
import sys
import numpy as np
import pyarrow as pa
from photoz_tools import tables
from photoz_tools.cli import common

app = common.make_app("pz-demo", "write a big table to stdout")

@app.command()
def main(fmt: str) -> None:
    schema = pa.schema([("pdf", pa.list_(pa.float32(), 180))])
    pdf = np.random.default_rng(0).random((20000, 180), np.float32)
    with tables.TableWriter("-", schema, format=fmt) as writer:
        for _ in range(5):
            writer.write(pa.record_batch([tables.to_arrow(pdf)], schema=schema))

sys.exit(common.run(app))
"""


@pytest.mark.parametrize("fmt", ["parquet", "fits"])
def test_pipe_into_head_ends_quietly(tmp_path, fmt):
    """`pz-demo | head -c 100`: exit 141 like a SIGPIPE'd Unix tool, nothing on stderr."""
    script = tmp_path / "app.py"
    script.write_text(PIPE_APP)
    spool = tmp_path / "spool"
    spool.mkdir()
    result = subprocess.run(
        f"{sys.executable} {script} {fmt} | head -c 100 > /dev/null; echo ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(spool)},
    )
    assert result.stdout.decode().strip() == "141"
    assert result.stderr == b""
    assert list(spool.iterdir()) == []
