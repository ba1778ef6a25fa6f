"""pz-pack throughput and memory: rows/s, MB/s of images and peak RSS for the three inputs
(sdss.npz-like with a stored cube, the same deflated, pz-cutout Parquet + a FITS catalogue),
plus the bare npz member reader against np.load. Run: .venv/bin/python benchmarks/pack_bench.py [N]

Each pz-pack run is a fresh subprocess (its peak RSS from wait4), writing Parquet to the same disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def labels(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    dt = [
        ("specObjID", "<i8"),
        ("z", "<f8"),
        ("EBV", "<f4"),
        ("ra", "<f8"),
        ("dec", "<f8"),
        ("dered_petro_r", "<f4"),
        ("primtarget", "<i4"),
        ("zphot", "<f4"),
    ]
    dt += [(f"extra{i}", "<f8") for i in range(56)]  # 64 columns like the authors' labels
    lab = np.zeros(n, dtype=dt)
    lab["specObjID"] = 10**17 + np.arange(n)
    lab["z"] = rng.uniform(0.01, 0.4, n)
    lab["dered_petro_r"] = rng.uniform(14, 17.8, n)
    lab["primtarget"] = 64
    return lab


def run(args: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS MB) of one pz-pack subprocess."""
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "photoz_tools.cli.pack", *args, "-q"], cwd=ROOT)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"pz-pack {' '.join(args)} failed ({status})")
    return dt, usage.ru_maxrss / 1024


def generate(tmp: Path, n: int) -> None:
    """The inputs (run in a child, so the measuring parent stays small: a forked child's peak
    RSS counts what it inherited)."""
    import pyarrow as pa

    from photoz_tools import tables

    rng = np.random.default_rng(0)
    cube = np.lib.format.open_memmap(tmp / "cube.npy", "w+", np.float32, (n, 64, 64, 5))
    for a in range(0, n, 500):  # noise quantised like real frames, so deflate has work
        b = min(n, a + 500)
        cube[a:b] = np.round(rng.normal(0, 0.02, (b - a, 64, 64, 5)), 3)
    cube.flush()
    lab = labels(n)
    for name, comp in (("stored", zipfile.ZIP_STORED), ("deflated", zipfile.ZIP_DEFLATED)):
        with zipfile.ZipFile(tmp / f"{name}.npz", "w", comp, allowZip64=True) as zf:
            zf.write(tmp / "cube.npy", "cube.npy")
            with zf.open("labels.npy", "w") as fp:
                np.lib.format.write_array(fp, lab)
    schema = pa.schema(
        [
            ("objID", pa.int64()),
            ("image", tables.to_arrow(cube[:1]).type),
            ("n_frames", tables.to_arrow(np.ones((1, 5), np.int16)).type),
            ("cutout_flags", pa.int32()),
        ]
    )
    with tables.TableWriter(tmp / "cutouts.parquet", schema) as w:
        for a in range(0, n, 512):
            b = min(n, a + 512)
            w.write(
                pa.table(
                    {
                        "objID": np.arange(a, b, dtype=np.int64),
                        "image": tables.to_arrow(np.ascontiguousarray(cube[a:b])),
                        "n_frames": tables.to_arrow(np.ones((b - a, 5), np.int16)),
                        "cutout_flags": np.zeros(b - a, np.int32),
                    }
                )
            )
    tables.write_table(
        pa.table(
            {
                "objID": np.arange(n, dtype=np.int64),
                "z": lab["z"],
                "ebv": lab["EBV"],
                "ra": lab["ra"],
                "dec": lab["dec"],
            }
        ),
        tmp / "cat.fits",
    )


def reader(path: Path, mb: float) -> float:
    """MB/s of the bare NpyMember over the cube member, 512-row chunks."""
    from photoz_tools.dataset import NpyMember

    with zipfile.ZipFile(path) as zf:
        t0 = time.perf_counter()
        m = NpyMember(zf, "cube.npy", str(path))
        for _ in m.iter_chunks(512):
            pass
        return mb / (time.perf_counter() - t0)


def main() -> None:
    if sys.argv[1:2] == ["generate"]:
        generate(Path(sys.argv[2]), int(sys.argv[3]))
        return
    if sys.argv[1:2] == ["np.load"]:
        np.load(sys.argv[2])["cube"]  # what pz-pack avoids: the whole cube in memory
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    mb = n * 64 * 64 * 5 * 4 / 1e6
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, __file__, "generate", str(tmp), str(n)], check=True)
        os.remove(tmp / "cube.npy")
        print(
            f"{n} galaxies, {mb:.0f} MB of images; {os.cpu_count()} cores; "
            f"load {os.getloadavg()[0]:.1f}"
        )
        print(
            f"stored npz {os.path.getsize(tmp / 'stored.npz') / 1e6:.0f} MB, deflated "
            f"{os.path.getsize(tmp / 'deflated.npz') / 1e6:.0f} MB"
        )
        print("\n| input | rows/s | image MB/s | peak RSS MB |\n|---|---|---|---|")
        for name in ("stored", "deflated"):
            t, rss = run([str(tmp / f"{name}.npz"), "--mgs-cut", "-o", str(tmp / "o.parquet")])
            print(f"| sdss.npz-like, {name} cube | {n / t:,.0f} | {mb / t:,.0f} | {rss:,.0f} |")
        t, rss = run(
            [
                str(tmp / "cutouts.parquet"),
                "-c",
                str(tmp / "cat.fits"),
                "-o",
                str(tmp / "o.parquet"),
            ]
        )
        print(f"| cutouts Parquet + FITS catalogue | {n / t:,.0f} | {mb / t:,.0f} | {rss:,.0f} |")
        print("\n| reading the cube member alone | MB/s | peak RSS MB |\n|---|---|---|")
        for name in ("stored", "deflated"):
            print(
                f"| NpyMember, {name}, 512-row chunks | {reader(tmp / f'{name}.npz', mb):,.0f} "
                "| (in the runs above) |"
            )
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, __file__, "np.load", str(tmp / "stored.npz")])
        _, _, usage = os.wait4(p.pid, 0)
        print(
            f"| np.load(...)['cube'], stored (whole cube in RAM) | "
            f"{mb / (time.perf_counter() - t0):,.0f} | {usage.ru_maxrss / 1024:,.0f} |"
        )


if __name__ == "__main__":
    main()
