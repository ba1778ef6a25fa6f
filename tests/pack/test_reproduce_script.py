"""examples/reproduce_pasquet2019.sh run end to end with the real commands (pz-pack, pz-train,
pz-predict, pz-score from bin/) on a tiny sdss.npz: 2 folds, 1 tiny member, 1 step. Each
command is reached through a wrapper that logs its arguments, then runs the real one."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "reproduce_pasquet2019.sh"

WRAPPER = """#!/bin/sh
echo "$(basename "$0") $*" >> "$CALLS"
exec "{bin}/$(basename "$0")" "$@"
"""


def test_script_defaults_are_the_papers():
    text = SCRIPT.read_text()
    assert "FOLDS=${FOLDS:-5}" in text and "MEMBERS=${MEMBERS:-6}" in text
    assert "--test-fold none" in text


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_script_runs_the_real_commands_on_a_tiny_npz(tmp_path, sdss_npz):
    pytest.importorskip("keras")
    path, _, labels = sdss_npz(n=40)
    wrappers = tmp_path / "wrappers"
    wrappers.mkdir()
    for name in ("pz-pack", "pz-train", "pz-predict", "pz-score"):
        (wrappers / name).write_text(WRAPPER.format(bin=ROOT / "bin"))
        (wrappers / name).chmod(0o755)
    work = tmp_path / "work"
    env = {
        **os.environ,
        "PATH": f"{wrappers}:{os.environ['PATH']}",
        "WORK": str(work),
        "SDSS_NPZ": str(path),
        "CALLS": str(tmp_path / "calls.txt"),
        "PYTHON": sys.executable,
        "FOLDS": "2",
        "MEMBERS": "1",
        "VALIDATION": "0.1",
        "TRAIN_OPTS": "--arch tiny --steps 1 --batch-size 8 --no-xla",
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "PZ_MODEL": "",
        "OMP_NUM_THREADS": "2",
    }
    out = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    calls = (tmp_path / "calls.txt").read_text().splitlines()
    trains = [c for c in calls if c.startswith("pz-train")]
    assert len(trains) == 2 and all("--members 1" in c for c in trains)
    assert {c.split("--fold ")[1].split()[0] for c in trains} == {"0", "1"}
    assert sum(c.startswith("pz-predict") for c in calls) == 2
    assert sum(c.startswith("pz-score") for c in calls) == 3

    # the MGS cut of the labels, computed here
    mgs = (labels["dered_petro_r"] <= 17.8) & (labels["z"] <= 0.4) & (labels["primtarget"] >= 64)
    ds = pq.read_table(work / "dataset.parquet", columns=["specObjID", "fold", "split"])
    assert sorted(ds.column("specObjID").to_pylist()) == sorted(labels["specObjID"][mgs].tolist())
    # no fold is marked test: pz-train --fold k makes fold k the test set in turn
    assert set(ds.column("split").to_pylist()) == {"train", "validation"}
    assert set(ds.column("fold").to_pylist()) == {0, 1}
    for k in (0, 1):
        manifest = (work / f"model-fold{k}" / "manifest.json").read_text()
        assert '"fold": ' + str(k) in manifest

    # every galaxy predicted once, by the model that held its fold out
    pred = pq.read_table(work / "predictions.parquet")
    assert sorted(pred.column("specObjID").to_pylist()) == sorted(
        ds.column("specObjID").to_pylist()
    )
    zphot = np.asarray(pred.column("zphot"))
    assert np.isfinite(zphot).all() and ((zphot > 0) & (zphot < 0.4)).all()
    assert "zphot_b16" in pred.column_names  # the authors' Beck et al. column, renamed

    with open(work / "table2.csv") as f:
        table2 = list(csv.DictReader(f))
    assert {r["estimator"] for r in table2} == {"zphot", "zphot_b16"}
    with open(work / "table1.csv") as f:
        table1 = list(csv.DictReader(f))
    assert len(table1) >= 2  # one row per fold (and the mean/std over them)
    assert (work / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "EBV" in (work / "labels.tsv").read_text()
