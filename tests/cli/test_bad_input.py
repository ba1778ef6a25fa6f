"""Every bad input gets its one-line answer (issue 14), checked by cause, not by example.

Commands run in-process (`common.run(app, argv)`, the `pz` fixture of conftest.py), so that the
whole file stays within seconds; one subprocess checks the closed pipe, which needs a real one.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from photoz_tools.cli import checks, manpages
from photoz_tools.errors import PzUsageError
from photoz_tools.tables import to_arrow, write_table

COMMANDS = [f"pz-{c}" for c in manpages.COMMANDS]


def one_line(err: str, command: str) -> str:
    """The error is a single line `pz-X: error: ...` with no traceback and no box."""
    assert err.startswith(f"{command}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err and "╭" not in err, err
    assert "internal error" not in err, err
    return err


def _answer(result: tuple[int, str, str], command: str, status: int, words: tuple[str, ...]) -> str:
    code, _, err = result
    assert code == status, (code, err)
    err = one_line(err, command)
    for w in words:
        assert w in err, (w, err)
    return err


def usage(result: tuple[int, str, str], command: str, *words: str) -> str:
    return _answer(result, command, 2, words)


def failure(result: tuple[int, str, str], command: str, *words: str) -> str:
    return _answer(result, command, 1, words)


def table(path: Path, n: int = 4, image: tuple[int, ...] | None = (64, 64, 5), **cols) -> str:
    rng = np.random.default_rng(0)
    data = {"id": np.arange(n), "z": rng.uniform(0.01, 0.3, n), "ebv": rng.uniform(0, 0.1, n)}
    if image is not None:
        data["image"] = rng.normal(size=(n, *image)).astype(np.float32)
    data.update(cols)
    write_table(pa.table({k: to_arrow(np.asarray(v)) for k, v in data.items()}), str(path))
    return str(path)


# --------------------------------------------------------------------------- (2) usage errors


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_is_one_line(pz, command):
    err = usage(pz(command, "--bogus-option"), command, "no such option --bogus-option")
    assert err.endswith(f"({command} --help lists them)\n")


@pytest.mark.parametrize(
    "command, args, words",
    [
        ("pz-train", ["--steps", "abc"], ["--steps abc: expected an integer"]),
        ("pz-score", ["--eta-threshold=abc"], ["--eta-threshold abc: expected a number"]),
        ("pz-mock", ["-n", "1.5", "-o", "x"], ["-n 1.5: expected an integer"]),
        ("pz-cutout", ["-jx"], ["-j x: expected an integer"]),
        ("pz-pack", ["--folds", "five"], ["--folds five"]),
        ("pz-predict", ["--batch-size", "1e3"], ["--batch-size 1e3"]),
        ("pz-query", ["--page-size", ""], ["--page-size"]),
        ("pz-score", ["a.parquet", "b.parquet"], ["unexpected argument b.parquet"]),
        ("pz-score", ["--truth"], ["--truth needs a value"]),
        ("pz-import", [], ["missing argument CHECKPOINT"]),
        ("pz-mock", ["serve"], ["missing argument FOLDER"]),
        ("pz-mock", ["bogus"], ["no such command 'bogus'"]),
        ("pz-score", ["--bin", "3"], ["did you mean --bins?"]),
    ],
)
def test_bad_values_and_arguments_are_one_line(pz, command, args, words):
    usage(pz(command, *args), command, *words)


def test_help_and_version_still_exit_0(pz):
    code, out, _ = pz("pz-score", "--version")
    assert code == 0 and out.startswith("pz-score (photoz-tools)")
    code, out, _ = pz("pz-mock", "serve", "--help")
    assert code == 0 and "pz-mock serve" in out


# --------------------------------------------------------------------------- (1) option values


@pytest.mark.parametrize(
    "command, args, words",
    [
        ("pz-mock", ["--per-field", "nan", "-o", "x"], ["--per-field nan", "finite"]),
        ("pz-mock", ["--ebv", "inf", "-o", "x"], ["--ebv inf", "finite"]),
        ("pz-score", ["p.parquet", "--eta-threshold", "-inf"], ["--eta-threshold -inf", "finite"]),
        ("pz-query", ["--timeout", "nan"], ["--timeout nan", "finite"]),
        ("pz-query", ["--r-max", "nan"], ["--r-max nan", "finite"]),
        ("pz-mock", ["--seed", "-1", "-o", "x"], ["--seed -1: must be an integer >= 0"]),
        ("pz-pack", ["--seed", "-1"], ["--seed -1", ">= 0"]),
        ("pz-mock", ["serve", ".", "--port", "99999"], ["--port 99999", "<= 65535"]),
        ("pz-mock", ["--deep-fraction", "1.5", "-o", "x"], ["--deep-fraction 1.5", "<= 1"]),
        ("pz-mock", ["-n", "0", "-o", "x"], ["-n 0", ">= 1"]),
        ("pz-cutout", ["-j", "0"], ["-j 0", ">= 1"]),
        ("pz-cutout", ["--fill", "banana"], ["--fill banana: use zero or nan"]),
        ("pz-cutout", ["--resampler", "lanczos"], ["--resampler lanczos: use native or swarp"]),
        ("pz-pack", ["--validation", "-3"], ["--validation -3", ">= 0"]),
        ("pz-pack", ["--test-fold", "9"], ["--test-fold 9", "<= 4"]),
        ("pz-query", ["--release", "-3"], ["--release -3", ">= 1"]),
        ("pz-query", ["--limit", "0"], ["--limit 0"]),
        ("pz-predict", ["--batch-size", "0"], ["--batch-size 0", ">= 1"]),
    ],
)
def test_option_values_refused_at_parse_time(pz, command, args, words):
    usage(pz(command, *args), command, *words)


def test_port_in_use_is_named(pz, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        failure(pz("pz-mock", "serve", tmp_path, "--port", port), "pz-mock", f"--port {port}")


def test_mock_output_naming_a_file(pz, tmp_path):
    f = tmp_path / "survey"
    f.write_text("not a folder")
    usage(pz("pz-mock", "-n", "5", "-o", f), "pz-mock", "an existing file")


def test_string_position_column_is_named(pz, tmp_path):
    cat = tmp_path / "cat.parquet"
    write_table(pa.table({"id": [1, 2], "ra": ["150.0", "x"], "dec": [2.0, 2.1]}), str(cat))
    out = tmp_path / "c.parquet"
    failure(
        pz("pz-cutout", cat, "--frames", tmp_path, "-o", out),
        "pz-cutout",
        "column 'ra' (--ra) holds strings; expected numbers",
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.parquet"]


@pytest.mark.parametrize("command", ["pz-cutout", "pz-pack"])
def test_input_columns_a_fits_output_cannot_hold_are_refused_before_any_work(pz, tmp_path, command):
    """The carried input columns 'zErr' and 'ZERR' differ only in case, which FITS cannot hold:
    refused before the work, not by the writer at the end (pz-cutout used to leave its
    out.fits.partial/ resume folder behind; found by benchmarks/fuzz_cli.py)."""
    rng = np.random.default_rng(0)
    image = None if command == "pz-cutout" else (64, 64, 5)
    extra = {"ra": [150.0] * 4, "dec": [2.0] * 4} if command == "pz-cutout" else {}
    src = table(
        tmp_path / "in.parquet", image=image, zErr=rng.random(4), ZERR=rng.random(4), **extra
    )
    (tmp_path / "o").mkdir()
    out = tmp_path / "o" / "out.fits"
    args = ["--frames", tmp_path] if command == "pz-cutout" else []
    failure(
        pz(command, src, *args, "-o", out),
        command,
        "column 'ZERR' has the same name as column 'zErr' but for case",
        "write Parquet instead",
    )
    assert list((tmp_path / "o").iterdir()) == []


def test_wrong_image_shape_names_column_and_shapes(pz, tmp_path):
    small = table(tmp_path / "small.parquet", image=(32, 32, 5))
    failure(
        pz("pz-pack", small, "-o", tmp_path / "ds.parquet"),
        "pz-pack",
        "column 'image' holds (32, 32, 5) cells",
        "(64, 64, 5)",
    )
    assert not (tmp_path / "ds.parquet").exists()


def test_wrong_image_shape_for_the_model(pz, tmp_path):
    from photoz_tools.model import bundle

    model = tmp_path / "model"
    model.mkdir()
    manifest = {"format": bundle.FORMAT, "format_version": 1, "inputs": bundle.INPUTS}
    (model / bundle.MANIFEST).write_text(json.dumps(manifest))
    small = table(tmp_path / "small.parquet", image=(32, 32, 5))
    loaded = "tensorflow" in sys.modules  # other test modules of the session import Keras
    failure(
        pz("pz-predict", "-m", model, small, "-o", tmp_path / "z.parquet"),
        "pz-predict",
        "column 'image' (--image-col) holds (32, 32, 5) cells",
        f"the model bundle {model} takes (64, 64, 5)",
    )
    assert loaded or "tensorflow" not in sys.modules  # refused from the header, no model load


# --------------------------------------------------------------------------- (3) output names


@pytest.mark.parametrize("output", ["existing/", "existing", "c.txt", "c"])
def test_cutout_output_name_checked_first(pz, tmp_path, output):
    cat = table(tmp_path / "cat.parquet", image=None, ra=[150.0] * 4, dec=[2.0] * 4)
    (tmp_path / "existing").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    usage(pz("pz-cutout", cat, "--frames", tmp_path, "-o", tmp_path / output), "pz-cutout", "-o")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no NAME.partial/
    assert not any((tmp_path / "existing").iterdir())


@pytest.mark.parametrize(
    "args, words",
    [
        (["--format", "csv"], ["--format csv: CSV cannot hold the 'image' column"]),
        (["--format", "votable", "-o", "-"], ["--format votable", "choose parquet or fits"]),
        (["-o", "c.csv"], ["c.csv: a text table cannot hold the 'image' column"]),
        (["-o", "c.ecsv"], ["c.ecsv", "end the name in .parquet"]),
        (["--fill", "banana"], ["--fill banana"]),
    ],
)
def test_cutout_refuses_what_cannot_be_written_before_any_work(
    pz, tmp_path, monkeypatch, args, words
):
    """A text table cannot hold the image column: refused before a single galaxy is cut (the
    cutting itself is replaced by a tripwire), exit 2, nothing written."""
    from photoz_tools.imaging import cutouts

    def tripwire(*a, **k):
        raise AssertionError("cutout() ran")

    monkeypatch.setattr(cutouts, "cutout", tripwire)
    monkeypatch.chdir(tmp_path)
    cat = table(tmp_path / "cat.parquet", image=None, ra=[150.0] * 4, dec=[2.0] * 4)
    before = sorted(p.name for p in tmp_path.iterdir())
    err = usage(pz("pz-cutout", cat, "--frames", tmp_path, *args), "pz-cutout", *words)
    assert "cutout() ran" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    "command, args",
    [
        ("pz-cutout", ["{src}", "--frames", "."]),
        ("pz-pack", ["{src}"]),
        ("pz-predict", ["-m", ".", "{src}"]),
        ("pz-query", []),
        ("pz-query", ["frames", "{src}"]),
    ],
)
def test_unknown_format_refused_first(pz, tmp_path, command, args):
    src = table(tmp_path / "in.parquet", ra=[1.0] * 4, dec=[1.0] * 4)
    argv = [a.format(src=src) for a in args]
    usage(pz(command, *argv, "--format", "xyz"), command, "--format xyz: choose one of")


@pytest.mark.parametrize(
    "command, args",
    [
        ("pz-score", ["{src}"]),
        ("pz-pack", ["{src}"]),
        ("pz-predict", ["-m", ".", "{src}"]),
        ("pz-query", []),
        ("pz-query", ["frames", "--box", "1,2,3,4"]),
    ],
)
def test_output_extension_refused_first(pz, tmp_path, command, args):
    src = table(tmp_path / "in.parquet")
    argv = [a.format(src=src) for a in args]
    usage(pz(command, *argv, "-o", tmp_path / "x.txt"), command, "x.txt: cannot tell")


# --------------------------------------------------------------------------- (4) nothing left


def _predictions(tmp_path: Path) -> str:
    from photoz_tools import pdf as P

    b = P.Bins.default()
    rng = np.random.default_rng(1)
    n = 50
    z = rng.uniform(0.02, 0.3, n)
    p = np.exp(-0.5 * ((b.midpoints[None, :] - z[:, None]) / 0.01) ** 2)
    p /= p.sum(1, keepdims=True)
    cols = {"specObjID": np.arange(n), "z": z, **P.summarize(p, b), "pdf": p.astype(np.float32)}
    path = tmp_path / "pred.parquet"
    write_table(pa.table({k: to_arrow(np.asarray(v)) for k, v in cols.items()}), str(path))
    return str(path)


def test_score_bad_plot_name_leaves_nothing(pz, tmp_path):
    pred = _predictions(tmp_path)
    usage(pz("pz-score", pred, "--plot", tmp_path / "p.txt", "-o", tmp_path / "s.csv"), "pz-score")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.parquet"]


def test_score_failing_figure_leaves_nothing(pz, tmp_path, monkeypatch):
    import photoz_tools.plots

    def broken(*args, **kwargs):
        raise RuntimeError("the figure broke")

    monkeypatch.setattr(photoz_tools.plots, "score_figure", broken)
    pred = _predictions(tmp_path)
    code, _, err = pz("pz-score", pred, "--plot", tmp_path / "p.png", "-o", tmp_path / "s.csv")
    assert code == 1 and "the figure broke" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.parquet"]


def test_atomic_path_renames_or_removes(tmp_path):
    dest = tmp_path / "f.json"
    with pytest.raises(RuntimeError):
        with checks.atomic_path(str(dest)) as tmp:
            Path(tmp).write_text("half")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []
    with checks.atomic_path(str(dest)) as tmp:
        Path(tmp).write_text("whole")
    assert dest.read_text() == "whole" and len(list(tmp_path.iterdir())) == 1


# --------------------------------------------------------------------------- (5) memory bounds


@pytest.mark.parametrize(
    "args, words",
    [
        (["-n", "5", "--stars", "1e9"], ["--stars 1e9", "<= 10000"]),
        (["-n", "5", "--neighbours", "1e7"], ["--neighbours 1e7", "<= 10000"]),
        (["-n", "2000000000"], ["GiB of memory", "available"]),
        (["-n", "100000", "--repeat", "100000"], ["GiB of memory"]),
    ],
)
def test_mock_refuses_what_cannot_fit(pz, tmp_path, args, words):
    usage(pz("pz-mock", *args, "-o", tmp_path / "sky"), "pz-mock", *words)
    assert not (tmp_path / "sky").exists()


def test_out_of_memory_suggests_only_real_options(pz, tmp_path, monkeypatch):
    import photoz_tools.mock.survey

    def oom(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(photoz_tools.mock.survey, "mock", oom)
    err = failure(pz("pz-mock", "-n", "5", "-o", tmp_path / "sky"), "pz-mock", "out of memory")
    assert "--batch-size" not in err and "-n" in err
    import photoz_tools.scoring

    monkeypatch.setattr(photoz_tools.scoring, "collect", oom)
    pred = _predictions(tmp_path)
    failure(pz("pz-score", pred), "pz-score", "out of memory; lower --batch-size")


# --------------------------------------------------------------------------- (6)/(7) impossible


@pytest.mark.parametrize(
    "args, words",
    [
        (["--z-min", "0.5", "--z-max", "0.1"], ["--z-min 0.5 --z-max 0.1"]),
        (["--z-min", "0.2", "--z-max", "0.2"], ["--z-min 0.2 --z-max 0.2"]),
        (["--z-max", "-0.1"], ["--z-max -0.1"]),
        (["--r-min", "18", "--r-max", "17"], ["--r-min 18 --r-max 17"]),
    ],
)
def test_query_refuses_empty_selections_before_sending(pz, args, words, monkeypatch):
    monkeypatch.setenv("PZ_SKYSERVER_URL", "http://127.0.0.1:9")  # never reached
    usage(pz("pz-query", *args, "--show-sql"), "pz-query", *words)


# every frame download failing: tests/imaging/test_cutout_failures.py, end to end against the
# SAS stand-in (test_cli_every_frame_failing_exits_1_with_one_line and the plain function's)


# --------------------------------------------------------------------------- (8) words


def test_closed_pipe_on_the_printed_table_ends_quietly(tmp_path):
    pred = _predictions(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "photoz_tools.cli.score", pred],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdout.close()  # the reader is gone before the first write: `| head -c 0`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) in (0, 141) and err == "", err


def test_check_number_words():
    with pytest.raises(PzUsageError, match=r"^--x nan: must be a finite number >= 0$"):
        checks.check_number(float("nan"), "--x", 0)
    with pytest.raises(PzUsageError, match=r"--x 3: must be an integer > 0 and < 3 \(why\)"):
        checks.check_number(3, "--x", 0, 3, low_open=True, high_open=True, why="why")
    checks.check_number(None, "--x", 0)


# --------------------------------------------------------------------------- (9) one behaviour


@pytest.mark.parametrize(
    "command, args",
    [
        ("pz-score", ["{pred}", "-o", "{out}.csv"]),
        ("pz-pack", ["{pred}", "-o", "{out}.parquet"]),
        ("pz-cutout", ["{pred}", "--frames", ".", "-o", "{out}.parquet"]),
        ("pz-predict", ["-m", ".", "{pred}", "-o", "{out}.parquet"]),
        ("pz-query", ["-o", "{out}.parquet"]),
        ("pz-query", ["frames", "--box", "1,2,3,4", "-o", "{out}.parquet"]),
        ("pz-mock", ["-n", "5", "-o", "{out}"]),
        ("pz-import", ["ckpt", "-o", "{out}"]),
    ],
)
def test_missing_output_folder_refused_by_every_command(pz, tmp_path, command, args):
    pred = _predictions(tmp_path)
    out = tmp_path / "missing" / "x"
    argv = [a.format(pred=pred, out=out) for a in args]
    usage(pz(command, *argv), command, "does not exist (create it first: mkdir -p")
    assert not (tmp_path / "missing").exists()


def test_json_scores_get_the_usual_file_mode(pz, tmp_path):
    pred = _predictions(tmp_path)
    old = os.umask(0o022)
    try:
        for name in ("s.json", "s.csv"):
            code, _, err = pz("pz-score", pred, "-q", "-o", tmp_path / name)
            assert code == 0, err
            assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    finally:
        os.umask(old)


def test_pack_without_z_says_so_as_a_warning(pz, tmp_path):
    rng = np.random.default_rng(0)
    cols = {"id": np.arange(4), "ebv": rng.uniform(0, 0.1, 4)}
    cols["image"] = rng.normal(size=(4, 64, 64, 5)).astype(np.float32)
    src = tmp_path / "noz.parquet"
    write_table(pa.table({k: to_arrow(v) for k, v in cols.items()}), str(src))
    code, _, err = pz("pz-pack", src, "-o", tmp_path / "ds.parquet")
    assert code == 0, err
    assert "pz-pack: warning: " in err and "no column 'z'" in err
