"""pz-train: planning, refusals, determinism and resuming after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("keras")


def test_dry_run_plans_without_training(cli, tiny_dataset, model_env, tmp_path):
    r = cli(
        "pz-train",
        str(tiny_dataset),
        "--arch",
        "tiny",
        "--fold",
        "1",
        "--epochs",
        "3",
        "--batch-size",
        "50",
        "--dry-run",
        env=model_env,
    )
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert "trainable parameters: 153,156" in out
    assert "600 rows; training 432, validation 48 (drawn), held out 120" in out
    assert "x 24 steps of 50 (8 steps per epoch, 3.0 epochs)" in out
    assert not list(tmp_path.iterdir())


def test_out_of_range_redshifts_refused_with_a_count(cli, make_dataset, tmp_path, model_env):
    z = np.full(30, 0.1)
    z[:3] = [0.45, -0.01, np.nan]
    path = make_dataset(tmp_path / "d.parquet", 30, seed=5)
    import pyarrow as pa

    from photoz_tools import tables

    t = tables.read_table(path)
    tables.write_table(t.set_column(t.column_names.index("z"), "z", pa.array(z)), path)
    r = cli("pz-train", str(path), "-o", str(tmp_path / "b"), "--arch", "tiny", env=model_env)
    assert r.returncode == 1
    assert b"3 rows have z outside the bins [0, 0.4]" in r.stderr
    assert b"--drop-out-of-range" in r.stderr
    r = cli(
        "pz-train", str(path), "--arch", "tiny", "--dry-run", "--drop-out-of-range", env=model_env
    )
    assert r.returncode == 0, r.stderr.decode()
    assert b"dropped out of range 3" in r.stdout


def test_split_column_gives_the_validation_rows(cli, make_dataset, tmp_path, model_env):
    path = make_dataset(tmp_path / "d.parquet", 50, seed=6, split=True)
    r = cli("pz-train", str(path), "--arch", "tiny", "--dry-run", env=model_env)
    assert r.returncode == 0, r.stderr.decode()
    assert b"training 45, validation 5 (split column)" in r.stdout


def test_usage_errors(cli, tiny_dataset, model_env):
    r = cli("pz-train", str(tiny_dataset), "--arch", "tiny", env=model_env)
    assert r.returncode == 2 and b"-o BUNDLE" in r.stderr
    r = cli(
        "pz-train", str(tiny_dataset), "--arch", "tiny", "--fold", "9", "--dry-run", env=model_env
    )
    assert r.returncode == 2 and b"--fold 9" in r.stderr


def _weights(bundle):
    import keras

    from photoz_tools.model import architecture  # noqa: F401  (registers InputScaling)

    return [
        np.asarray(w)
        for m in sorted(bundle.glob("member_*.keras"))
        for w in keras.saving.load_model(m, compile=False).get_weights()
    ]


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_and_matches_an_uninterrupted_run(
    tiny_dataset, model_env, tmp_path
):
    """Deterministic with a seed on CPU, and a resumed run ends with the same weights."""
    args = [
        str(tiny_dataset),
        "--arch",
        "tiny",
        "--steps",
        "30",
        "--batch-size",
        "16",
        "--seed",
        "11",
        "--val-size",
        "30",
        "--checkpoint-every",
        "4",
        "--no-xla",
        "-q",
    ]
    env = {**os.environ, **model_env}
    cmd = [sys.executable, "-m", "photoz_tools.cli.train"]
    ref = subprocess.run(
        [*cmd, *args, "-o", str(tmp_path / "ref")], env=env, capture_output=True, timeout=600
    )
    assert ref.returncode == 0, ref.stderr.decode()

    out = tmp_path / "run"
    state = tmp_path / "run.partial" / "member_0.state.json"
    proc = subprocess.Popen(
        [*cmd, *args, "-o", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    step = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            step = json.loads(state.read_text()).get("step", 0)
        except (OSError, ValueError):
            step = 0
        if step >= 8:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 8 <= step < 30 and not out.exists()

    again = subprocess.run(
        [*cmd, *args, "-o", str(out)], env={**env}, capture_output=True, timeout=600
    )
    assert again.returncode == 0, again.stderr.decode()
    assert not (tmp_path / "run.partial").exists()
    m = json.loads((out / "manifest.json").read_text())
    assert m["members"][0]["steps"] == 30
    for a, b in zip(_weights(tmp_path / "ref"), _weights(out), strict=True):
        np.testing.assert_array_equal(a, b)


def test_rerun_with_other_settings_does_not_resume(cli, tiny_dataset, model_env, tmp_path):
    work = tmp_path / "b.partial"
    work.mkdir()
    (work / "run.json").write_text(json.dumps({"key": "something else"}))
    r = cli(
        "pz-train",
        str(tiny_dataset),
        "-o",
        str(tmp_path / "b"),
        "--arch",
        "tiny",
        "--steps",
        "1",
        env=model_env,
    )
    assert r.returncode == 1 and b"--restart" in r.stderr
