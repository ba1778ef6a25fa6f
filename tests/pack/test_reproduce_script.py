"""examples/reproduce_pasquet2019.sh, its plumbing checked end to end on a tiny sdss.npz with the
real pz-pack and stand-ins for pz-train, pz-predict and pz-score that record their arguments."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "reproduce_pasquet2019.sh"

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0")" in
  pz-train) while [ $# -gt 0 ]; do [ "$1" = -o ] && mkdir -p "$2"; shift; done ;;
  pz-predict) in=""; out=""
    while [ $# -gt 0 ]; do case "$1" in -m) shift ;; -o) out="$2"; shift ;; *) in="$1" ;; esac
      shift; done
    cp "$in" "$out" ;;
  pz-score) while [ $# -gt 0 ]; do [ "$1" = -o ] && echo ok > "$2"; shift; done ;;
esac
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_runs_pack_five_folds_and_scores(tmp_path, sdss_npz):
    path, _, labels = sdss_npz(n=40)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("pz-train", "pz-predict", "pz-score"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{stubs}:{ROOT / 'bin'}:{os.environ['PATH']}",
        "WORK": str(tmp_path / "work"),
        "SDSS_NPZ": str(path),
        "CALLS": str(tmp_path / "calls.txt"),
        "PYTHON": sys.executable,
        "VALIDATION": "0.1",
    }
    out = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    trains = [c for c in calls if c.startswith("pz-train")]
    assert len(trains) == 5 and all("--members 6" in c for c in trains)
    assert any("--group fold" in c for c in calls)
    assert any("--drop-widest 10,20" in c for c in calls)
    work = tmp_path / "work"
    pred = pq.read_table(work / "predictions.parquet", columns=["fold"])
    ds = pq.read_table(work / "dataset.parquet", columns=["fold", "split"])
    # no fold is marked test: pz-train --fold k makes fold k the test set in turn
    assert set(ds.column("split").to_pylist()) == {"train", "validation"}
    assert pred.num_rows == ds.num_rows  # every galaxy predicted once, by its held-out fold
    assert sorted(pred.column("fold").to_pylist()) == sorted(ds.column("fold").to_pylist())
    assert "EBV" in (work / "labels.tsv").read_text()
