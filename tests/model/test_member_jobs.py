"""pz-train --member K and --assemble: ensemble members trained as independent jobs (one per GPU
or machine) equal the members of a full run, and join into the same ensemble bundle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("keras")

# tiny network, a handful of steps: what matters is the equality, not the learning
ARGS = [
    "--arch",
    "tiny",
    "--members",
    "2",
    "--steps",
    "4",
    "--batch-size",
    "16",
    "--seed",
    "5",
    "--val-size",
    "16",
    "--no-xla",
    "-q",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, make_dataset, model_env) -> dict[str, Path]:
    """A full 2-member run and the two --member jobs of it, trained at the same time as
    separate processes (as jobs on several GPUs would be), beside each other in one folder."""
    root = tmp_path_factory.mktemp("jobs")
    data = make_dataset(root / "d.parquet", 64, seed=4)
    out = {"full": root / "full", "job0": root / "job0", "job1": root / "job1"}
    extra = {"full": [], "job0": ["--member", "0"], "job1": ["--member", "1"]}
    env = {**os.environ, **model_env}
    procs = {
        name: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "photoz_tools.cli.train",
                str(data),
                *ARGS,
                *extra[name],
                "-o",
                str(path),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for name, path in out.items()
    }
    for name, p in procs.items():
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, f"{name}: {err.decode()}"
    assert sorted(x.name for x in root.iterdir()) == ["d.parquet", "full", "job0", "job1"]
    return {**out, "data": data, "root": root}


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    from photoz_tools.model import architecture  # noqa: F401  (registers InputScaling)

    return [np.asarray(w) for w in keras.saving.load_model(path, compile=False).get_weights()]


@pytest.mark.slow
def test_a_member_job_equals_that_member_of_the_full_run(runs):
    """Bit for bit on CPU: the member's seed (SeedSequence(seed, (K,))), initial weights and
    batches do not depend on the other members, and TF's CPU kernels are deterministic for a
    fixed thread count (no enable_op_determinism needed here)."""
    full, job = _manifest(runs["full"]), _manifest(runs["job1"])
    assert [m["file"] for m in job["members"]] == ["member_1.keras"]
    assert job["members"][0]["member"] == 1
    assert job["seeds"] == [full["seeds"][1]] and full["seeds"][0] != full["seeds"][1]
    assert job["recipe"]["members"] == 2 and job["recipe"]["member_job"] == 1
    assert full["recipe"]["member_job"] is None
    assert job["history"] == [full["history"][1]]  # losses and validation metrics too
    a = _weights(runs["full"] / "member_1.keras")
    b = _weights(runs["job1"] / "member_1.keras")
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    other = _weights(runs["full"] / "member_0.keras")
    assert not all(np.array_equal(x, y) for x, y in zip(a, other, strict=True))


@pytest.mark.slow
def test_assembled_jobs_predict_as_the_full_run(runs, cli, model_env, tmp_path):
    from photoz_tools.model.predict import predict_arrays

    from .conftest import galaxies

    out = tmp_path / "ensemble"
    # given out of order: the members are written in their member order
    r = cli("pz-train", "--assemble", str(runs["job1"]), str(runs["job0"]), "-o", str(out))
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ensemble"]
    m, full = _manifest(out), _manifest(runs["full"])
    assert [e["file"] for e in m["members"]] == ["member_0.keras", "member_1.keras"]
    assert [e["member"] for e in m["members"]] == [0, 1]
    assert m["seeds"] == full["seeds"] and m["history"] == full["history"]
    assert m["recipe"] == full["recipe"]
    assert m["data"]["fingerprint"] == full["data"]["fingerprint"]
    assert [s["bundle"] for s in m["assembled_from"]] == [str(runs["job1"]), str(runs["job0"])]
    assert m["members"][0]["source"]["versions"] == _manifest(runs["job0"])["versions"]
    g = galaxies(24, seed=9)
    got = predict_arrays(out, g["image"], g["ebv"])
    want = predict_arrays(runs["full"], g["image"], g["ebv"])
    np.testing.assert_array_equal(got, want)

    again = cli("pz-train", "--assemble", str(runs["job0"]), str(runs["job1"]), "-o", str(out))
    assert again.returncode == 1 and b"--force" in again.stderr
    forced = cli(
        "pz-train", "--assemble", str(runs["job0"]), str(runs["job1"]), "-o", str(out), "--force"
    )
    assert forced.returncode == 0, forced.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ensemble"]


def _tampered(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    m = _manifest(dst)
    edit(m)
    (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def _one_line(r) -> str:
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.slow
def test_assemble_refuses_bundles_of_other_runs(runs, cli, tmp_path):
    out = tmp_path / "out"
    job0, job1 = str(runs["job0"]), str(runs["job1"])

    def other_seed(m):
        m["recipe"]["seed"] = 6

    def other_data(m):
        m["data"]["fingerprint"] = "0" * 64

    def other_arch(m):
        m["architecture"]["dense"] = [7]

    def other_bins(m):
        m["bins"][-1] = 0.5

    for name, edit, field in [
        ("seed", other_seed, "recipe.seed"),
        ("data", other_data, "data.fingerprint"),
        ("arch", other_arch, "architecture.dense[0]"),
        ("bins", other_bins, "bins[180]"),
    ]:
        bad = _tampered(runs["job1"], tmp_path / name, edit)
        r = cli("pz-train", "--assemble", job0, str(bad), "-o", str(out))
        line = _one_line(r)
        assert r.returncode == 1, line
        assert f"cannot assemble {job0} and {bad}: {field} differs" in line, line

    # the same member twice, from a job and from the full run
    r = cli("pz-train", "--assemble", job1, str(runs["full"]), "-o", str(out))
    assert r.returncode == 1 and "member 1 is also in" in _one_line(r)

    # the same member seed under another member number
    def same_seed(m):
        m["members"][0]["member"] = 0

    twin = _tampered(runs["job1"], tmp_path / "twin", same_seed)
    r = cli("pz-train", "--assemble", job1, str(twin), "-o", str(out))
    assert r.returncode == 1 and "has the seed" in _one_line(r)

    # an altered member file: bundle.verify's refusal
    altered = tmp_path / "altered"
    shutil.copytree(runs["job0"], altered)
    with open(altered / "member_0.keras", "ab") as f:
        f.write(b"\0")
    r = cli("pz-train", "--assemble", str(altered), job1, "-o", str(out))
    assert r.returncode == 1 and "sha256" in _one_line(r)

    # nothing written, no temporary folder left
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_member_out_of_range_is_a_usage_error(cli, tiny_dataset, model_env, tmp_path):
    for k in ("2", "-1"):
        r = cli(
            "pz-train",
            str(tiny_dataset),
            "-o",
            str(tmp_path / "b"),
            "--arch",
            "tiny",
            "--members",
            "2",
            "--member",
            k,
            env=model_env,
        )
        line = _one_line(r)
        assert r.returncode == 2, line
        if k == "-1":  # refused by the option's own bounds, before --members is known
            assert "--member -1: must be an integer >= 0" in line
        else:
            assert "--member 2: out of range" in line and "0 to 1" in line
    assert not list(tmp_path.iterdir())


def test_member_job_dry_run_and_run_key(cli, tiny_dataset, model_env):
    r = cli(
        "pz-train",
        str(tiny_dataset),
        "--arch",
        "tiny",
        "--members",
        "3",
        "--member",
        "2",
        "--steps",
        "5",
        "--dry-run",
        env=model_env,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert b"plan: member 2 of 3 (--member) x 5 steps" in r.stdout

    from photoz_tools.model import train as tr

    def key(**kw):
        return tr._run_key(tr.plan(str(tiny_dataset), "tiny", tr.Recipe(members=3, **kw)))

    # a member job never resumes a full run's work folder nor another job's
    keys = [key(), key(member_job=0), key(member_job=1)]
    assert len(set(keys)) == 3


def test_assemble_usage_errors(cli, tiny_dataset, tmp_path):
    b = str(tmp_path / "b")
    for args, words in [
        (["--assemble", "-o", b], "name the member bundles"),
        (["--assemble", b, b], "-o BUNDLE"),
        (["--assemble", b, "-o", b, "--arch", "small"], "--arch does not apply to --assemble"),
        (["--assemble", b, "-o", b, "--member", "0"], "--member does not apply"),
        ([str(tiny_dataset), b, "-o", b], "pass --assemble"),
    ]:
        r = cli("pz-train", *args)
        line = _one_line(r)
        assert r.returncode == 2 and words in line, (args, line)
