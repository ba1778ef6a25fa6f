"""pz-predict --precision on THIS machine: bfloat16's accuracy cost through the real prediction
path, and pz-predict's speed end to end against the bare model and the machine's float32 peak.

    .venv/bin/python benchmarks/predict_precision.py [--turns 3] [--speed-n 512]
        [--emulated-speed] [--acc-steps 400] [--acc-n 1000] [--skip-speed|--skip-accuracy]
        [--json PATH]

Accuracy: a bundle of --acc-arch (default small) trained by photoz_tools.model.train.train (the
pz-train function, float32) on --acc-train-n galaxies of tests/model/conftest.py's generator
(seed 1), then --acc-n held-out generated galaxies (seed 2, never trained on) predicted by
photoz_tools.model.predict.predict_arrays with precision="float32" and precision="bfloat16":
max |zphot difference|, bias, sigma_MAD, eta and mean CRPS of each (photoz_tools.metrics and
photoz_tools.pdf), and the PDFs' L1 distance sum_k |P16_k - P32_k| (mean and max over galaxies).
Where precision.check refuses bfloat16 (a CPU without AVX512-BF16/AMX and no GPU) it is FORCED:
precision.cpu_has_bfloat16 is patched to answer True for the call, so the code that pz-predict
--precision bfloat16 would run does run, in emulated bfloat16; the JSON says so ("forced").

Speed: a bundle of the paper network (untrained weights, seed 0; one member, as
benchmarks/model_speed.py builds it), a Parquet table of --speed-n generated galaxies, and in
--turns turns, interleaved: the NUMPY float32 matmul peak (n x n, the median of --peak-reps
products), photoz_tools.model.predict.predict() end to end (read the table, infer, summarise,
write Parquet: pz-predict's work after start-up) and the bare member's predict_on_batch in
slices of --batch (predict_padded on in-memory arrays). galaxies/s are medians over the turns;
MFU = galaxies/s x the forward FLOPs per galaxy (benchmarks/model_speed.py's model_flops) / the
median of all peaks measured. With --emulated-speed the same for bfloat16 (forced where refused,
labelled emulated); predict() then rebuilds the bfloat16 member at each call (timed apart as
setup_s, included in its end-to-end rate as a pz-predict run would pay it once). The refusal
lines of the real command (`pz-predict --precision bfloat16` and `float16`) are recorded.
Prints one JSON object on stdout and a summary on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def conftest():
    """tests/model/conftest.py's generator (galaxies, write_dataset), loaded by path."""
    return _load("_pz_conftest", ROOT / "tests/model/conftest.py")


def lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return ""


def refusal(prec: str) -> str | None:
    """precision.check's one-line refusal of `prec` here, or None where it is allowed."""
    from photoz_tools.errors import PzUsageError
    from photoz_tools.model import precision

    try:
        precision.check(prec)
    except PzUsageError as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def bfloat16_allowed(forced: bool):
    """Let precision.check allow bfloat16 for the block where this CPU lacks it (`forced`):
    the CPU-feature probe answers True; everything else is the real pz-predict code path."""
    from photoz_tools.model import precision

    if not forced:
        yield
        return
    saved = precision.cpu_has_bfloat16
    precision.cpu_has_bfloat16 = lambda flags=None: True
    try:
        yield
    finally:
        precision.cpu_has_bfloat16 = saved


def numpy_peak(n: int, reps: int) -> dict[str, Any]:
    """GFLOP/s of numpy float32 n x n matmuls: the median (and all) of `reps` products."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm
    rates = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        rates.append(2.0 * n**3 / (time.perf_counter() - t) / 1e9)
    return {"gflops": float(np.median(rates)), "runs": rates}


def cli_refusal(bdir: Path, src: Path, out: Path, prec: str) -> dict[str, Any]:
    """What `pz-predict -m BUNDLE CATALOG --precision PREC -o OUT` prints and returns here."""
    cmd = [sys.executable, "-m", "photoz_tools.cli.predict", "-m", str(bdir), str(src)]
    cmd += ["--precision", prec, "-o", str(out)]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return {
        "command": f"pz-predict -m BUNDLE catalog.parquet --precision {prec} -o OUT",
        "exit_status": r.returncode,
        "stderr": [ln for ln in r.stderr.splitlines() if ln.strip()],
        "output_written": out.exists(),
        "wall_s": time.perf_counter() - t,
    }


# --------------------------------------------------------------------------- accuracy


def accuracy(args, tmp: Path, ct, forced: bool) -> dict[str, Any]:
    from photoz_tools import metrics
    from photoz_tools import pdf as pdfcore
    from photoz_tools.model import bundle, train
    from photoz_tools.model.backend import import_keras
    from photoz_tools.model.predict import predict_arrays

    keras = import_keras()
    dataset = ct.write_dataset(tmp / "train.parquet", args.acc_train_n, seed=1)
    out_dir = tmp / "acc-bundle"
    recipe = train.Recipe(
        steps=args.acc_steps,
        batch_size=args.acc_batch,
        val_size=200,
        seed=3,
        members=args.acc_members,
    )
    log(f"accuracy: training {args.acc_arch} for {args.acc_steps} steps of {args.acc_batch}")
    t = time.perf_counter()
    train.train(str(dataset), out_dir, arch=args.acc_arch, recipe=recipe, force=True)
    train_s = time.perf_counter() - t
    b = bundle.load_bundle(out_dir)
    g = ct.galaxies(args.acc_n, seed=2)  # held out: another seed than the training set's
    images, ebv, z = g["image"], g["ebv"], g["z"].astype(np.float64)

    log("accuracy: predicting the held-out galaxies in float32 and bfloat16")
    t = time.perf_counter()
    p32 = predict_arrays(b, images, ebv, batch_size=args.batch, precision="float32")
    t32 = time.perf_counter() - t
    with bfloat16_allowed(forced):
        t = time.perf_counter()
        p16 = predict_arrays(b, images, ebv, batch_size=args.batch, precision="bfloat16")
        t16 = time.perf_counter() - t
    policy_after = keras.config.dtype_policy().name

    res: dict[str, Any] = {}
    for name, p in (("float32", p32), ("bfloat16", p16)):
        s = pdfcore.summarize(p, b.bins)
        res[name] = {
            **metrics.point_metrics(s["zphot"], z),
            "crps_mean": float(np.mean(pdfcore.crps(p, b.bins, z))),
            "pdf_sum_max_abs_dev": float(np.abs(p.astype(np.float64).sum(axis=1) - 1).max()),
            "zphot": s["zphot"].astype(np.float64),
            "zmode": s["zmode"].astype(np.float64),
        }
    dzs = res["bfloat16"].pop("zphot") - res["float32"].pop("zphot")
    dzp = np.abs(dzs)
    dzm = np.abs(res["bfloat16"].pop("zmode") - res["float32"].pop("zmode"))
    l1 = np.abs(p16.astype(np.float64) - p32.astype(np.float64)).sum(axis=1)
    return {
        "arch": args.acc_arch,
        "members": args.acc_members,
        "train_steps": args.acc_steps,
        "train_batch": args.acc_batch,
        "train_galaxies": args.acc_train_n,
        "learning_rate": "the architecture's default ([train] in its config)",
        "train_wall_s": train_s,
        "held_out": args.acc_n,
        "bfloat16": "forced (emulated on this CPU)" if forced else "allowed by precision.check",
        "keras_policy_after": policy_after,
        "max_abs_zphot_diff": float(dzp.max()),
        "median_abs_zphot_diff": float(np.median(dzp)),
        "p99_abs_zphot_diff": float(np.percentile(dzp, 99)),
        "max_abs_zphot_diff_over_1pz": float((dzp / (1 + z)).max()),
        "mean_zphot_diff_signed": float(dzs.mean()),
        "mean_dz_diff_signed": float((dzs / (1 + z)).mean()),
        "max_abs_zmode_diff": float(dzm.max()),
        "zmode_changed": int((dzm > 0).sum()),
        "pdf_l1_mean": float(l1.mean()),
        "pdf_l1_max": float(l1.max()),
        "pdf_max_abs_bin_diff": float(np.abs(p16 - p32).max()),
        "bit_identical": bool(np.array_equal(p16, p32)),
        "metrics": res,
        "predict_s": {"float32": t32, "bfloat16": t16},
    }


# --------------------------------------------------------------------------- speed


def speed(args, tmp: Path, ct, forced: bool) -> dict[str, Any]:
    from photoz_tools import tables
    from photoz_tools.model import architecture, bundle
    from photoz_tools.model.predict import members_in, predict, predict_padded
    from photoz_tools.pdf import Bins

    model_speed = _load("_pz_model_speed", HERE / "model_speed.py")
    config = architecture.load_config(args.arch)
    model = architecture.build_model(config, seed=0)
    fwd = float(model_speed.model_flops(model))
    bdir = tmp / "speed-bundle"
    bdir.mkdir()
    manifest = bundle.manifest_header(config, Bins.default(), config["scaling"], "benchmark")
    manifest["members"] = [bundle.save_member(model, bdir, 0)]
    del model
    bundle.write_json_atomic(bdir / "manifest.json", manifest)
    src = ct.write_dataset(tmp / "catalog.parquet", args.speed_n, seed=5)
    t = tables.read_table(src)
    images, ebv = tables.column_array(t, "image"), tables.column_array(t, "ebv")
    b = bundle.load_bundle(bdir)
    out: dict[str, Any] = {
        "arch": args.arch,
        "trainable_params": architecture.trainable_count(b.members[0]),
        "gflop_per_galaxy_forward": fwd / 1e9,
        "galaxies": args.speed_n,
        "batch": args.batch,
        "refused": {},
    }
    for prec in ("bfloat16", "float16"):
        if refusal(prec):
            out["refused"][prec] = cli_refusal(bdir, src, tmp / f"refused-{prec}.parquet", prec)

    precs = ["float32"] + (["bfloat16"] if args.emulated_speed or not forced else [])
    bare_models = {"float32": b.members[0]}
    warm: dict[str, float] = {}
    log(f"speed: warming up {', '.join(precs)}")
    for prec in precs:
        with bfloat16_allowed(forced and prec == "bfloat16"):
            t0 = time.perf_counter()
            if prec != "float32":
                bare_models[prec] = members_in(b, prec)[0]
            setup = time.perf_counter() - t0
            predict_padded(bare_models[prec], images[: args.batch], ebv, args.batch)
            warm[f"{prec}_setup_s"] = setup
            warm[f"{prec}_first_call_s"] = time.perf_counter() - t0 - setup
            t0 = time.perf_counter()
            predict(src, tmp / "warm.parquet", b, batch_size=args.batch, precision=prec)
            warm[f"{prec}_first_predict_s"] = time.perf_counter() - t0
    out["warm_up"] = warm

    peaks: list[dict[str, Any]] = []
    runs: dict[str, dict[str, list[float]]] = {p: {"e2e": [], "bare": []} for p in precs}
    loads = [os.getloadavg()[0]]
    for turn in range(args.turns):
        for prec in precs:
            peaks.append(numpy_peak(args.peak_n, args.peak_reps))
            with bfloat16_allowed(forced and prec == "bfloat16"):
                t0 = time.perf_counter()
                predict(src, tmp / "out.parquet", b, batch_size=args.batch, precision=prec)
                runs[prec]["e2e"].append(args.speed_n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            predict_padded(bare_models[prec], images, ebv, args.batch)
            runs[prec]["bare"].append(args.speed_n / (time.perf_counter() - t0))
            log(
                f"speed turn {turn + 1}/{args.turns} {prec}: e2e {runs[prec]['e2e'][-1]:.2f}, "
                f"bare {runs[prec]['bare'][-1]:.2f} galaxies/s, peak {peaks[-1]['gflops']:.1f}"
            )
        loads.append(os.getloadavg()[0])
    peaks.append(numpy_peak(args.peak_n, args.peak_reps))
    peak = float(np.median([p["gflops"] for p in peaks]))
    out["numpy_float32_peak"] = {
        "n": args.peak_n,
        "reps_per_measurement": args.peak_reps,
        "gflops_median": peak,
        "measurements": [p["gflops"] for p in peaks],
    }
    out["load_average_per_turn"] = loads
    out["rates"] = {}
    for prec, r in runs.items():
        e2e, bare = float(np.median(r["e2e"])), float(np.median(r["bare"]))
        out["rates"][prec] = {
            "emulated": forced and prec == "bfloat16",
            "e2e_galaxies_per_s": e2e,
            "e2e_runs": r["e2e"],
            "bare_galaxies_per_s": bare,
            "bare_runs": r["bare"],
            "e2e_over_bare": e2e / bare,
            "e2e_over_bare_per_turn": [a / c for a, c in zip(r["e2e"], r["bare"], strict=True)],
            "e2e_mfu_vs_numpy_float32_peak": e2e * fwd / 1e9 / peak,
            "bare_mfu_vs_numpy_float32_peak": bare * fwd / 1e9 / peak,
        }
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--arch", default="paper", help="speed: the architecture")
    ap.add_argument("--batch", type=int, default=256, help="pz-predict --batch-size")
    ap.add_argument("--speed-n", type=int, default=512, help="speed: galaxies per timed run")
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--peak-n", type=int, default=2048)
    ap.add_argument("--peak-reps", type=int, default=5)
    ap.add_argument(
        "--emulated-speed", action="store_true", help="also time bfloat16 where it is refused"
    )
    ap.add_argument("--acc-arch", default="small")
    ap.add_argument("--acc-steps", type=int, default=400)
    ap.add_argument("--acc-batch", type=int, default=64)
    ap.add_argument("--acc-members", type=int, default=1)
    ap.add_argument("--acc-train-n", type=int, default=3000)
    ap.add_argument("--acc-n", type=int, default=1000)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from photoz_tools.model import backend, precision

    backend.import_keras()
    backend.configure(0)
    forced = refusal("bfloat16") is not None
    res: dict[str, Any] = {
        "machine": {
            "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "lscpu_model_name": lscpu_model(),
            "cpu_count": os.cpu_count(),
            "cpu_has_bfloat16": precision.cpu_has_bfloat16(),
            "device": backend.device_description(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "versions": backend.versions(),
            "load_average_start": list(os.getloadavg()),
        },
        "args": vars(args),
        "bfloat16_refusal": refusal("bfloat16"),
        "float16_refusal": refusal("float16"),
    }
    ct = conftest()
    tmp = Path(tempfile.mkdtemp(prefix="pz-predict-precision-"))
    try:
        if not args.skip_accuracy:
            res["accuracy"] = accuracy(args, tmp, ct, forced)
        if not args.skip_speed:
            res["speed"] = speed(args, tmp, ct, forced)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["machine"]["load_average_end"] = list(os.getloadavg())
    res["wall_s"] = time.perf_counter() - T0
    text = json.dumps(res, indent=1, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    print(summary(res), file=sys.stderr)


def summary(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"\n{m['lscpu_model_name']} ({m['cpu_count']} cores), {m['device']}, load "
        f"{m['load_average_start'][0]:.2f} -> {m['load_average_end'][0]:.2f}, "
        f"{res['wall_s']:.0f} s"
    ]
    a = res.get("accuracy")
    if a:
        f32, b16 = a["metrics"]["float32"], a["metrics"]["bfloat16"]
        lines += [
            f"  accuracy: {a['arch']} x{a['members']}, {a['train_steps']} steps, "
            f"{a['held_out']} held-out galaxies, bfloat16 {a['bfloat16']}",
            f"    max |zphot bf16 - f32| {a['max_abs_zphot_diff']:.2e} (median "
            f"{a['median_abs_zphot_diff']:.1e}, p99 {a['p99_abs_zphot_diff']:.1e}, signed mean "
            f"{a['mean_zphot_diff_signed']:.1e})",
            f"    sigma_MAD {f32['sigma_mad']:.6f} -> {b16['sigma_mad']:.6f}; "
            f"bias {f32['bias']:.2e} -> {b16['bias']:.2e}; eta {f32['eta']:.2f} -> "
            f"{b16['eta']:.2f} %; CRPS {f32['crps_mean']:.6f} -> {b16['crps_mean']:.6f}",
            f"    PDF L1 distance mean {a['pdf_l1_mean']:.4f}, max {a['pdf_l1_max']:.4f}; "
            f"zmode changed for {a['zmode_changed']}",
        ]
    s = res.get("speed")
    if s:
        pk = s["numpy_float32_peak"]
        lines.append(
            f"  numpy float32 matmul n={pk['n']}: {pk['gflops_median']:.1f} GFLOP/s (median of "
            f"{', '.join(f'{v:.1f}' for v in pk['measurements'])})"
        )
        for prec, r in s["rates"].items():
            tag = prec + (" (emulated)" if r["emulated"] else "")
            lines.append(
                f"  {tag:20} predict() e2e {r['e2e_galaxies_per_s']:6.2f} galaxies/s "
                f"(MFU {100 * r['e2e_mfu_vs_numpy_float32_peak']:.1f} %), bare predict_on_batch "
                f"{r['bare_galaxies_per_s']:6.2f} (MFU "
                f"{100 * r['bare_mfu_vs_numpy_float32_peak']:.1f} %), e2e/bare "
                f"{r['e2e_over_bare']:.2f}"
            )
        for prec, r in s["refused"].items():
            lines.append(f"  pz-predict --precision {prec}: exit {r['exit_status']}: {r['stderr']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
