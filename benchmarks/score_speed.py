"""pz-score speed: point metrics over 10^7 rows, PDF metrics (PIT, CRPS, width68) over 10^6 rows
of 180-bin float32 PDFs processed in chunks, and the whole command on a Parquet file.

Each part runs in its own subprocess (so peak RSS is that part's), `--repeat` times; the
medians are printed. Usage:

    .venv/bin/python benchmarks/score_speed.py                 # defaults below, 3 repeats
    .venv/bin/python benchmarks/score_speed.py --point-rows 1e6 --pdf-rows 1e5 --e2e-rows 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def part_point(n: int) -> dict:
    from photoz_tools import metrics as M

    rng = np.random.default_rng(0)
    zspec = rng.gamma(4, 0.025, n)
    zphot = zspec + rng.normal(0, 0.01, n) * (1 + zspec)
    base = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    row = M.statistics(zphot, zspec)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "rows": n,
        "seconds": dt,
        "cpu_seconds": cpu,
        "rows_per_s": n / dt,
        "peak_rss_mb": peak_rss_mb(),
        "rss_inputs_mb": base,
        "sigma_mad": row["sigma_mad"],
    }


def _chunk_pdfs(rng, m: int, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mid = 0.5 * (edges[:-1] + edges[1:])
    mu = rng.uniform(0.02, 0.35, m)
    sig = rng.uniform(0.005, 0.03, m)
    pdf = np.exp(-0.5 * ((mid[None, :] - mu[:, None]) / sig[:, None]) ** 2).astype(np.float32)
    pdf /= pdf.sum(axis=1, keepdims=True)
    return pdf, mu + rng.normal(0, 1, m) * sig


def part_pdf(n: int, chunk: int) -> dict:
    from photoz_tools import metrics as M
    from photoz_tools import pdf as P

    bins = P.Bins.default()
    rng = np.random.default_rng(1)
    pits, crpss = [], []
    compute = cpu = 0.0
    done = 0
    while done < n:
        m = min(chunk, n - done)
        pdf, z = _chunk_pdfs(rng, m, bins.edges)  # generation is not timed
        t0, c0 = time.perf_counter(), time.process_time()
        pit, crps, width = P.pit_crps_width(pdf, bins, z)
        compute += time.perf_counter() - t0
        cpu += time.process_time() - c0
        pits.append(pit.astype(np.float32))
        crpss.append(crps.astype(np.float32))
        done += m
    t0, c0 = time.perf_counter(), time.process_time()
    flat = M.pit_flatness(np.concatenate(pits))
    crps_mean = float(np.concatenate(crpss).mean())
    compute += time.perf_counter() - t0
    cpu += time.process_time() - c0
    return {
        "rows": n,
        "chunk": chunk,
        "seconds": compute,
        "cpu_seconds": cpu,
        "rows_per_s": n / compute,
        "peak_rss_mb": peak_rss_mb(),
        "pit_ks": flat["pit_ks"],
        "crps": crps_mean,
    }


def part_make_file(n: int, path: str) -> dict:
    import pyarrow as pa

    from photoz_tools import pdf as P
    from photoz_tools.tables import BIN_EDGES_KEY, TableWriter, to_arrow

    bins = P.Bins.default()
    rng = np.random.default_rng(2)
    writer = None
    done = 0
    while done < n:
        m = min(50_000, n - done)
        pdf, z = _chunk_pdfs(rng, m, bins.edges)
        s = P.summarize(pdf, bins)
        cols = {
            "specObjID": np.arange(done, done + m, dtype=np.int64),
            "z": z,
            "zphot": s["zphot"],
            "width68": s["width68"],
            "pdf": pdf,
        }
        batch = pa.record_batch([to_arrow(v) for v in cols.values()], names=list(cols))
        if writer is None:
            writer = TableWriter(path, batch.schema, metadata={BIN_EDGES_KEY: bins.to_json()})
        writer.write(batch)
        done += m
    writer.close()
    return {"rows": n, "bytes": os.path.getsize(path)}


def run_part(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--part", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cli(path: str) -> dict:
    t0 = time.perf_counter()
    cmd = [
        sys.executable,
        "-c",
        "import resource, sys, runpy; sys.argv = ['pz-score', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('photoz_tools.cli.score', run_name='__main__')\n"
        "finally:\n    u = resource.getrusage(resource.RUSAGE_SELF)\n"
        "    print('RSS', u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr)",
        path,
        "-q",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(res.stderr)
    rss, cpu = (float(v) for v in res.stderr.split("RSS")[-1].split()[:2])
    return {"seconds": dt, "cpu_seconds": cpu, "peak_rss_mb": rss / 1024.0, "stdout": res.stdout}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--point-rows", type=float, default=1e7)
    ap.add_argument("--pdf-rows", type=float, default=1e6)
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--e2e-rows", type=float, default=2e5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--part", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.part:
        kind = a.part[0]
        if kind == "point":
            print(json.dumps(part_point(int(a.part[1]))))
        elif kind == "pdf":
            print(json.dumps(part_pdf(int(a.part[1]), int(a.part[2]))))
        elif kind == "make":
            print(json.dumps(part_make_file(int(a.part[1]), a.part[2])))
        return

    print(
        f"machine: {platform.node()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"
    )

    def report(name: str, runs: list[dict], rows: int) -> None:
        secs = statistics.median(r["seconds"] for r in runs)
        cpu = statistics.median(r["cpu_seconds"] for r in runs)
        rss = statistics.median(r["peak_rss_mb"] for r in runs)
        each = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        print(
            f"{name}: {rows:,} rows, median wall {secs:.2f} s ({rows / secs:,.0f} rows/s; "
            f"runs {each} s), median CPU {cpu:.2f} s ({rows / cpu:,.0f} rows/CPU-s), "
            f"peak RSS median {rss:.0f} MB",
            flush=True,
        )

    n = int(a.point_rows)
    if n:
        report(
            "point metrics (bias, sigma_MAD, eta)",
            [run_part(["point", str(n)]) for _ in range(a.repeat)],
            n,
        )
    n = int(a.pdf_rows)
    if n:
        report(
            f"PDF metrics (PIT, CRPS, width68, KS, CvM; 180 bins, chunks of {a.chunk:,})",
            [run_part(["pdf", str(n), str(a.chunk)]) for _ in range(a.repeat)],
            n,
        )
    n = int(a.e2e_rows)
    if n:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "pred.parquet")
            info = run_part(["make", str(n), path])
            runs = [run_cli(path) for _ in range(a.repeat)]
            report(
                f"pz-score end to end (Parquet with pdf, {info['bytes'] / 1e6:.0f} MB, "
                "incl. ~0.5 s start-up)",
                runs,
                n,
            )


if __name__ == "__main__":
    main()
