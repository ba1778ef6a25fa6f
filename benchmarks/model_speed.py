"""Speed of the `paper` network on this machine: training and prediction galaxies/s, the same as
model FLOPs utilisation against the float32 matmul peak measured in the same run, and pz-predict
end to end (read, infer, write) against bare model.predict on in-memory arrays.

    .venv/bin/python benchmarks/model_speed.py [--repeats 3] [--train-batch 128] [--n 512]

Prints one JSON object (medians over repeats, ratios from the same run) and a summary table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def model_flops(model) -> float:
    """Forward FLOPs per galaxy (multiply-adds x 2) of the convolutions and dense layers."""
    total = 0.0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            h, w, cout = layer.output.shape[1:]
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += 2.0 * h * w * kh * kw * cin * cout
        elif kind == "Dense":
            total += 2.0 * layer.input.shape[-1] * layer.units
    return total


def galaxies(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.1, (n, 64, 64, 5)).astype(np.float32)
    images[:, 28:36, 28:36, :] += 5.0
    return images, rng.uniform(0.01, 0.1, n).astype(np.float32), rng.uniform(0.01, 0.35, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-batch", type=int, default=128)
    ap.add_argument("--train-steps", type=int, default=2)
    ap.add_argument("--n", type=int, default=512, help="galaxies per prediction run")
    ap.add_argument("--predict-batch", type=int, default=256)
    ap.add_argument("--arch", default="paper")
    ap.add_argument("--xla", choices=["auto", "on", "off"], default="auto")
    args = ap.parse_args()

    from photoz_tools.model import architecture, backend

    backend.configure(0)
    import keras

    from photoz_tools import tables
    from photoz_tools.model import bundle
    from photoz_tools.model.predict import predict, predict_padded
    from photoz_tools.model.train import Recipe, compile_for_training
    from photoz_tools.pdf import Bins

    jit = {"auto": "auto", "on": True, "off": False}[args.xla]
    config = architecture.load_config(args.arch)
    model = architecture.build_model(config, seed=0)
    fwd = model_flops(model)
    res: dict = {
        "device": backend.device_description(),
        "arch": args.arch,
        "gflop_per_galaxy_forward": fwd / 1e9,
        "gflop_per_galaxy_train": 3 * fwd / 1e9,
        "load_average_start": os.getloadavg()[0],
        "xla": args.xla,
        "cpu_count": os.cpu_count(),
    }
    peaks = [backend.matmul_peak_gflops(2048, 3.0)]

    # ---- training: train_on_batch at the recipe's batch size
    p = {
        "recipe": Recipe(learning_rate=1e-4, warmup_steps=0, xla=None if jit == "auto" else jit),
        "total_steps": 1000,
    }
    model = architecture.logits_model(model)  # pz-train optimises the logits model
    compile_for_training(model, p)
    images, ebv, z = galaxies(args.train_batch, 1)
    labels = Bins.default().index(z)
    x = {"image": images, "ebv": ebv.reshape(-1, 1)}
    t = time.perf_counter()
    model.train_on_batch(x, labels)
    res["train_first_step_s"] = time.perf_counter() - t
    train_rates = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        for _ in range(args.train_steps):
            model.train_on_batch(x, labels)
        train_rates.append(args.train_steps * args.train_batch / (time.perf_counter() - t))
    peaks.append(backend.matmul_peak_gflops(2048, 3.0))

    # ---- prediction: bare model.predict on in-memory arrays vs predict() end to end
    images, ebv, z = galaxies(args.n, 2)
    pred_model = architecture.build_model(config, seed=0)
    pred_model.predict(
        {"image": images[: args.predict_batch], "ebv": ebv[: args.predict_batch].reshape(-1, 1)},
        batch_size=args.predict_batch,
        verbose=0,
    )  # compile
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bdir = tmp / "bundle"
        bdir.mkdir()
        manifest = bundle.manifest_header(config, Bins.default(), config["scaling"], "benchmark")
        manifest["members"] = [bundle.save_member(pred_model, bdir, 0)]
        bundle.write_json_atomic(bdir / "manifest.json", manifest)
        import pyarrow as pa

        src = tmp / "catalog.parquet"
        tables.write_table(
            pa.table(
                {"objID": np.arange(args.n), "ebv": ebv, "z": z, "image": tables.to_arrow(images)}
            ),
            src,
        )
        b = bundle.load_bundle(bdir)
        predict(src, tmp / "warm.parquet", b, batch_size=args.predict_batch)  # compile
        bare, e2e, padded = [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            pred_model.predict(
                {"image": images, "ebv": ebv.reshape(-1, 1)},
                batch_size=args.predict_batch,
                verbose=0,
            )
            bare.append(args.n / (time.perf_counter() - t))
            t = time.perf_counter()
            predict_padded(b.members[0], images, ebv, args.predict_batch)
            padded.append(args.n / (time.perf_counter() - t))
            t = time.perf_counter()
            predict(src, tmp / "out.parquet", b, batch_size=args.predict_batch)
            e2e.append(args.n / (time.perf_counter() - t))
    peaks.append(backend.matmul_peak_gflops(2048, 3.0))

    peak = statistics.median(peaks)
    res.update(
        {
            "matmul_peak_gflops": peak,
            "matmul_peaks": peaks,
            "train_galaxies_per_s": statistics.median(train_rates),
            "train_runs": train_rates,
            "predict_bare_galaxies_per_s": statistics.median(bare),
            "predict_bare_runs": bare,
            "predict_padded_galaxies_per_s": statistics.median(padded),
            "predict_e2e_galaxies_per_s": statistics.median(e2e),
            "predict_e2e_runs": e2e,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load_average_end": os.getloadavg()[0],
        }
    )
    res["train_mfu"] = res["train_galaxies_per_s"] * 3 * fwd / 1e9 / peak
    res["predict_mfu"] = res["predict_bare_galaxies_per_s"] * fwd / 1e9 / peak
    res["e2e_over_bare"] = res["predict_e2e_galaxies_per_s"] / res["predict_bare_galaxies_per_s"]
    res["versions"] = backend.versions()
    print(json.dumps(res, indent=1))
    print(
        f"\n{args.arch} on {res['device']} (load {res['load_average_start']:.1f}):\n"
        f"  matmul peak        {peak:8.1f} GFLOP/s\n"
        f"  training           {res['train_galaxies_per_s']:8.1f} galaxies/s  "
        f"MFU {100 * res['train_mfu']:.1f} %\n"
        f"  model.predict      {res['predict_bare_galaxies_per_s']:8.1f} galaxies/s  "
        f"MFU {100 * res['predict_mfu']:.1f} %\n"
        f"  predict() e2e      {res['predict_e2e_galaxies_per_s']:8.1f} galaxies/s  "
        f"({100 * res['e2e_over_bare']:.0f} % of bare)\n"
        f"  peak RSS           {res['peak_rss_mb']:8.0f} MB",
        file=sys.stderr,
    )
    del keras


if __name__ == "__main__":
    main()
