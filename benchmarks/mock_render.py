"""Render speed of pz-mock: galaxies/s and CPU seconds per field, bz2 frames and plain .fits,
and the extrapolation to 10^5 galaxies on 2 cores.

Run: .venv/bin/python benchmarks/mock_render.py [N] [JOBS]
Rendering is per field, so time scales with the number of fields (N / --per-field) plus the
per-frame costs (noise, bz2); the machine's load is printed because it is shared.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from photoz_tools.mock.survey import mock


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    print(f"load average before: {os.getloadavg()}, cores: {os.cpu_count()}, jobs: {jobs}")
    for compress in (True, False):
        with tempfile.TemporaryDirectory(prefix="pz-mock-bench-") as tmp:
            c0, t0 = cpu_seconds(), time.perf_counter()
            res = mock(Path(tmp) / "m", n=n, seed=0, jobs=jobs, compress=compress)
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            fields = res.n_fields
            per_field_cpu = cpu / fields
            n_1e5 = 100_000 / 200.0  # fields at the default 200 galaxies per field
            print(
                f"compress={compress}: {n} galaxies, {fields} fields, {res.n_frames} frames: "
                f"wall {wall:.1f} s ({n / wall:.1f} galaxies/s), CPU {cpu:.1f} s "
                f"({per_field_cpu:.1f} CPU s per field); 10^5 galaxies on 2 idle cores: "
                f"~{n_1e5 * per_field_cpu / 2 / 60:.0f} min"
            )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
