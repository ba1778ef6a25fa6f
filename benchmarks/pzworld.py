"""A tiny simulated survey taken through the whole pipeline once, as the valid inputs that the
fuzz (benchmarks/fuzz_cli.py) and kill (benchmarks/kill.py) campaigns break or interrupt.

Why one shared world: each campaign needs a catalogue, frames, cutouts, a dataset, a bundle and
predictions that are known good, and making them costs minutes (pz-train); they are made once
into a folder and reused (delete the folder to remake them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}


def cmd(command: str) -> list[str]:
    """The argv prefix that runs pz-COMMAND with this interpreter."""
    from photoz_tools.cli.manpages import module_name

    return [sys.executable, "-m", module_name(command.removeprefix("pz-"))]


def pz(
    command: str, *args: str, timeout: float = 600, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run pz-COMMAND to completion (captured)."""
    return subprocess.run(
        [*cmd(command), *args],
        capture_output=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **ENV, **(env or {})},
    )


# `pz-mock serve DIR --port 0` in the background, as the demo runs it (a context manager)
from photoz_tools.demo import Server  # noqa: E402


def _step(name: str, out: Path, command: str, *args: str) -> None:
    if out.exists():
        return
    t0 = time.monotonic()
    r = pz(command, *args)
    if r.returncode:
        raise RuntimeError(f"world: {name} failed: {r.stderr.decode()[-800:]}")
    print(f"world: {name} {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)


def build(folder: Path, galaxies: int = 60) -> Path:
    """Make (or reuse) the world in `folder`; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    f = folder
    _step(
        "mock",
        f / "mock",
        "mock",
        "-n",
        str(galaxies),
        "--seed",
        "1",
        "--epochs",
        "1",
        "--per-field",
        "30",
        "-q",
        "-o",
        str(f / "mock"),
    )
    with Server(f / "mock") as s:
        _step(
            "query", f / "mgs.parquet", "query", "--url", s.url, "-q", "-o", str(f / "mgs.parquet")
        )
        _step(
            "frames",
            f / "frames.parquet",
            "query",
            "frames",
            str(f / "mgs.parquet"),
            "--url",
            s.url,
            "-q",
            "-o",
            str(f / "frames.parquet"),
        )
        _step(
            "cutout",
            f / "cutouts.parquet",
            "cutout",
            str(f / "mgs.parquet"),
            "--frame-index",
            str(f / "frames.parquet"),
            "--sas-url",
            s.sas_url,
            "--cache",
            str(f / "cache"),
            "-q",
            "-o",
            str(f / "cutouts.parquet"),
        )
    _step(
        "pack",
        f / "dataset.parquet",
        "pack",
        str(f / "cutouts.parquet"),
        "-c",
        str(f / "mgs.parquet"),
        "--folds",
        "5",
        "--seed",
        "0",
        "-q",
        "-o",
        str(f / "dataset.parquet"),
    )
    _step(
        "train",
        f / "model",
        "train",
        str(f / "dataset.parquet"),
        "-o",
        str(f / "model"),
        "--arch",
        "tiny",
        "--fold",
        "0",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--seed",
        "1",
        "-q",
    )
    _step(
        "predict",
        f / "zphot.parquet",
        "predict",
        "-m",
        str(f / "model"),
        str(f / "dataset.parquet"),
        "-q",
        "-o",
        str(f / "zphot.parquet"),
    )
    _step(
        "score",
        f / "scores.csv",
        "score",
        str(f / "zphot.parquet"),
        "--truth",
        "z",
        "-q",
        "-o",
        str(f / "scores.csv"),
    )
    return folder


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/pzworld"))
