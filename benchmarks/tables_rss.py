"""Peak memory and speed of streaming table I/O (photoz_tools.tables) on the predictions schema.

Each step (write, stream-read, stream-copy) runs in a fresh subprocess, which reports its peak RSS
(resource.getrusage ru_maxrss) and wall time, so that one step's memory cannot hide another's.
The claim to check: peak RSS does not grow with the number of rows (10^5 vs 10^6).

    .venv/bin/python benchmarks/tables_rss.py                    # 1e5 and 1e6 rows, 3 repeats
    .venv/bin/python benchmarks/tables_rss.py --rows 100000 --repeats 1 --dir /tmp/pzbench

The predictions schema: id int64; z, zphot, zphot_err, zmode, z_lo68, z_hi68, width68 float32;
pz_flags int16; pdf float32[180] (736 bytes a row, 736 MB for 10^6 rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SCALARS = ("z", "zphot", "zphot_err", "zmode", "z_lo68", "z_hi68", "width68")
NBINS = 180


def _schema():
    import pyarrow as pa

    fields = [pa.field("id", pa.int64())]
    fields += [pa.field(name, pa.float32()) for name in SCALARS]
    fields += [pa.field("pz_flags", pa.int16()), pa.field("pdf", pa.list_(pa.float32(), NBINS))]
    return pa.schema(fields)


def _batch(start: int, n: int, schema):
    """A deterministic batch of predictions (PDFs normalised to 1)."""
    import numpy as np
    import pyarrow as pa

    from photoz_tools import tables

    rng = np.random.default_rng(start)
    pdf = rng.random((n, NBINS), dtype=np.float32)
    pdf /= pdf.sum(axis=1, keepdims=True)
    cols = [pa.array(np.arange(start, start + n, dtype=np.int64) + 1237648720693755918)]
    cols += [pa.array(rng.random(n, dtype=np.float32) * 0.4) for _ in SCALARS]
    cols += [pa.array(rng.integers(0, 4, n).astype(np.int16)), tables.to_arrow(pdf)]
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def step(kind: str, path: str, rows: int, batch_rows: int, out: str | None) -> dict:
    """One measured step in this process; returns seconds, rows and peak RSS (MB)."""
    import resource

    import numpy as np

    from photoz_tools import tables

    t0 = time.perf_counter()
    done = 0
    check = 0.0
    if kind == "write":
        schema = _schema()
        meta = {tables.BIN_EDGES_KEY: json.dumps(np.linspace(0, 0.4, NBINS + 1).tolist())}
        with tables.TableWriter(path, schema, metadata=meta) as writer:
            for start in range(0, rows, batch_rows):
                batch = _batch(start, min(batch_rows, rows - start), schema)
                writer.write(batch)
                done += batch.num_rows
    elif kind == "read":
        with tables.open_table(path, batch_rows=batch_rows) as reader:
            for batch in reader.iter_batches():
                check += float(tables.column_array(batch, "pdf")[:, 0].sum())
                done += batch.num_rows
    elif kind == "copy":
        with tables.open_table(path, batch_rows=batch_rows) as reader:
            with tables.TableWriter(out, reader.schema) as writer:
                for batch in reader.iter_batches():
                    writer.write(batch)
                    done += batch.num_rows
    seconds = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"kind": kind, "rows": done, "seconds": seconds, "peak_rss_mb": peak_kb / 1024}


def _baseline() -> float:
    """Peak RSS of a process that only imports numpy, pyarrow, fitsio and photoz_tools.tables."""
    code = (
        "import resource, fitsio, pyarrow.parquet, photoz_tools.tables\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    return float(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )


def _run_step(kind, path, rows, batch_rows, out=None) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--step",
        kind,
        "--path",
        path,
        "--rows",
        str(rows),
        "--batch-rows",
        str(batch_rows),
    ]
    if out:
        cmd += ["--out", out]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout)


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--formats", nargs="+", default=["parquet", "fits"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-rows", type=int, default=4096)
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.step:
        print(json.dumps(step(args.step, args.path, args.rows[0], args.batch_rows, args.out)))
        return

    scratch = args.dir or tempfile.mkdtemp(prefix="pz-tables-bench-")
    os.makedirs(scratch, exist_ok=True)
    base = _baseline()
    print(f"# machine: {os.cpu_count()} CPUs, {_cpu_model()}; Python {platform.python_version()}")
    print(
        f"# baseline peak RSS (imports only): {base:.0f} MB; batch {args.batch_rows} rows; "
        f"median of {args.repeats}"
    )
    print(
        f"{'format':8} {'rows':>9} {'step':6} {'rows/s':>10} {'MB/s':>7} {'peak RSS MB':>12} "
        f"{'file MB':>8}"
    )
    results = []
    try:
        for fmt in args.formats:
            for rows in args.rows:
                path = os.path.join(scratch, f"pred-{rows}.{fmt}")
                out = os.path.join(scratch, f"copy-{rows}.{fmt}")
                for kind in ("write", "read", "copy"):
                    runs = []
                    for _ in range(args.repeats):
                        runs.append(
                            _run_step(
                                kind, path, rows, args.batch_rows, out if kind == "copy" else None
                            )
                        )
                        if kind == "copy":
                            os.unlink(out)
                    secs = statistics.median(r["seconds"] for r in runs)
                    rss = statistics.median(r["peak_rss_mb"] for r in runs)
                    size = os.path.getsize(path) / 2**20
                    row = {
                        "format": fmt,
                        "rows": rows,
                        "step": kind,
                        "rows_per_s": rows / secs,
                        "mb_per_s": size / secs,
                        "peak_rss_mb": rss,
                        "file_mb": size,
                        "rss_runs": [round(r["peak_rss_mb"]) for r in runs],
                        "seconds_runs": [round(r["seconds"], 2) for r in runs],
                    }
                    results.append(row)
                    print(
                        f"{fmt:8} {rows:>9} {kind:6} {rows / secs:>10,.0f} {size / secs:>7.0f} "
                        f"{rss:>12.0f} {size:>8.0f}",
                        flush=True,
                    )
                os.unlink(path)
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"baseline_rss_mb": base, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
