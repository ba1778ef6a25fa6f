"""Peak RSS of pz-train and pz-predict against the dataset size: streaming keeps memory bounded
by the shuffle buffer and the batch, not by the table.

    .venv/bin/python benchmarks/model_memory.py [--sizes 1000 4000] [--buffer-mb 32]

Trains the tiny architecture one epoch on generated datasets of each size (the image column is
82 kB a galaxy) and predicts on the same table; prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, n: int) -> None:
    import pyarrow as pa

    from photoz_tools import tables

    rng = np.random.default_rng(n)
    with _writer(path) as w:
        for s in range(0, n, 500):
            m = min(500, n - s)
            images = rng.normal(0, 0.1, (m, 64, 64, 5)).astype(np.float32)
            batch = pa.table(
                {
                    "objID": np.arange(s, s + m),
                    "z": rng.uniform(0.01, 0.35, m),
                    "ebv": rng.uniform(0.01, 0.1, m).astype(np.float32),
                    "image": tables.to_arrow(images),
                }
            )
            w.append(batch)


class _writer:
    """Collects batches and writes one Parquet file with row groups of 500 (bounded memory)."""

    def __init__(self, path: Path) -> None:
        self.path, self.w = path, None

    def __enter__(self):
        return self

    def append(self, table) -> None:
        import pyarrow.parquet as pq

        if self.w is None:
            self.w = pq.ParquetWriter(self.path, table.schema)
        self.w.write_table(table)

    def __exit__(self, *exc) -> None:
        if self.w is not None:
            self.w.close()


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit status) of a child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    ap.add_argument("--buffer-mb", type=int, default=32)
    args = ap.parse_args()
    env = {
        **os.environ,
        "PZ_TRAIN_BUFFER_MB": str(args.buffer_mb),
        "PZ_MODEL": "",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for n in args.sizes:
            data = tmp / f"d{n}.parquet"
            write(data, n)
            out = tmp / f"b{n}"
            wall, rss, rc = run(
                [
                    py,
                    "-m",
                    "photoz_tools.cli.train",
                    str(data),
                    "-o",
                    str(out),
                    "--arch",
                    "tiny",
                    "--epochs",
                    "1",
                    "--batch-size",
                    "64",
                    "--val-size",
                    "200",
                    "-q",
                ],
                env,
            )
            print(
                json.dumps(
                    {
                        "command": "pz-train --arch tiny --epochs 1",
                        "rows": n,
                        "table_mb": round(data.stat().st_size / 2**20),
                        "buffer_mb": args.buffer_mb,
                        "wall_s": round(wall, 1),
                        "peak_rss_mb": round(rss),
                        "rc": rc,
                    }
                ),
                flush=True,
            )
            wall, rss, rc = run(
                [
                    py,
                    "-m",
                    "photoz_tools.cli.predict",
                    "-m",
                    str(out),
                    str(data),
                    "-o",
                    str(tmp / "p.parquet"),
                    "-q",
                ],
                env,
            )
            print(
                json.dumps(
                    {
                        "command": "pz-predict",
                        "rows": n,
                        "table_mb": round(data.stat().st_size / 2**20),
                        "wall_s": round(wall, 1),
                        "peak_rss_mb": round(rss),
                        "rc": rc,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
