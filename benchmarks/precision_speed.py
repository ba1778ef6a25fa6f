"""float32 against bfloat16 on THIS machine: the paper network's training and prediction
galaxies/s with MFU against the matmul peak measured in the same run, where precision.check
allows bfloat16 (else the one-line refusal pz-train prints), and the accuracy cost of bfloat16 on
a trained bundle (emulated where the CPU lacks it: the Keras mixed policy set directly).

    .venv/bin/python benchmarks/precision_speed.py [--train-steps 3] [--predict-n 512]
        [--acc-arch small] [--acc-steps 150] [--acc-n 500] [--json PATH]

Speed: the real pz-train step (architecture.logits_model + train.compile_for_training, stepped by
backend.TrainStep with the loss read once after the timed steps) and model.predict_on_batch
(pz-predict's call), both from benchmarks/gpu_bench.py. Accuracy: a bundle trained by
photoz_tools.model.train.train for --acc-steps steps on galaxies from tests/model/conftest.py's
generator, then the same --acc-n held-out galaxies predicted by its float32 member and by a
mixed_bfloat16 copy (architecture.copy_weights by name): max |zphot difference|, sigma_MAD, bias
and outlier fraction of each, and how far the PDFs move. Prints one JSON object and a summary.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
if str(ROOT) not in sys.path:
    sys.path.insert(1, str(ROOT))

import gpu_bench as gb  # noqa: E402


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return ""


def conftest():
    """tests/model/conftest.py's generator (galaxies, write_dataset), loaded by path."""
    spec = importlib.util.spec_from_file_location("_pz_conftest", ROOT / "tests/model/conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cli_refusal(dataset: Path, out: Path, prec: str) -> dict[str, Any]:
    """What `pz-train --precision PREC` prints and returns here (it refuses before training)."""
    cmd = [
        sys.executable,
        "-m",
        "photoz_tools.cli.train",
        str(dataset),
        "-o",
        str(out),
        "--arch",
        "tiny",
        "--steps",
        "1",
        "--precision",
        prec,
        "-q",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    return {
        "command": "pz-train DATASET -o OUT --arch tiny --steps 1 --precision " + prec,
        "exit_status": r.returncode,
        "stderr": lines[-3:],
    }


def train_speed(args, config, prec: str, peaks: dict[str, float], fwd: float) -> dict[str, Any]:
    """The pz-train step's galaxies/s (call inside the precision's policy)."""
    from photoz_tools.model import backend

    model = gb.training_model(config, prec, args.train_batch)
    step = backend.TrainStep(model)
    x, y = gb.galaxies(args.train_batch, 1)
    warm = gb.warm_train(step, x, y, warm_steps=2)
    r = gb.time_train(step, x, y, args.train_batch, 1e9, args.train_steps, calib_steps=0)
    r["batch"] = args.train_batch
    r["mfu_vs_float32_peak"] = r["galaxies_per_s"] * 3 * fwd / 1e9 / peaks["float32"]
    if prec != "float32":
        r[f"mfu_vs_{prec}_peak"] = r["galaxies_per_s"] * 3 * fwd / 1e9 / peaks[prec]
    return {"train_compile_and_warm_s": warm, "train": r}


def predict_alternating(args, config, precs: dict[str, bool], fwd: float) -> dict[str, Any]:
    """predict_on_batch galaxies/s of each precision ({prec: emulate}), the precisions timed in
    turn `args.predict_repeats` times, so that the machine's load drifts over all of them alike."""
    from photoz_tools.model import architecture

    models = {}
    for prec, emulate in precs.items():
        with gb.compute_policy(prec, emulate=emulate):
            models[prec] = architecture.build_model(config, seed=0)
    xp, _ = gb.galaxies(args.predict_batch, 2)
    nb = max(1, args.predict_n // args.predict_batch)
    out: dict[str, Any] = {p: {"runs": [], "batch": args.predict_batch} for p in precs}
    for _ in range(args.predict_repeats):
        for prec, m in models.items():
            r = gb.time_predict(m, xp, args.predict_batch, 1e9, nb)
            out[prec]["runs"].append(r["galaxies_per_s"])
            out[prec].setdefault("first_call_s", r["first_call_s"])
    for prec, o in out.items():
        o["galaxies_per_s"] = float(np.median(o["runs"]))
        o["mfu_vs_float32_peak_gflops_per_s"] = o["galaxies_per_s"] * fwd / 1e9
        o["emulated"] = precs[prec]
    return out


def speed(
    args, config, prec: str, peaks: dict[str, float], fwd: float, emulate: bool
) -> dict[str, Any]:
    """Training and prediction galaxies/s of `config` in `prec` (`emulate`: the Keras policy set
    directly, where precision.check refuses it)."""
    from photoz_tools.model import architecture

    out: dict[str, Any] = {"precision": prec}
    with gb.compute_policy(prec, emulate=emulate):
        if not args.skip_train_speed:
            out.update(train_speed(args, config, prec, peaks, fwd))
        if args.predict_repeats > 1:  # timed alternately by predict_alternating
            return out
        pm = architecture.build_model(config, seed=0)

        xp, _ = gb.galaxies(args.predict_batch, 2)
        nb = max(1, args.predict_n // args.predict_batch)
        r = gb.time_predict(pm, xp, args.predict_batch, 1e9, nb)
        r["batch"] = args.predict_batch
        r["mfu_vs_float32_peak"] = r["galaxies_per_s"] * fwd / 1e9 / peaks["float32"]
        if prec != "float32":
            r[f"mfu_vs_{prec}_peak"] = r["galaxies_per_s"] * fwd / 1e9 / peaks[prec]
        out["predict"] = r
    return out


def accuracy(args, tmp: Path, dataset: Path, ct) -> dict[str, Any]:
    """float32 vs emulated-or-real bfloat16 predictions of one trained bundle."""
    from photoz_tools import metrics
    from photoz_tools import pdf as pdfcore
    from photoz_tools.model import architecture, bundle, train
    from photoz_tools.model.backend import import_keras
    from photoz_tools.model.predict import predict_padded

    keras = import_keras()
    out_dir = tmp / "bundle"
    recipe = train.Recipe(
        steps=args.acc_steps,
        batch_size=args.acc_batch,
        learning_rate=args.acc_lr,
        val_size=200,
        seed=3,
        members=1,
    )
    t = time.perf_counter()
    train.train(str(dataset), out_dir, arch=args.acc_arch, recipe=recipe, force=True)
    train_s = time.perf_counter() - t
    b = bundle.load_bundle(out_dir)
    member = b.members[0]
    g = ct.galaxies(args.acc_n, seed=2)
    images, ebv, z = g["image"], g["ebv"], g["z"]

    t = time.perf_counter()
    p32 = predict_padded(member, images, ebv, args.acc_predict_batch)
    t32 = time.perf_counter() - t
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        m16 = architecture.build_model(b.manifest["architecture"], seed=0)
    finally:
        keras.config.set_dtype_policy(before)
    architecture.copy_weights(member, m16)
    predict_padded(m16, images[: args.acc_predict_batch], ebv, args.acc_predict_batch)  # warm
    t = time.perf_counter()
    p16 = predict_padded(m16, images, ebv, args.acc_predict_batch)
    t16 = time.perf_counter() - t

    s32, s16 = pdfcore.summarize(p32, b.bins), pdfcore.summarize(p16, b.bins)
    dz = np.abs(s16["zphot"].astype(np.float64) - s32["zphot"].astype(np.float64))
    stats32 = metrics.point_metrics(s32["zphot"], z)
    stats16 = metrics.point_metrics(s16["zphot"], z)
    tv = 0.5 * np.abs(p16.astype(np.float64) - p32.astype(np.float64)).sum(axis=1)
    return {
        "arch": args.acc_arch,
        "train_steps": args.acc_steps,
        "learning_rate": recipe.learning_rate,
        "train_batch": args.acc_batch,
        "train_galaxies": int(args.acc_train_n),
        "train_wall_s": train_s,
        "held_out": int(args.acc_n),
        "policy_bf16": "mixed_bfloat16 (set directly: emulated on this CPU)",
        "layer_c1_compute_dtype": m16.get_layer("c1").compute_dtype,
        "max_abs_zphot_diff": float(dz.max()),
        "median_abs_zphot_diff": float(np.median(dz)),
        "p99_abs_zphot_diff": float(np.percentile(dz, 99)),
        "max_abs_dz_over_1pz": float((dz / (1 + z)).max()),
        "max_abs_zmode_diff": float(np.abs(s16["zmode"] - s32["zmode"]).max()),
        "max_abs_pdf_diff": float(np.abs(p16 - p32).max()),
        "mean_total_variation_pdf": float(tv.mean()),
        "max_total_variation_pdf": float(tv.max()),
        "float32": {k: float(v) for k, v in stats32.items()},
        "bfloat16": {k: float(v) for k, v in stats16.items()},
        "predict_s_float32": t32,
        "predict_s_bfloat16_emulated": t16,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--arch", default="paper")
    ap.add_argument("--train-batch", type=int, default=128)
    ap.add_argument("--train-steps", type=int, default=3)
    ap.add_argument("--predict-batch", type=int, default=256)
    ap.add_argument("--predict-n", type=int, default=512)
    ap.add_argument("--peak-seconds", type=float, default=3.0)
    ap.add_argument(
        "--emulated-speed",
        action="store_true",
        help="also time bfloat16 where it is refused (Keras mixed policy set directly)",
    )
    ap.add_argument("--acc-arch", default="small")
    ap.add_argument("--acc-steps", type=int, default=150)
    ap.add_argument("--acc-batch", type=int, default=64)
    ap.add_argument("--acc-train-n", type=int, default=3000)
    ap.add_argument("--acc-n", type=int, default=500)
    ap.add_argument("--acc-predict-batch", type=int, default=250)
    ap.add_argument("--acc-lr", type=float, default=None, help="[default: the arch's]")
    ap.add_argument(
        "--predict-repeats",
        type=int,
        default=1,
        help="above 1: time prediction in each precision this many times, taking turns",
    )
    ap.add_argument("--skip-train-speed", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from photoz_tools.model import architecture, backend, precision

    keras = backend.import_keras()
    backend.configure(0)
    res: dict[str, Any] = {
        "machine": {
            "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "lscpu_model_name": lscpu_model(),
            "cpu_has_bfloat16": precision.cpu_has_bfloat16(),
            "cpu_flags_bf16_amx": sorted(
                f for f in precision.cpu_flags() if "bf16" in f or f.startswith("amx")
            ),
            "cpu_count": os.cpu_count(),
            "device": backend.device_description(),
            "python": platform.python_version(),
            "versions": backend.versions(),
            "load_average_start": os.getloadavg()[0],
        },
        "args": vars(args),
    }
    ct = conftest()
    tmp = Path(tempfile.mkdtemp(prefix="pz-precision-"))
    try:
        dataset = tmp / "train.parquet"
        ct.write_dataset(dataset, args.acc_train_n, seed=1)

        # ---- refusals: precision.check and what pz-train prints
        res["refused"] = {}
        for prec in ("bfloat16", "float16"):
            line = gb.refusal(prec)
            if line:
                res["refused"][prec] = {
                    "precision.check": line,
                    "pz-train": cli_refusal(dataset, tmp / f"refused-{prec}", prec),
                }

        if not args.skip_speed:
            config = architecture.load_config(args.arch)
            probe = architecture.build_model(config, seed=0)
            fwd = gb.model_flops(probe)
            res["model"] = {
                "arch": args.arch,
                "trainable_params": architecture.trainable_count(probe),
                "gflop_per_galaxy_forward": fwd / 1e9,
            }
            del probe
            peaks_f32 = [gb.matmul_peak("float32", 2048, args.peak_seconds)]
            peak_bf16 = gb.matmul_peak("bfloat16", 2048, args.peak_seconds)
            runs = []
            for prec in ("float32", "bfloat16"):
                if res["refused"].get(prec) and not args.emulated_speed:
                    continue
                peaks = {"float32": peaks_f32[0], "bfloat16": peak_bf16}
                r = speed(args, config, prec, peaks, fwd, bool(res["refused"].get(prec)))
                r["emulated"] = bool(res["refused"].get(prec))
                runs.append(r)
                peaks_f32.append(gb.matmul_peak("float32", 2048, args.peak_seconds))
            if args.predict_repeats > 1:
                precs = {
                    p: bool(res["refused"].get(p))
                    for p in ("float32", "bfloat16")
                    if args.emulated_speed or not res["refused"].get(p)
                }
                res["predict_alternating"] = predict_alternating(args, config, precs, fwd)
                peaks_f32.append(gb.matmul_peak("float32", 2048, args.peak_seconds))
            peak = float(np.median(peaks_f32))
            for o in res.get("predict_alternating", {}).values():
                o["mfu_vs_float32_peak"] = o.pop("mfu_vs_float32_peak_gflops_per_s") / peak
            for r in runs:  # MFU against the median of the peaks measured around the runs
                for part in ("train", "predict"):
                    if part not in r:
                        continue
                    k = 3 if part == "train" else 1
                    r[part]["mfu_vs_float32_peak"] = (
                        r[part]["galaxies_per_s"] * k * fwd / 1e9 / peak
                    )
            res["matmul_peak_gflops"] = {
                "float32": peak,
                "float32_runs": peaks_f32,
                "bfloat16": peak_bf16,
                "n": 2048,
            }
            res["speed"] = runs

        if not args.skip_accuracy:
            res["accuracy"] = accuracy(args, tmp, dataset, ct)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["machine"]["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(res, indent=1, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=float))
    print(summary(res), file=sys.stderr)
    del keras


def summary(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"\n{m['lscpu_model_name']} ({m['cpu_count']} cores), {m['device']}, "
        f"load {m['load_average_start']:.1f} -> {m['load_average_end']:.1f}"
    ]
    pk = res.get("matmul_peak_gflops")
    if pk:
        lines.append(
            f"  matmul peak n=2048: float32 {pk['float32']:.1f} GFLOP/s "
            f"(runs {', '.join(f'{v:.1f}' for v in pk['float32_runs'])}), "
            f"bfloat16 {pk['bfloat16']:.1f} GFLOP/s"
        )
    for r in res.get("speed", []):
        tag = r["precision"] + (" (emulated)" if r.get("emulated") else "")
        for part in ("train", "predict"):
            if part not in r:
                continue
            x = r[part]
            lines.append(
                f"  {part:8} {tag:22} batch {x['batch']:4}: {x['galaxies_per_s']:7.2f} galaxies/s"
                f"  MFU {100 * x['mfu_vs_float32_peak']:5.1f} % of the float32 peak"
            )
    for prec, o in res.get("predict_alternating", {}).items():
        tag = prec + (" (emulated)" if o.get("emulated") else "")
        lines.append(
            f"  predict  {tag:22} batch {o['batch']:4}: {o['galaxies_per_s']:7.2f} galaxies/s"
            f"  MFU {100 * o['mfu_vs_float32_peak']:5.1f} %  (median of "
            f"{', '.join(f'{v:.2f}' for v in o['runs'])}, taking turns)"
        )
    for prec, r in res.get("refused", {}).items():
        lines.append(f"  refused {prec}: {r['precision.check']}")
        lines.append(f"    pz-train exit {r['pz-train']['exit_status']}: {r['pz-train']['stderr']}")
    a = res.get("accuracy")
    if a:
        lines.append(
            f"  accuracy ({a['arch']}, {a['train_steps']} steps, {a['held_out']} held-out): "
            f"max |zphot diff| {a['max_abs_zphot_diff']:.2e}, "
            f"sigma_MAD {a['float32']['sigma_mad']:.5f} (float32) vs "
            f"{a['bfloat16']['sigma_mad']:.5f} (bfloat16)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
