"""Command-line fuzz: the real pz-* commands on broken, odd and conflicting inputs (issue 13).

Why: a user meets the commands, not the functions. Each run breaks one thing of a known-good
invocation (benchmarks/pzworld.py makes the inputs) and classifies the outcome:

- exit 0: the output exists, reads back as a table, and keeps the input's rows where the
  command promises to (pz-predict, pz-pack);
- exit 1 or 2: exactly one line on stderr (runs use -q), no traceback, and no output file or
  temporary/partial file left beside it;
- anything else (a traceback, another exit status, a run past the time limit) is a failure.

Used by benchmarks/fuzz.py (``--only cli`` or ``cli:score,...``).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fuzz import Result
from pzworld import ENV, Server, build, cmd

WORLD = Path(tempfile.gettempdir()) / "pzworld"
RUN_SECONDS = {"train": 400, "predict": 300, "cutout": 200}


# --------------------------------------------------------------------------- breaking tables


def _table(path: Path):
    from photoz_tools.tables import read_table

    return read_table(str(path))


def _write(table, path: Path) -> Path:
    import pyarrow.parquet as pq

    pq.write_table(table, path)
    return path


def _set_column(table, name: str, values):
    import pyarrow as pa

    i = table.column_names.index(name)
    return table.set_column(i, name, pa.array(values))


def break_table(src: Path, how: str, rng: random.Random, out: Path) -> Path:
    """A broken copy of the table `src` (Parquet unless the breakage is the format)."""
    import pyarrow as pa

    from photoz_tools.tables import column_array, to_arrow

    data = src.read_bytes()
    if how == "truncate":
        out.write_bytes(data[: rng.randrange(len(data))])
        return out
    if how == "flip":
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        out.write_bytes(bytes(b))
        return out
    if how == "empty_file":
        out.write_bytes(b"")
        return out
    if how == "garbage":
        out.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 5000))))
        return out
    t = _table(src)
    names = t.column_names
    col = rng.choice(names)
    if how == "zero_rows":
        t = t.slice(0, 0)
    elif how == "drop_column":
        t = t.drop_columns([col])
    elif how == "rename_column":
        t = t.rename_columns([("é" + n if n == col else n) for n in names])
    elif how == "dup_ids":
        t = pa.concat_tables([t, t.slice(0, 2)])
    elif how == "nan_column":
        a = column_array(t, col)
        if a.dtype.kind == "f":
            a = a.copy()
            a.reshape(len(a), -1)[rng.randrange(max(1, len(a)))] = np.nan
            t = t.set_column(names.index(col), col, to_arrow(a))
    elif how == "huge_values":
        a = column_array(t, col)
        if a.dtype.kind == "f":
            a = a * 1e30
            t = t.set_column(names.index(col), col, to_arrow(a))
    elif how == "negative":
        for c in ("ebv", "z"):
            if c in names:
                t = _set_column(t, c, -np.abs(column_array(t, c)))
    elif how == "image_float64" and "image" in names:
        t = t.set_column(
            names.index("image"), "image", to_arrow(column_array(t, "image").astype(np.float64))
        )
    elif how == "image_32" and "image" in names:
        t = t.set_column(
            names.index("image"), "image", to_arrow(column_array(t, "image")[:, :32, :32, :])
        )
    elif how == "strings" and col:
        t = _set_column(t, col, [f"x{i}" for i in range(t.num_rows)])
    elif how == "clash_case":
        t = t.append_column(col.upper() if col.upper() != col else col.lower(), t.column(col))
    elif how == "one_row":
        t = t.slice(0, 1)
    elif how == "shuffle":
        t = t.take(np.random.default_rng(rng.randrange(1000)).permutation(t.num_rows))
    return _write(t, out)


TABLE_BREAKS = (
    "none",
    "truncate",
    "flip",
    "empty_file",
    "garbage",
    "zero_rows",
    "drop_column",
    "rename_column",
    "dup_ids",
    "nan_column",
    "huge_values",
    "negative",
    "image_float64",
    "image_32",
    "strings",
    "clash_case",
    "one_row",
    "shuffle",
)
OPTION_BREAKS = ("nan", "-1", "0", "1e9", "abc", "", "--", "-0.5", "inf")


# --------------------------------------------------------------------------- commands


def _opt(rng: random.Random, names: list[str]) -> list[str]:
    return [rng.choice(names), rng.choice(OPTION_BREAKS)]


def plans(world: Path, urls: dict[str, str]) -> dict[str, Callable]:
    """command -> f(rng, tmp) -> (argv after the command, output path, input rows or None)."""
    w = world

    def tabled(
        src: Path, rows_kept: bool, make: Callable[[Path, Path], list[str]], opts, folder=False
    ):
        """`folder`: the command writes a folder (pz-train's bundle), judged at that path."""

        def plan(rng: random.Random, tmp: Path):
            how = rng.choice(TABLE_BREAKS)
            inp = break_table(src, how, rng, tmp / "in.parquet")
            out = tmp / "o" / rng.choice(["out.parquet", "out.fits", "out.csv", "sub/out.parquet"])
            out = out.with_suffix("") if folder else out
            argv = make(inp, out)
            if rng.random() < 0.3:
                argv += _opt(rng, opts)
            rows = _table(src).num_rows if (how == "none" and rows_kept) else None
            return argv, out, rows, how

        return plan

    def query(rng: random.Random, tmp: Path):
        out = tmp / "o" / "q.parquet"
        opts = [
            "--z-min",
            "--z-max",
            "--r-max",
            "--r-min",
            "--release",
            "--page-size",
            "--limit",
            "--primtarget-min",
            "--box",
            "--timeout",
            "--retries",
        ]
        argv = ["--url", urls["sky"], "--retries", "0", "-q", "-o", str(out)]
        how = rng.choice(["opts", "opts", "sql", "box", "none"])
        if how == "opts":
            argv += _opt(rng, opts)
        elif how == "sql":
            sql = tmp / "q.sql"
            sql.write_text(
                rng.choice(
                    [
                        "",
                        "-- only a comment\n",
                        "SELECT\n",
                        "DROP TABLE x",
                        "SELECT TOP 3 specObjID FROM SpecObj",
                        "\x00\xff",
                        "SELECT 'a -- b' AS s FROM SpecObj",
                    ]
                )
            )
            argv += ["--sql", str(sql)]
        elif how == "box":
            argv += [
                "--box",
                ",".join(
                    rng.choice(["0", "360", "-91", "nan", "10", "x"])
                    for _ in range(rng.choice([3, 4, 5]))
                ),
            ]
        return argv, out, None, how

    def mock(rng: random.Random, tmp: Path):
        out = tmp / "o" / "survey"
        opts = [
            "-n",
            "--per-field",
            "--seed",
            "--deep-fraction",
            "--stars",
            "--epochs",
            "--ebv",
            "--repeat",
        ]
        argv = ["-n", "4", "--per-field", "4", "--epochs", "1", "-q", "-o", str(out)]
        argv += _opt(rng, opts)
        return argv, out, None, "opts"

    return {
        "score": tabled(
            w / "zphot.parquet",
            False,
            lambda i, o: [str(i), "--truth", "z", "-q", "-o", str(o)],
            ["--truth", "--zphot", "--bins", "--eta"],
        ),
        "pack": tabled(
            w / "cutouts.parquet",
            False,
            lambda i, o: [str(i), "-c", str(w / "mgs.parquet"), "--folds", "5", "-q", "-o", str(o)],
            ["--folds", "--seed", "--flag-mask"],
        ),
        "predict": tabled(
            w / "dataset.parquet",
            True,
            lambda i, o: ["-m", str(w / "model"), str(i), "-q", "-o", str(o)],
            ["--tta", "--batch-size", "--ebv-col", "--image-col"],
        ),
        "train": tabled(
            w / "dataset.parquet",
            False,
            lambda i, o: [
                str(i),
                "-o",
                str(o),
                "--arch",
                "tiny",
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "-q",
            ],
            ["--epochs", "--lr", "--batch-size", "--fold", "--steps"],
            folder=True,
        ),
        "cutout": tabled(
            w / "mgs.parquet",
            True,
            lambda i, o: [str(i), "--frames", str(w / "mock" / "frames"), "-q", "-o", str(o)],
            ["--batch-size", "--fill", "--preview-count", "--id"],
        ),
        "query": query,
        "mock": mock,
    }


# --------------------------------------------------------------------------- classification


def _leftovers(folder: Path, before: set[str]) -> list[str]:
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name not in before)


def classify(
    r: subprocess.CompletedProcess, out: Path, rows: int | None, before: set[str]
) -> str | None:
    """None when the run kept the promises, else what went wrong (a failure signature)."""
    err = r.stderr.decode("utf-8", "replace")
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    if "Traceback" in err:
        return "traceback: " + (lines[-1][:80] if lines else "")
    if r.returncode == 0:
        if not out.exists():
            return "exit 0 without the output"
        if out.is_file() and out.suffix in (".parquet", ".fits", ".csv"):
            try:
                t = _table(out)
            except Exception as exc:  # noqa: BLE001
                return f"exit 0, unreadable output ({type(exc).__name__})"
            if rows is not None and t.num_rows != rows:
                return f"exit 0, {t.num_rows} rows for {rows}"
        if out.is_dir() and (out / "manifest.json").exists():  # pz-train's bundle
            from photoz_tools.model.bundle import BundleError, verify

            try:
                verify(out)
            except BundleError as exc:
                return f"exit 0, incomplete bundle ({str(exc)[:60]})"
        return None
    if r.returncode not in (1, 2):
        return f"exit status {r.returncode}"
    if len(lines) != 1:
        return f"exit {r.returncode} with {len(lines)} lines on stderr"
    if "internal error" in lines[0]:
        return "internal error: " + lines[0][:100]
    left = _leftovers(out.parent, before) if out.parent.exists() else []
    if left:
        return f"exit {r.returncode} left {left[:3]}"
    return None


def _generic(text: str) -> str:
    import re

    text = re.sub(r"/tmp/\S+", "PATH", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    return re.sub(r"\d+(\.\d+)?", "N", text)


def cli_campaigns(
    runs: int,
    only: set[str] | None,
    report: Callable[[Result], None],
    budget: float = float("inf"),
    seed: int = 0,
) -> list[Result]:
    """`runs` runs of each command (of `only`), each with one thing broken; a command's runs
    stop early once they have taken `budget` seconds (the count run is what is reported)."""
    world = build(WORLD)
    results = []
    with Server(world / "mock") as server:
        urls = {"sky": server.url, "sas": server.sas_url}
        for command, plan in plans(world, urls).items():
            if only and command not in only:
                continue
            res = Result(f"cli pz-{command}")
            # seed 0 draws the recorded runs' plans; another seed draws new ones
            rng = random.Random(f"{command}-13" + (f"-{seed}" if seed else ""))
            t0 = time.monotonic()
            for k in range(runs):
                if time.monotonic() - t0 > budget:
                    break
                one_run(res, command, plan, rng, k)
            res.seconds = time.monotonic() - t0
            report(res)
            results.append(res)
    return results


def one_run(res: Result, command: str, plan: Callable, rng: random.Random, k: int) -> None:
    import os

    tmp = Path(tempfile.mkdtemp(prefix=f"fuzzcli-{command}-"))
    (tmp / "o").mkdir()
    try:
        argv, out, rows, how = plan(rng, tmp)
        before = set(os.listdir(out.parent)) if out.parent.exists() else set()
        res.tried += 1
        try:
            r = subprocess.run(
                [*cmd(command), *argv],
                capture_output=True,
                cwd=tmp,
                timeout=RUN_SECONDS.get(command, 120),
                env={
                    **os.environ,
                    **ENV,
                    "PZ_CACHE": str(tmp / "cache"),
                    "PZ_QUERY_SPOOL": str(tmp / "spool"),
                },
            )
        except subprocess.TimeoutExpired:
            res.fail("hang", f"pz-{command} {' '.join(argv)}  [{how}]")
            return
        problem = classify(r, out, rows, before)
        repro = (
            f"pz-{command} {' '.join(argv)}  [break: {how}; rc {r.returncode}; "
            f"stderr: {r.stderr.decode(errors='replace').strip()[-300:]}]"
        )
        if problem:
            res.fail(_generic(problem), repro)
        elif r.returncode == 0:
            res.ok += 1
        else:
            res.refused += 1
            if len(res.refusals) < 8:
                res.refusals.append(r.stderr.decode(errors="replace").strip()[:200])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
