"""pz-cutout speed: native resampler against SWarp per galaxy, on the same decompressed frames.

    .venv/bin/python benchmarks/cutout_speed.py [--frames DIR] [--n 200] [--n-swarp 10] [--runs 5]

Each run times, interleaved so that a busy machine slows both alike:
  native   cutouts_from_frames() on the five frames already in memory, one process;
  swarp    SWarp as a subprocess per galaxy and band (the design brief's command line) on the
           same uncompressed frames, as the paper's pipeline does;
and, once per run, pz-cutout's whole work (index, read, resample, assemble) from the folder of
uncompressed frames and from the .fits.bz2 folder (decompression included), all cores.
Prints medians over the runs (cutouts/s: five-band 64x64 cutouts per second) and MB/s.
"""

from __future__ import annotations

import argparse
import bz2
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from photoz_tools.imaging.cutouts import cutout, cutouts_from_frames  # noqa: E402
from photoz_tools.imaging.frames import load_frame  # noqa: E402
from photoz_tools.imaging.swarp import swarp_cutout  # noqa: E402

BANDS = "ugriz"
DEFAULT = ROOT.parent / "shared" / "data" / "sdss-frames" / "2583-2-0136"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=Path, default=DEFAULT)
    ap.add_argument("--n", type=int, default=200, help="galaxies per native run")
    ap.add_argument("--n-swarp", type=int, default=10, help="galaxies per SWarp run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-e2e", action="store_true", help="skip the whole-command timings")
    args = ap.parse_args()
    if not args.frames.is_dir():
        sys.exit(f"no frames at {args.frames}")
    have_swarp = shutil.which("SWarp") is not None

    work = Path(tempfile.mkdtemp(prefix="pz-bench-"))
    try:
        plain = work / "plain"
        plain.mkdir()
        t = time.perf_counter()
        nbytes = 0
        for src in sorted(args.frames.glob("frame-*.fits.bz2")):
            with bz2.open(src) as fin, open(plain / src.name.removesuffix(".bz2"), "wb") as fo:
                shutil.copyfileobj(fin, fo, 1 << 20)
            nbytes += src.stat().st_size
        t_dec = time.perf_counter() - t
        paths = {p.name.split("-")[1]: p for p in plain.glob("frame-*.fits")}
        frames = [load_frame(paths[b]) for b in BANDS]
        frame_mb = sum(p.stat().st_size for p in paths.values()) / 1e6

        rng = np.random.default_rng(0)
        ny, nx = frames[2].shape
        x, y = rng.uniform(40, nx - 40, args.n), rng.uniform(40, ny - 40, args.n)
        ra, dec = frames[2].pixel_to_world(x, y)
        cat = {"objID": np.arange(args.n), "ra": ra, "dec": dec}

        native, swarp, e2e_plain, e2e_bz2 = [], [], [], []
        cutouts_from_frames(ra[:8], dec[:8], frames)  # warm-up
        for run in range(args.runs):
            t = time.perf_counter()
            res = cutouts_from_frames(ra, dec, frames)
            native.append(args.n / (time.perf_counter() - t))
            assert res.n_frames.min() == 1
            if have_swarp:
                t = time.perf_counter()
                for g in range(args.n_swarp):
                    for b in BANDS:
                        swarp_cutout([paths[b]], float(ra[g]), float(dec[g]))
                swarp.append(args.n_swarp / (time.perf_counter() - t))
            if not args.no_e2e:
                import pyarrow as pa

                table = pa.table(cat)
                t = time.perf_counter()
                cutout(table, frames=plain)
                e2e_plain.append(args.n / (time.perf_counter() - t))
                t = time.perf_counter()
                cutout(table, frames=args.frames)
                e2e_bz2.append(args.n / (time.perf_counter() - t))
            print(
                f"run {run + 1}: native {native[-1]:.1f}/s"
                + (f", SWarp {swarp[-1]:.2f}/s" if swarp else "")
                + (
                    f", pz-cutout plain {e2e_plain[-1]:.1f}/s, bz2 {e2e_bz2[-1]:.1f}/s"
                    if e2e_plain
                    else ""
                ),
                file=sys.stderr,
            )

        med = statistics.median
        cut_mb = 64 * 64 * 5 * 4 / 1e6
        print(
            f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
            f"{args.runs} runs, medians (min-max)\n"
        )
        print("| what | cutouts/s | output MB/s | note |")
        print("| --- | --- | --- | --- |")

        def row(name, xs, note):
            print(
                f"| {name} | {med(xs):.1f} ({min(xs):.1f}-{max(xs):.1f}) | "
                f"{med(xs) * cut_mb:.1f} | {note} |"
            )

        row("native resampler, 1 process", native, f"{args.n} galaxies, 5 frames in memory")
        if swarp:
            row("SWarp per galaxy and band", swarp, f"{args.n_swarp} galaxies x 5 subprocesses")
            ratios = [a / b for a, b in zip(native, swarp, strict=True)]
            print(
                f"\nnative / SWarp: median {med(ratios):.1f}x "
                f"(per run: {', '.join(f'{r:.1f}' for r in ratios)})"
            )
        if e2e_plain:
            print()
            row(
                "pz-cutout, uncompressed folder",
                e2e_plain,
                f"all cores; reads {frame_mb:.0f} MB of frames",
            )
            row(
                "pz-cutout, .fits.bz2 folder",
                e2e_bz2,
                f"all cores; decompresses {nbytes / 1e6:.0f} MB -> {frame_mb:.0f} MB",
            )
        print(
            f"\nbzip2 decompression of the five frames: {t_dec:.2f} s "
            f"({nbytes / 1e6 / t_dec:.1f} MB/s compressed, {frame_mb / t_dec:.1f} MB/s out)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
