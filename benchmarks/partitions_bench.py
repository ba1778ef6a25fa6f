"""pz-predict over a partitioned catalogue (issue 11): scaling with local Dask workers, the cost
of a rerun with nothing to do, and a projection for 10^9 galaxies.

    .venv/bin/python benchmarks/partitions_bench.py --arch small --parts 16 --rows 64 \
        --workers 1 2 4 --noop-parts 1000 --json /tmp/partitions.json

1. A bundle of --arch (untrained weights: speed only) and a catalogue of --parts Parquet
   partitions of --rows generated galaxies each (tests/model/conftest.py's generator).
2. The real command, `pz-predict -m B CAT -o OUT`, timed end to end as a user runs it: in
   process (no --scheduler) and with `--scheduler local:N` for each N of --workers, each into a
   fresh output folder; galaxies/s = rows / wall (start-up, worker start and bundle loading
   included, as a cron run pays them), and the rate of the partitions themselves from the
   command's own summary line.
3. A rerun over --noop-parts up-to-date partitions (tiny files, outputs stamped as a real run
   stamps them): the seconds a nightly run costs when nothing is new.
4. The projection: 10^9 galaxies at a measured per-device rate (--gpu-rate, default the paper's
   610 galaxies/s on a GTX Titan X until a GPU is measured here) on N devices.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _conftest():
    spec = importlib.util.spec_from_file_location("_pz_conftest", ROOT / "tests/model/conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_bundle(arch: str, out: Path) -> Path:
    from photoz_tools.model import architecture, bundle
    from photoz_tools.pdf import Bins

    config = architecture.load_config(arch)
    out.mkdir()
    manifest = bundle.manifest_header(config, Bins.default(), config["scaling"], "benchmark")
    manifest["members"] = [bundle.save_member(architecture.build_model(config, seed=0), out, 0)]
    bundle.write_json_atomic(out / "manifest.json", manifest)
    return out


def make_catalogue(root: Path, parts: int, rows: int) -> None:
    ct = _conftest()
    for k in range(parts):
        path = root / f"night={k // 4}" / f"part-{k}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        ct.write_dataset(path, rows, seed=100 + k)


def run_command(bundle: Path, cat: Path, out: Path, scheduler: str | None) -> dict:
    cmd = [sys.executable, "-m", "photoz_tools.cli.predict", "-m", str(bundle), str(cat)]
    cmd += ["-o", str(out)] + (["--scheduler", scheduler] if scheduler else [])
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    line = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    rows = int(re.search(r"([\d,]+) rows", line).group(1).replace(",", ""))
    inner = float(re.search(r"([\d.,]+) galaxies/s", line).group(1).replace(",", ""))
    return {
        "wall_s": wall,
        "rows": rows,
        "galaxies_per_s_wall": rows / wall,
        "galaxies_per_s_summary": inner,
        "summary": line,
    }


def noop_rerun(n: int, tmp: Path) -> dict:
    """Seconds for a run over n partitions that are all up to date (no model work at all)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from photoz_tools import partitions

    cat, out = tmp / "noop-cat", tmp / "noop-out"
    for k in range(n):
        p = cat / f"Norder=5/Dir=0/Npix={k}.parquet"
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": [k]}), p)
    parts = partitions.discover(cat)
    key = partitions.run_key(bundle="b", pdf="float32")

    def copy(part, o, meta):
        o.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pq.read_table(part.path).replace_schema_metadata(meta), o)
        return 1

    partitions.run(parts, out, key, copy)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        s = partitions.run(partitions.discover(cat), out, key, copy)
        times.append(time.perf_counter() - t)
        assert s.up_to_date == n and s.done == 0
    times.sort()
    return {"partitions": n, "seconds_median_of_3": times[1], "seconds": times}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="small")
    ap.add_argument("--parts", type=int, default=16)
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--noop-parts", type=int, default=1000)
    ap.add_argument(
        "--gpu-rate",
        type=float,
        default=610.0,
        help="galaxies/s per device for the projection (paper: 610 on a Titan X)",
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    res: dict = {"load_before": os.getloadavg(), "args": vars(args)}
    with open("/proc/cpuinfo") as f:
        res["cpu"] = next(
            (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
        )
    res["cores"] = os.cpu_count()
    tmp = Path(tempfile.mkdtemp(prefix="pz-partbench-"))
    try:
        bundle = make_bundle(args.arch, tmp / "bundle")
        cat = tmp / "cat"
        make_catalogue(cat, args.parts, args.rows)
        runs = {}
        for label, sched in [("in process", None)] + [
            (f"local:{n}", f"local:{n}") for n in args.workers
        ]:
            out = tmp / f"out-{label.replace(':', '').replace(' ', '')}"
            runs[label] = run_command(bundle, cat, out, sched)
            print(
                f"{label:>12}: {runs[label]['galaxies_per_s_wall']:8.1f} galaxies/s wall "
                f"({runs[label]['wall_s']:.1f} s)  {runs[label]['summary']}",
                flush=True,
            )
        res["runs"] = runs
        res["noop"] = noop_rerun(args.noop_parts, tmp)
        print(
            f"rerun over {args.noop_parts} up-to-date partitions: "
            f"{res['noop']['seconds_median_of_3']:.2f} s (median of 3)",
            flush=True,
        )
        res["projection"] = {n: 1e9 / (args.gpu_rate * n) / 3600 for n in (1, 8, 64)}
        for n, h in res["projection"].items():
            print(
                f"10^9 galaxies at {args.gpu_rate:g} galaxies/s per device on {n} devices: "
                f"{h:,.1f} h",
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["load_after"] = os.getloadavg()
    print(json.dumps(res, indent=1, default=str))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
