"""What the global shuffle buys: the `small` network trained on the same generated galaxies
stored in redshift order (as a dataset in specObjID order is in plate, so sky and redshift,
order), once through the feed pz-train had before issue 9 (the file's order through a shuffle
buffer: every batch from a window of the file) and once through today's (a shuffled copy, row
groups in a new order each epoch). Held-out sigma_MAD of both, on the same test rows.

    .venv/bin/python benchmarks/shuffle_effect.py [--n 3000] [--steps 400] [--buffer-mb 16]

Prints one JSON object and a short table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("conftest", ROOT / "tests/model/conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_dataset


def _sorted_dataset(folder: Path, n: int) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from photoz_tools import tables

    gen = _generator()(folder / "gen.parquet", n, seed=21, folds=10)
    t = tables.read_table(gen)
    t = t.take(pa.array(np.argsort(tables.column_array(t, "z"), kind="stable")))
    out = folder / "zsorted.parquet"
    pq.write_table(t.replace_schema_metadata(None), out, row_group_size=64)
    return out


def _train(data: Path, out: Path, steps: int, windowed: bool) -> tuple[Path, float]:
    from photoz_tools.model import feed, train

    prepare, batches = feed.prepare, feed.TrainingBatches
    if windowed:  # the old feed: the file's own order, front to back, through the buffer

        class FileOrder(batches):
            def chunk_order(self, epoch: int) -> np.ndarray:
                return np.arange(len(self.chunks.groups))

        feed.prepare = lambda sel, work, seed, image_col="image", log=None: feed.parquet_chunks(
            sel.path, sel.train_rows, image_col
        )
        feed.TrainingBatches = FileOrder
    try:
        t0 = time.perf_counter()
        recipe = train.Recipe(
            steps=steps, batch_size=64, learning_rate=1e-3, val_size=250, fold=0, seed=2
        )
        path = train.train(str(data), out, "small", recipe)
        return path, time.perf_counter() - t0
    finally:
        feed.prepare, feed.TrainingBatches = prepare, batches


def _score(bundle_path: Path, data: Path) -> float:
    from photoz_tools import metrics, tables
    from photoz_tools.model import bundle
    from photoz_tools.model.predict import predict_arrays
    from photoz_tools.pdf import zphot

    t = tables.read_table(data)
    test = tables.column_array(t, "fold") == 0
    b = bundle.load_bundle(bundle_path)
    p = predict_arrays(
        b, tables.column_array(t, "image")[test], tables.column_array(t, "ebv")[test]
    )
    z = tables.column_array(t, "z")[test]
    return float(metrics.sigma_mad(metrics.residuals(zphot(p, b.bins), z)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--buffer-mb", type=float, default=16)
    args = ap.parse_args()
    os.environ["PZ_TRAIN_BUFFER_MB"] = str(args.buffer_mb)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = _sorted_dataset(folder, args.n)
        result = {"n": args.n, "steps": args.steps, "buffer_mb": args.buffer_mb}
        for name, windowed in (("file_order_window", True), ("global_shuffle", False)):
            path, wall = _train(data, folder / name, args.steps, windowed)
            result[name] = {"sigma_mad": _score(path, data), "wall_s": round(wall, 1)}
        result["ratio_window_over_shuffle"] = (
            result["file_order_window"]["sigma_mad"] / result["global_shuffle"]["sigma_mad"]
        )
    print(json.dumps(result))
    print(f"{'feed':>20} {'held-out sigma_MAD':>20} {'wall s':>8}")
    for name in ("file_order_window", "global_shuffle"):
        r = result[name]
        print(f"{name:>20} {r['sigma_mad']:>20.4f} {r['wall_s']:>8.1f}")
    print(f"window / shuffle: {result['ratio_window_over_shuffle']:.2f}x")


if __name__ == "__main__":
    main()
