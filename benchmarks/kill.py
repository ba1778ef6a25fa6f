"""Kill tests: `kill -9` each long command at random points, rerun it, compare (issue 13).

Why: cron jobs die (OOM killer, reboots, a full queue). After a SIGKILL at any moment the
output must be absent or complete and identical to an uninterrupted run's, caches must hold no
truncated file, and a rerun must finish the work and give that same output.

    nice -n 10 .venv/bin/python benchmarks/kill.py --trials 100 --train-trials 30 \\
        --budget-minutes 20 --out kill.json
    nice -n 10 .venv/bin/python benchmarks/kill.py --only query,pack --trials 5

Each trial: start the command in its own process group, SIGKILL the group after a random
delay within the uninterrupted run's duration, check what is on disk, rerun to completion,
compare with the reference output. The valid inputs come from benchmarks/pzworld.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from pzworld import ENV, Server, build, cmd  # noqa: E402

WORLD = Path(tempfile.gettempdir()) / "pzworld"


@dataclass
class KillResult:
    command: str
    trials: int = 0
    absent: int = 0
    complete: int = 0
    failures: list[str] = field(default_factory=list)
    reference_seconds: float = 0.0
    seconds: float = 0.0


# --------------------------------------------------------------------------- comparing outputs


def table_digest(path: Path) -> list:
    """The table's columns and values (metadata such as provenance times left out)."""
    import numpy as np

    from photoz_tools.tables import column_array, read_table

    t = read_table(str(path))
    out = [t.column_names, t.num_rows]
    for name in t.column_names:
        a = column_array(t, name)
        out.append(a.tobytes() if isinstance(a, np.ndarray) and a.dtype.kind != "O" else a.tolist())
    return out


def folder_digest(path: Path) -> dict[str, object]:
    """Every file of a folder output: tables by content, JSON without times, others by bytes."""
    out: dict[str, object] = {}
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = str(f.relative_to(path))
        if f.name.startswith("."):  # a killed run's temporary: counted, not compared
            out[".leftovers"] = int(out.get(".leftovers", 0)) + 1  # type: ignore[call-overload]
            continue
        if f.suffix in (".parquet", ".fits"):
            out[rel] = table_digest(f)
        elif f.suffix == ".json":
            data = json.loads(f.read_text())
            if isinstance(data, dict) and "parameters" in data:
                data = data["parameters"]  # pz-mock: the rest holds paths and times
            elif isinstance(data, dict):
                for k in ("created", "command_line", "timings", "seconds", "elapsed"):
                    data.pop(k, None)
            out[rel] = json.dumps(data, sort_keys=True, default=str)
        elif f.suffix == ".keras":
            out[rel] = "keras member"  # training on CPU threads is not bitwise repeatable
        else:
            out[rel] = f.read_bytes()
    return out


def digest(path: Path) -> object:
    return folder_digest(path) if path.is_dir() else table_digest(path)


def bundle_ok(path: Path) -> str | None:
    """None when `path` is a complete bundle (manifest, members matching their hashes)."""
    from photoz_tools.model.bundle import BundleError, verify

    try:
        verify(path)
    except BundleError as exc:
        return str(exc)
    return None


def cache_ok(cache: Path) -> str | None:
    """None when every cached frame is complete (no truncated file kept)."""
    from photoz_tools.imaging.frames import FrameError
    from photoz_tools.sdss.sas import verify_frame_bytes

    if not cache.exists():
        return None
    for f in cache.rglob("*"):
        if f.is_file() and f.name.endswith(".bz2"):
            try:
                verify_frame_bytes(f.read_bytes(), str(f))
            except FrameError as exc:
                return f"cache holds a broken frame: {exc}"
    return None


# --------------------------------------------------------------------------- one trial


@dataclass
class Job:
    """One command to interrupt: its argv (with OUT for the output path), how to judge it."""

    command: str
    argv: list[str]
    output_name: str
    same: Callable[[Path, object], str | None]
    extra_check: Callable[[Path], str | None] = lambda folder: None
    timeout: float = 900
    # whether the output at this path is a finished one; pz-mock resumes in its folder and marks
    # it finished by writing mock.json last, so its folder alone means "unfinished"
    finished: Callable[[Path], bool] = Path.exists


def _same_digest(out: Path, reference: object) -> str | None:
    try:
        return None if digest(out) == reference else "output differs from the uninterrupted run"
    except Exception as exc:  # noqa: BLE001  (an unreadable output is the finding)
        return f"output unreadable ({type(exc).__name__}: {exc})"


BUNDLE_KEYS = ("format", "format_version", "architecture", "bins", "inputs", "scaling")


def _same_bundle(out: Path, reference: object) -> str | None:
    """Complete (hashes) and made for the same model; CPU training and its per-run metrics are
    not bitwise repeatable, so members and metrics are not compared."""
    problem = bundle_ok(out)
    if problem:
        return f"incomplete bundle: {problem}"
    got = json.loads((out / "manifest.json").read_text())
    want = json.loads(reference["manifest.json"])  # type: ignore[index]
    same = all(got.get(k) == want.get(k) for k in BUNDLE_KEYS)
    same = same and len(got.get("members", [])) == len(want.get("members", []))
    return None if same else "bundle made for another model than the uninterrupted run's"


def run_job(job: Job, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    out = folder / job.output_name
    argv = [a.replace("OUT", str(out)) for a in job.argv]
    return subprocess.run(
        [*cmd(job.command), *argv], capture_output=True, cwd=folder, env=env, timeout=job.timeout
    )


def start_job(job: Job, folder: Path, env: dict[str, str]) -> subprocess.Popen:
    out = folder / job.output_name
    argv = [a.replace("OUT", str(out)) for a in job.argv]
    return subprocess.Popen(
        [*cmd(job.command), *argv],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def trial(
    job: Job, folder: Path, env: dict[str, str], delay: float, reference: object
) -> tuple[str, float]:
    """Kill after `delay` s, check, rerun, compare: ("absent"/"complete" or a failure text, the
    rerun's seconds or 0 where there was none)."""
    out = folder / job.output_name
    proc = start_job(job, folder, env)
    try:
        proc.wait(delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    state = "complete" if job.finished(out) else "absent"
    found = []
    problem = (job.same(out, reference) if state == "complete" else None) or job.extra_check(folder)
    if problem:
        found.append(f"after the kill at {delay:.2f} s: {problem}")
    elif state == "complete":
        return state, 0.0  # nothing to redo (pz-train would refuse to overwrite it without --force)
    t0 = time.monotonic()
    r = run_job(job, folder, env)  # rerun even after a finding: does the rerun repair it?
    rerun_seconds = time.monotonic() - t0
    if r.returncode:
        found.append(f"the rerun failed: {r.stderr.decode()[-300:]}")
    else:
        problem = job.same(out, reference) or job.extra_check(folder)
        found.append(f"the rerun: {problem}" if problem else "the rerun matched" if found else "")
    return "; ".join(f for f in found if f) or state, rerun_seconds


def campaign(
    job: Job, trials: int, budget: float, env: dict[str, str], seed: int = 0
) -> KillResult:
    """A reference run, then up to `trials` kill trials within `budget` seconds."""
    res = KillResult(job.command + ("" if job.output_name.startswith("out") else ""))
    base = Path(tempfile.mkdtemp(prefix=f"kill-{job.command}-"))
    try:
        ref_dir = base / "ref"
        ref_dir.mkdir()
        t0 = time.monotonic()
        r = run_job(job, ref_dir, env)
        res.reference_seconds = time.monotonic() - t0
        if r.returncode:
            res.failures.append(f"reference run failed: {r.stderr.decode()[-300:]}")
            return res
        reference = digest(ref_dir / job.output_name)
        # seed 0 draws the kill points of the recorded runs; another seed adds new ones
        rng = random.Random(f"kill-{job.command}" + (f"-{seed}" if seed else ""))
        start = time.monotonic()
        reruns: list[float] = []
        while res.trials < trials and time.monotonic() - start < budget:
            folder = base / f"t{res.trials}"
            folder.mkdir()
            # kill points span the run as it is now: a reference run on a quieter machine (or a
            # warm cache) is shorter than the trials' runs, and its span would miss their ends
            span = max([res.reference_seconds, *reruns[-5:]])
            delay = rng.uniform(0.0, span * 1.1)
            outcome, rerun_seconds = trial(job, folder, env, delay, reference)
            if rerun_seconds:
                reruns.append(rerun_seconds)
            res.trials += 1
            if outcome == "absent":
                res.absent += 1
            elif outcome == "complete":
                res.complete += 1
            else:
                res.failures.append(outcome)
            shutil.rmtree(folder, ignore_errors=True)
        res.seconds = time.monotonic() - start
        return res
    finally:
        shutil.rmtree(base, ignore_errors=True)


def jobs(world: Path, urls: dict[str, str]) -> dict[str, Job]:
    """The long commands, each on the world's inputs."""
    w = world
    return {
        "query": Job(
            "query",
            ["--url", urls["sky"], "--page-size", "10", "-q", "--spool", "spool", "-o", "OUT"],
            "out.parquet",
            _same_digest,
            lambda f: _spool_ok(f / "spool"),
        ),
        "cutout": Job(
            "cutout",
            [
                str(w / "mgs.parquet"),
                "--frame-index",
                str(w / "frames.parquet"),
                "--sas-url",
                urls["sas"],
                "--cache",
                "cache",
                "-q",
                "-o",
                "OUT",
            ],
            "out.parquet",
            _same_digest,
            lambda f: cache_ok(f / "cache"),
        ),
        "pack": Job(
            "pack",
            [
                str(w / "cutouts.parquet"),
                "-c",
                str(w / "mgs.parquet"),
                "--folds",
                "5",
                "--seed",
                "0",
                "-q",
                "-o",
                "OUT",
            ],
            "out.parquet",
            _same_digest,
        ),
        "predict": Job(
            "predict",
            ["-m", str(w / "model"), str(w / "dataset.parquet"), "-q", "-o", "OUT"],
            "out.parquet",
            _same_digest,
        ),
        "mock": Job(
            "mock",
            ["-n", "12", "--per-field", "6", "--seed", "3", "--epochs", "1", "-q", "-o", "OUT"],
            "out",
            _same_digest,
            finished=lambda out: (out / "mock.json").exists(),
        ),
        "train": Job(
            "train",
            [
                str(w / "dataset.parquet"),
                "-o",
                "OUT",
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
            ],
            "out",
            _same_bundle,
        ),
    }


def _spool_ok(spool: Path) -> str | None:
    """Every page left in a query spool reads as Parquet (no half-written page)."""
    import pyarrow.parquet as pq

    if not spool.exists():
        return None
    for f in spool.rglob("*.parquet"):
        try:
            pq.read_metadata(f)
        except Exception as exc:  # noqa: BLE001
            return f"spool holds a broken page {f.name}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=100, help="trials per command")
    ap.add_argument("--train-trials", type=int, default=30, help="trials for pz-train")
    ap.add_argument("--budget-minutes", type=float, default=60, help="per command, at most")
    ap.add_argument("--only", default="", help="comma list of commands")
    ap.add_argument("--out", default="", help="write the results as JSON here")
    ap.add_argument("--seed", type=int, default=0, help="another seed draws other kill points")
    args = ap.parse_args(argv)
    world = build(WORLD)
    only = {s for s in args.only.split(",") if s}
    env = {**os.environ, **ENV}
    results = []
    with Server(world / "mock") as server:
        for name, job in jobs(world, {"sky": server.url, "sas": server.sas_url}).items():
            if only and name not in only:
                continue
            n = args.train_trials if name == "train" else args.trials
            res = campaign(job, n, args.budget_minutes * 60, env, args.seed)
            results.append(res)
            print(
                f"kill pz-{name:8s} trials {res.trials:4d} absent {res.absent:4d} complete "
                f"{res.complete:4d} failures {len(res.failures):3d} (reference run "
                f"{res.reference_seconds:.1f} s, trials {res.seconds:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            for f in res.failures[:5]:
                print(f"    FAIL {f[:400]}", file=sys.stderr)
            if args.out:
                Path(args.out).write_text(json.dumps([r.__dict__ for r in results], indent=1))
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
