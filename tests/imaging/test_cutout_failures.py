"""cutout()'s own answers to bad runs (issue 14), as a notebook user gets them, without the CLI:
every frame download failing is an error before anything is written; a position column of
strings (a stream on stdin has no header to check first) is named in one line; a missing output
folder is refused, never created, with the command line's own words. The same rule for
sdss.query's resume folder.

Small synthetic frames and the package's SAS stand-in on 127.0.0.1 keep these fast.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from photoz_tools.cli import checks
from photoz_tools.errors import PzError, PzUsageError
from photoz_tools.imaging.cutouts import cutout
from photoz_tools.sdss.standin import StandIn

FIELD = {"run": 1000, "camcol": 3, "field": 42}
FRAMES = pa.table(
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
CAT = pa.table({"objID": [7, 8], "ra": [150.0, 150.002], "dec": [2.0, 2.001]})


def _sas_tree(root, frame_maker) -> None:
    for i, band in enumerate("ugriz"):
        frame_maker(
            root / "frames" / "301" / "1000" / "3",
            band=band,
            data=np.full((150, 200), float(i + 1), np.float32),
        )


@pytest.fixture
def frames_dir(tmp_path, frame_maker):
    """A local --frames folder with the five bands of one small field."""
    d = tmp_path / "frames"
    for band in "ugriz":
        frame_maker(d, band=band, compress=False)
    return d


def _listing(folder) -> set[str]:
    return {
        os.path.relpath(os.path.join(p, n), folder)
        for p, ds, fs in os.walk(folder)
        for n in ds + fs
    }


# --------------------------------------------------------------------------- every fetch failed


def test_every_frame_failing_raises_before_writing_and_a_rerun_fetches_again(tmp_path, frame_maker):
    sas = tmp_path / "sas"
    sas.mkdir()  # an empty mirror: every frame answers 404
    out = tmp_path / "out" / "cut.parquet"
    out.parent.mkdir()
    opts = {"frame_index": FRAMES, "cache": tmp_path / "cache", "workers": 1}
    with StandIn(sas_root=sas) as s:
        with pytest.raises(PzError, match=r"no frame could be fetched for any of the 2 rows"):
            cutout(CAT, out, sas_url=s.sas_url, **opts)
        assert _listing(out.parent) == set()  # no table, no OUT.partial/ to resume from
        _sas_tree(sas, frame_maker)  # the server has them now: the rerun starts afresh
        summary = cutout(CAT, out, sas_url=s.sas_url, **opts)
    assert summary["rows"] == 2 and summary["frames_failed"] == 0
    table = pq.read_table(out)
    assert table.column("n_frames").to_pylist() == [[1] * 5] * 2
    assert table.column("cutout_flags").to_pylist() == [0, 0]


def test_every_frame_failing_writes_nothing_on_stdout(tmp_path, capfdbinary):
    sas = tmp_path / "sas"
    sas.mkdir()
    with StandIn(sas_root=sas) as s:
        with pytest.raises(PzError, match=r"2 rows \(5 frames failed; first: frame "):
            cutout(CAT, "-", frame_index=FRAMES, sas_url=s.sas_url, cache=tmp_path / "c", workers=1)
    assert capfdbinary.readouterr().out == b""


def test_rows_off_every_frame_without_failures_are_still_an_answer(frames_dir):
    """Not a fetch failure: rows outside the frames get blank, flagged cutouts (exit 0)."""
    t = cutout({"ra": [10.0], "dec": [10.0]}, frames=frames_dir, workers=1)
    assert t.column("n_frames").to_pylist() == [[0] * 5]


def test_cli_every_frame_failing_exits_1_with_one_line(tmp_path, cli):
    sas = tmp_path / "sas"
    sas.mkdir()
    pq.write_table(CAT, tmp_path / "cat.parquet")
    pq.write_table(FRAMES, tmp_path / "frames.parquet")
    out = tmp_path / "cut.parquet"
    with StandIn(sas_root=sas) as s:
        r = cli(
            "pz-cutout",
            str(tmp_path / "cat.parquet"),
            "--frame-index",
            str(tmp_path / "frames.parquet"),
            "--sas-url",
            s.sas_url,
            "--cache",
            str(tmp_path / "cache"),
            "-j",
            "1",
            "-q",
            "-o",
            str(out),
        )
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert err.count("\n") == 1 and "no frame could be fetched for any of the 2 rows" in err
    assert not out.exists() and not (tmp_path / "cut.parquet.partial").exists()


# --------------------------------------------------------------------------- column types


@pytest.mark.parametrize("col", ["ra", "dec"])
def test_position_column_of_strings_is_named(frames_dir, col):
    cat = {"ra": [150.0], "dec": [2.0]}
    cat[col] = ["150.0"]
    option = f"--{col}"
    with pytest.raises(PzError, match=rf"column '{col}' \({option}\) holds strings; expected"):
        cutout(cat, frames=frames_dir, workers=1)


def test_own_field_columns_of_strings_are_named():
    cat = {"ra": [150.0], "dec": [2.0], "run": ["1000"], "camcol": [3], "field": [42]}
    with pytest.raises(PzError, match=r"column 'run' holds strings; expected numbers"):
        cutout(cat, workers=1, sas_url="http://127.0.0.1:9")


def test_cli_string_ra_on_stdin_is_one_line(tmp_path, frames_dir, cli):
    """`cat scat.parquet | pz-cutout --frames F`: no header to peek at, cutout() says it."""
    buf = io.BytesIO()
    pq.write_table(pa.table({"objID": [1], "ra": ["150.0"], "dec": [2.0]}), buf)
    r = cli("pz-cutout", "--frames", str(frames_dir), "-j", "1", input=buf.getvalue())
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert "internal error" not in err and "Traceback" not in err
    assert err.count("\n") == 1 and "column 'ra' (--ra) holds strings" in err
    assert r.stdout == b""


# --------------------------------------------------------------------------- missing folders


def _cli_line(path, option) -> str:
    """What the command line says of the same output (cli/checks.py)."""
    with pytest.raises(PzUsageError) as exc:
        checks.output_file(str(path), option, None)
    return str(exc.value)


@pytest.mark.parametrize("option", ["-o", "--preview"])
def test_missing_output_folder_is_refused_not_created(tmp_path, frames_dir, option):
    path = tmp_path / "no" / "such" / ("cut.parquet" if option == "-o" else "p.png")
    kwargs = {"output": path} if option == "-o" else {"output": None, "preview": path}
    with pytest.raises(PzUsageError) as exc:
        cutout(CAT, frames=frames_dir, workers=1, **kwargs)
    assert str(exc.value) == _cli_line(path, option)
    assert not (tmp_path / "no").exists()


def test_query_resume_folder_needs_its_parent(tmp_path):
    """sdss.query: the resume folder the user names is created, its parent never; refused
    before any request (the URL is never contacted)."""
    from photoz_tools.sdss.query import query, query_frames

    spool = tmp_path / "no" / "pages"
    want = _cli_line(spool, "--spool")
    for run in (
        lambda: query(url="http://127.0.0.1:9", spool=spool),
        lambda: query_frames((150, 151, 1, 2), url="http://127.0.0.1:9", spool=spool),
    ):
        with pytest.raises(PzUsageError) as exc:
            run()
        assert str(exc.value) == want
    assert not (tmp_path / "no").exists()


def test_partitioned_output_folder_needs_its_parent(tmp_path, frames_dir):
    """A folder output is created itself, inside an existing folder only."""
    from photoz_tools.imaging.cutout_partitions import cutout_partitioned

    survey = tmp_path / "survey"
    survey.mkdir()
    pq.write_table(CAT, survey / "part-0.parquet")
    out = tmp_path / "no" / "cutouts"
    with pytest.raises(PzUsageError) as exc:
        cutout_partitioned(survey, out, frames=frames_dir, workers=1)
    with pytest.raises(PzUsageError) as cli_exc:
        checks.output_folder(str(out), "-o", "cutouts folder")
    assert str(exc.value) == str(cli_exc.value)
    assert not (tmp_path / "no").exists()


# --------------------------------------------------------------------------- option values


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"fill": "banana"}, "--fill banana: use zero or nan"),
        ({"resampler": "lanczos"}, "--resampler lanczos: use native or swarp"),
    ],
)
def test_bad_choices_are_usage_errors_in_both_functions(tmp_path, frames_dir, kw, words):
    """A bad --fill or --resampler is a usage error (exit 2), before any partition or frame."""
    from photoz_tools.imaging.cutout_partitions import cutout_partitioned

    with pytest.raises(PzUsageError, match=words):
        cutout(CAT, frames=frames_dir, workers=1, **kw)
    survey = tmp_path / "survey"
    survey.mkdir()
    pq.write_table(CAT, survey / "part-0.parquet")
    with pytest.raises(PzUsageError, match=words):
        cutout_partitioned(survey, tmp_path / "out", frames=frames_dir, workers=1, **kw)
    assert not (tmp_path / "out").exists()


def test_zero_row_catalogue_gives_zero_row_cutouts_with_the_full_schema(tmp_path):
    """No row, no frame to fetch (the SAS URL is never contacted): a zero-row table with the
    catalogue's columns, image, n_frames and cutout_flags, exit 0."""
    empty = CAT.schema.empty_table()
    out = tmp_path / "cut.parquet"
    summary = cutout(
        empty,
        out,
        frame_index=FRAMES,
        sas_url="http://127.0.0.1:9",
        cache=tmp_path / "cache",
        workers=1,
    )
    assert summary["rows"] == 0
    t = pq.read_table(out)
    assert t.num_rows == 0
    assert t.column_names == ["objID", "ra", "dec", "image", "n_frames", "cutout_flags"]
    assert t.schema.field("image").type.shape == [64, 64, 5]
