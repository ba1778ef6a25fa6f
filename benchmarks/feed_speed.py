"""Speed of pz-train's input pipeline alone (read + shuffle buffer + augment + batch; no network):
galaxies/s of photoz_tools.model.feed.TrainingBatches with 1, 2, 4 worker threads, per worker,
and where a batch's time goes (issue 9).

    .venv/bin/python benchmarks/feed_speed.py [--rows 4096] [--workers 1 2 4] [--epochs 3] \
        [--batch 128] [--buffer-mb 0] [--profile] [--workdir /tmp/pz_train_loop]

The table is benchmarks/train_loop.py's (generated galaxies written through pz-pack, marked
shuffled; made in --workdir if missing). Rows: select_rows(path, Bins.default(), val_size=0)
(the split column's training rows). Chunks: feed.prepare(sel, workdir, seed) (the table itself,
as it is marked shuffled). For each W: one untimed warm-up epoch (the page cache then holds
the file; it is read through a memory map), then --epochs timed epochs of
TrainingBatches(sel, batch, seed, chunks=..., workers=W).iterate(epoch), consumed in the main
thread; galaxies/s = batches x batch / wall, with the process CPU time over the same wall
(cores busy).

--profile adds two views of one epoch run serially in the main thread (the pool replaced by an
executor that runs each task at once, so one thread does all the work and the parts add up):
cProfile's top functions, and the same pipeline's parts timed one by one (a replica of _read,
_draw and _finish with timers: Parquet decode, Arrow -> numpy, the copy into the shuffle buffer,
the random pick and hole filling, the isfinite check, augment, labels). _draw runs in the
consuming thread whatever W is, so its share bounds the rate any number of workers can reach.

Prints one JSON object and a short table.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import statistics
import sys
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_loop  # noqa: E402  (the dataset and machine description are shared)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def copy_gb_s(mb: int = 10, seconds: float = 1.0) -> float:
    """Single-thread memory copy bandwidth (read + write of an `mb` MB float32 array, best)."""
    a = np.ones(mb * (1 << 18), dtype=np.float32)
    b = np.empty_like(a)
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - t)
    return a.nbytes / best / 1e9


def time_epochs(make, epochs: int, warmup: int) -> dict:
    batches = make()
    for e in range(warmup):
        for _ in batches.iterate(e):
            pass
    n = 0
    walls = []
    c0 = cpu_s()
    t0 = time.perf_counter()
    for e in range(warmup, warmup + epochs):
        t = time.perf_counter()
        first = None
        k = 0
        for x, _y, _w in batches.iterate(e):
            if first is None:
                first = time.perf_counter() - t
            k += len(x["image"])
        n += k
        walls.append({"wall_s": time.perf_counter() - t, "first_batch_s": first, "galaxies": k})
    wall = time.perf_counter() - t0
    cpu = cpu_s() - c0
    return {
        "galaxies": n,
        "wall_s": wall,
        "gal_s": n / wall,
        "cpu_cores_busy": cpu / wall,
        "gal_per_cpu_s": n / cpu if cpu else None,
        "epochs": walls,
    }


class _Now:
    """An executor that runs each task at once in the caller's thread."""

    def __init__(self, *a, **k) -> None:
        pass

    def submit(self, fn, *args):
        f: Future = Future()
        try:
            f.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001
            f.set_exception(exc)
        return f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def profile_serial(make, epoch: int, top: int = 25) -> dict:
    from photoz_tools.model import feed

    saved = feed.ThreadPoolExecutor
    feed.ThreadPoolExecutor = _Now
    try:
        batches = make()
        prof = cProfile.Profile()
        n = 0
        t = time.perf_counter()
        prof.enable()
        for x, _y, _w in batches.iterate(epoch):
            n += len(x["image"])
        prof.disable()
        wall = time.perf_counter() - t
    finally:
        feed.ThreadPoolExecutor = saved
    s = io.StringIO()
    st = pstats.Stats(prof, stream=s)
    st.sort_stats("tottime").print_stats(top)
    rows = []
    for (file, line, fn), (_cc, nc, tt, ct, _callers) in sorted(
        st.stats.items(), key=lambda kv: -kv[1][2]
    )[:top]:
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({fn})",
                "calls": nc,
                "tottime_s": round(tt, 4),
                "cumtime_s": round(ct, 4),
                "us_per_galaxy": round(1e6 * tt / n, 2),
            }
        )
    return {"galaxies": n, "wall_s": wall, "gal_s": n / wall, "top_tottime": rows}


def components(make, epoch: int) -> dict:
    """One epoch of the pipeline's parts, serially, each timed (a replica of feed's code)."""
    from photoz_tools import tables
    from photoz_tools.model import data, feed

    b = make()
    ch = b.chunks
    readers = feed._Readers(ch.path)
    t: dict[str, float] = {
        k: 0.0
        for k in (
            "parquet_decode",
            "arrow_to_numpy",
            "buffer_copy_in",
            "pick_copy_out",
            "hole_fill",
            "isfinite",
            "augment",
            "labels_ebv",
        )
    }

    def tick(key, t0):
        now = time.perf_counter()
        t[key] += now - t0
        return now

    rng = np.random.default_rng([b.seed, epoch, 1])
    order = np.random.default_rng([b.seed, epoch, 3]).permutation(len(ch.groups))
    bs, n_steps = b.batch_size, len(b)
    cap = min(b.buffer_rows, ch.n_rows) + max(len(i) for i in ch.ids)
    buf = np.empty((cap, 64, 64, 5), dtype=np.float32)
    ids = np.empty(cap, dtype=np.int64)
    target = min(b.buffer_rows, ch.n_rows)
    fill = step = nxt = 0
    n = 0
    while step < n_steps:
        while nxt < len(order) and fill < target:
            c = int(order[nxt])
            nxt += 1
            t0 = time.perf_counter()
            tab = readers.file.read_row_group(ch.groups[c], columns=[ch.image_col])
            t0 = tick("parquet_decode", t0)
            images = tables.column_array(tab, ch.image_col)
            if len(ch.local[c]) != len(images):
                images = images[ch.local[c]]
            im = np.ascontiguousarray(images, dtype=np.float32)
            t0 = tick("arrow_to_numpy", t0)
            r = ch.ids[c]
            buf[fill : fill + len(r)] = im
            ids[fill : fill + len(r)] = r
            fill += len(r)
            tick("buffer_copy_in", t0)
        if fill < bs:
            break
        t0 = time.perf_counter()
        pick = rng.choice(fill, size=bs, replace=False)
        images, rows = buf[pick], ids[pick]
        t0 = tick("pick_copy_out", t0)
        keep = np.setdiff1d(np.arange(fill - bs, fill), pick, assume_unique=True)
        holes = np.sort(pick[pick < fill - bs])
        buf[holes] = buf[keep]
        ids[holes] = ids[keep]
        fill -= bs
        t0 = tick("hole_fill", t0)
        ok = np.isfinite(images).all()
        t0 = tick("isfinite", t0)
        assert ok
        images = data.augment(images, np.random.default_rng([b.seed, epoch, step, 2]))
        t0 = tick("augment", t0)
        _x = {"image": images, "ebv": b.sel.ebv[rows].reshape(-1, 1)}
        _y = b.sel.labels[rows]
        tick("labels_ebv", t0)
        n += bs
        step += 1
    total = sum(t.values())
    serial_in_consumer = t["buffer_copy_in"] + t["pick_copy_out"] + t["hole_fill"]
    return {
        "galaxies": n,
        "total_s": total,
        "us_per_galaxy": {k: round(1e6 * v / n, 2) for k, v in t.items()},
        "share": {k: round(v / total, 3) for k, v in t.items()},
        "us_per_galaxy_total": round(1e6 * total / n, 2),
        "serial_gal_s": n / total,
        "consumer_thread_us_per_galaxy": round(1e6 * serial_in_consumer / n, 2),
        "consumer_thread_bound_gal_s": n / serial_in_consumer if serial_in_consumer else None,
        "mb_per_galaxy": data.IMAGE_BYTES / 1e6,
    }


def decode_layouts(path: str, work: Path, image_col: str = "image", repeats: int = 3) -> dict:
    """Parquet decode of the same images stored three ways (one thread, page cache warm, best of
    `repeats` passes over every row group): the table as pz-pack wrote it, the same column
    without compression, as a non-nullable list of non-nullable floats (no definition levels
    beyond the list's), and the images as one fixed-size binary value per row (no per-float
    definition levels), uncompressed. Microseconds per galaxy."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from photoz_tools import tables

    src = pq.ParquetFile(path, memory_map=True)
    rg_rows = src.metadata.row_group(0).num_rows
    md = src.metadata.row_group(0)
    col = next(
        md.column(i)
        for i in range(md.num_columns)
        if md.column(i).path_in_schema.startswith(image_col)
    )
    out = {
        "as_written": {
            "compression": col.compression,
            "path_in_schema": col.path_in_schema,
            "compressed_mb": round(col.total_compressed_size / 1e6, 2),
            "uncompressed_mb": round(col.total_uncompressed_size / 1e6, 2),
        }
    }
    images = tables.column_array(src.read(columns=[image_col]), image_col)
    n = len(images)
    plain = work / ".feed_speed_plain.parquet"
    fsb = work / ".feed_speed_fsb.parquet"
    t = pa.table({image_col: tables.to_arrow(np.ascontiguousarray(images))})
    pq.write_table(t, plain, compression="none", row_group_size=rg_rows)
    req = work / ".feed_speed_required.parquet"
    elem = pa.list_(pa.field("element", pa.float32(), nullable=False), 64 * 64 * 5)
    flat = pa.array(np.ascontiguousarray(images).reshape(-1), type=pa.float32())
    req_arr = pa.FixedSizeListArray.from_arrays(flat, type=elem)
    pq.write_table(
        pa.table(
            {image_col: req_arr}, schema=pa.schema([pa.field(image_col, elem, nullable=False)])
        ),
        req,
        compression="none",
        row_group_size=rg_rows,
    )
    raw = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(images[0].nbytes), n, [None, pa.py_buffer(np.ascontiguousarray(images))]
    )
    pq.write_table(
        pa.table({image_col: raw}),
        fsb,
        compression="none",
        row_group_size=rg_rows,
        use_dictionary=False,
    )

    def best(p: Path, to_numpy) -> float:
        f = pq.ParquetFile(p, memory_map=True)
        times = []
        for _ in range(repeats):
            tt = time.perf_counter()
            for g in range(f.metadata.num_row_groups):
                a = f.read_row_group(g, columns=[image_col])
                to_numpy(a)
            times.append(time.perf_counter() - tt)
        return 1e6 * min(times) / n

    def fsb_numpy(a):
        c = a.column(image_col).chunk(0)
        return np.frombuffer(c.buffers()[1], dtype=np.float32).reshape(len(c), 64, 64, 5)

    out["us_per_galaxy"] = {
        "as_written": best(Path(path), lambda a: tables.column_array(a, image_col)),
        "uncompressed_tensor": best(plain, lambda a: tables.column_array(a, image_col)),
        "uncompressed_list_not_nullable": best(
            req,
            lambda a: np.asarray(a.column(image_col).chunk(0).values).reshape(-1, 64, 64, 5),
        ),
        "uncompressed_fixed_size_binary": best(fsb, fsb_numpy),
    }
    out["rows"] = n
    plain.unlink(missing_ok=True)
    req.unlink(missing_ok=True)
    fsb.unlink(missing_ok=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per worker count")
    ap.add_argument("--warmup", type=int, default=1, help="untimed epochs first")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--buffer-mb",
        type=float,
        default=0,
        help="shuffle buffer in MB (0: the default, $PZ_TRAIN_BUFFER_MB or 1024)",
    )
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--workdir", default="/tmp/pz_train_loop")
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()

    from photoz_tools.model import data, feed
    from photoz_tools.pdf import Bins

    work = Path(a.workdir)
    result: dict = {"machine": train_loop.machine(), "load_before": train_loop.loadavg()}
    ds = train_loop.make_dataset(work, a.rows)
    path = ds["path"]
    sel = data.select_rows(path, Bins.default(), val_size=0)
    chunks = feed.prepare(sel, work, a.seed)
    buffer_rows = int(a.buffer_mb * (1 << 20)) // data.IMAGE_BYTES if a.buffer_mb else None
    ds.update(
        {
            "train_rows": int(len(sel.train_rows)),
            "chunks": len(chunks.groups),
            "chunk_rows": int(np.median([len(i) for i in chunks.ids])),
            "chunks_are_the_table": chunks.path == path,
            "file_mb": round(os.path.getsize(path) / 1e6, 1),
        }
    )
    result["dataset"] = ds

    def make(workers=None):
        return feed.TrainingBatches(
            sel, a.batch, a.seed, chunks=chunks, workers=workers, buffer_rows=buffer_rows
        )

    result["buffer_rows"] = make(1).buffer_rows
    result["config"] = {
        "batch": a.batch,
        "epochs": a.epochs,
        "warmup_epochs": a.warmup,
        "page_cache": "warm (after the warm-up epoch; file read through a memory map)",
    }
    result["copy_gb_s_one_thread"] = copy_gb_s()
    runs = {}
    for w in a.workers:
        r = time_epochs(lambda w=w: make(w), a.epochs, a.warmup)
        r["gal_s_per_worker"] = r["gal_s"] / w
        runs[str(w)] = r
        print(
            f"workers {w}: {r['gal_s']:.0f} galaxies/s ({r['cpu_cores_busy']:.2f} cores busy)",
            file=sys.stderr,
        )
    result["workers"] = runs
    if a.profile:
        result["profile_serial"] = profile_serial(lambda: make(1), a.warmup)
        result["components_serial"] = components(lambda: make(1), a.warmup)
        result["decode_layouts"] = decode_layouts(path, work)
    result["load_after"] = train_loop.loadavg()
    cores = os.cpu_count() or 1
    best = max(r["gal_s"] for r in runs.values())
    eff = statistics.median(r["gal_per_cpu_s"] for r in runs.values() if r["gal_per_cpu_s"])
    result["extrapolation"] = {
        "best_gal_s_here": best,
        "gal_per_cpu_second": eff,
        "linear_16_cores_gal_s": 16 * eff,
        "note": "16 x galaxies per CPU-second assumes the work spreads over 16 cores; the "
        "consumer thread's serial part (components_serial) bounds it",
    }
    if a.profile:
        result["extrapolation"]["consumer_thread_bound_gal_s"] = result["components_serial"][
            "consumer_thread_bound_gal_s"
        ]
    text = json.dumps(result, indent=1)
    print(text)
    if a.json_out:
        Path(a.json_out).write_text(text)

    print()
    print(
        f"{'workers':>7} {'galaxies/s':>11} {'per worker':>11} {'cores busy':>11} {'gal/CPU-s':>10}"
    )
    for w, r in runs.items():
        print(
            f"{w:>7} {r['gal_s']:>11.0f} {r['gal_s_per_worker']:>11.0f} "
            f"{r['cpu_cores_busy']:>11.2f} {r['gal_per_cpu_s']:>10.0f}"
        )
    print(f"(this machine: {cores} cores; memory copy {result['copy_gb_s_one_thread']:.1f} GB/s)")
    if a.profile:
        c = result["components_serial"]
        print(f"serial parts, us per galaxy (total {c['us_per_galaxy_total']}):")
        for k, v in c["us_per_galaxy"].items():
            print(f"  {k:<16} {v:>8.2f}  {100 * c['share'][k]:5.1f} %")
        print(
            f"  consumer thread (buffer in + pick + holes): {c['consumer_thread_us_per_galaxy']}"
            f" us -> at most {c['consumer_thread_bound_gal_s']:.0f} galaxies/s"
        )
        d = result["decode_layouts"]["us_per_galaxy"]
        print(
            "Parquet decode + to numpy, us per galaxy: "
            + ", ".join(f"{k} {v:.1f}" for k, v in d.items())
        )
        print("cProfile (serial epoch), top by own time:")
        for row in result["profile_serial"]["top_tottime"][:12]:
            print(f"  {row['us_per_galaxy']:>8.2f} us/gal  {row['calls']:>6}  {row['function']}")
    print(f"load average before {result['load_before']}, after {result['load_after']}")


if __name__ == "__main__":
    main()
