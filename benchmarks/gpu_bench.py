"""Speed of the `paper` network on an accelerator, in one run: training and prediction galaxies/s
in float32 and bfloat16, the training feed alone, the matmul peaks and model FLOPs utilisation.

    KERAS_BACKEND=jax python benchmarks/gpu_bench.py [--budget 420] [--quick] [--emulate-bf16]

(benchmarks/gpu.sh is the one command for a GPU host: it installs the carried wheels first.)

What is measured, each part capped by steps or seconds, whichever comes first, and skipped (with
the reason recorded) when the run's time budget would not hold it:

- matmul peak: backend.matmul_peak_gflops (float32; under JAX on a GPU the default matmul
  precision, which lets XLA use TF32) and the same n x n product in bfloat16.
- training: the real pz-train step: architecture.logits_model + train.compile_for_training with a
  Recipe, under precision.policy(...), stepped by backend.TrainStep with a host numpy batch each
  step (as the feed hands it) and no host sync per step; the loss is read only at the end of the
  timed run. The number of timed steps comes from a short calibration run, so the timed run ends
  near the time cap without reading anything on the way. Also the same step on a device-resident
  batch (jax only: what the step costs without the host-to-device copy).
- prediction: model.predict_on_batch on host arrays (pz-predict's path: a host sync per batch),
  and a jit-compiled stateless forward on a device-resident batch, dispatched asynchronously
  (jax only).
- the feed alone: feed.TrainingBatches over a generated Parquet table (row groups of ~200
  galaxies, as pz-pack writes them) with 1, 4, 8, 16 worker threads; the shuffle buffer is a
  quarter of the table so that row groups are read in steady state (the file is in the page
  cache: this is decoding, shuffling and augmenting, not the disk).
- end to end: the TrainStep fed by feed.Prefetch(TrainingBatches) with the loss read every 50
  steps (pz-train's --log-every), i.e. the pz-train loop without validation and checkpoints.

MFU = galaxies/s x FLOPs per galaxy / matmul peak, with benchmarks/model_speed.py's model_flops
(forward convolutions and dense layers; training counted as 3x forward).

Prints one JSON object and then a table; the JSON goes to $OUT/gpu.json too when $OUT is set
(rewritten after every part, so a run stopped early still leaves what it measured).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

T0 = time.perf_counter()


def elapsed() -> float:
    return time.perf_counter() - T0


def log(msg: str) -> None:
    print(f"[{elapsed():6.1f} s] {msg}", file=sys.stderr, flush=True)


def model_flops(model) -> float:
    """benchmarks/model_speed.py's model_flops (forward FLOPs per galaxy), loaded by path."""
    spec = importlib.util.spec_from_file_location("_pz_model_speed", HERE / "model_speed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return float(mod.model_flops(model))


def galaxies(n: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """n generated inputs ({"image", "ebv"}) and bin labels: noise plus a bright centre."""
    from photoz_tools.pdf import Bins

    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.1, (n, 64, 64, 5)).astype(np.float32)
    images[:, 28:36, 28:36, :] += 5.0
    ebv = rng.uniform(0.01, 0.1, (n, 1)).astype(np.float32)
    labels = np.asarray(Bins.default().index(rng.uniform(0.01, 0.35, n)), dtype=np.int64)
    return {"image": images, "ebv": ebv}, labels


# --------------------------------------------------------------------------- precision


@contextlib.contextmanager
def compute_policy(prec: str, emulate: bool = False):
    """precision.policy(prec) (which refuses bfloat16 where the device would emulate it), or with
    `emulate` Keras's mixed policy set directly (to exercise or cost the path on any CPU)."""
    from photoz_tools.model import backend, precision

    if not emulate or prec == "float32":
        with precision.policy(prec) as name:
            yield name
        return
    keras = backend.import_keras()
    before = keras.config.dtype_policy()
    name = precision._POLICY[prec]
    keras.config.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.config.set_dtype_policy(before)


def refusal(prec: str) -> str | None:
    """The one-line refusal precision.check gives for `prec` here, or None where it is allowed."""
    from photoz_tools.errors import PzUsageError
    from photoz_tools.model import precision

    try:
        precision.check(prec)
    except PzUsageError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- matmul peaks


def matmul_peak(dtype: str, n: int, seconds: float) -> float:
    """Best-of-repeats GFLOP/s of an n x n product in `dtype` (backend.matmul_peak_gflops)."""
    from photoz_tools.model import backend

    return backend.matmul_peak_gflops(n, seconds, dtype)


# --------------------------------------------------------------------------- training


def training_model(config: dict, prec: str, batch: int, seed: int = 0):
    """The pz-train model (logits model, compile_for_training with a Recipe); call it inside
    compute_policy(prec), as train._train_member builds it inside precision.policy."""
    from photoz_tools.model import architecture
    from photoz_tools.model.train import Recipe, compile_for_training

    recipe = Recipe(batch_size=batch, learning_rate=1e-4, warmup_steps=0, precision=prec)
    model = architecture.logits_model(architecture.build_model(config, seed=seed))
    compile_for_training(model, {"recipe": recipe, "total_steps": 100_000})
    return model


def to_device(x: Any) -> Any:
    """x as device arrays (jax only; elsewhere unchanged)."""
    from photoz_tools.model import backend

    if backend.name() != "jax":
        return x
    import jax

    return jax.tree_util.tree_map(jax.device_put, x)


def time_train(
    step, x, y, batch: int, seconds: float, max_steps: int, calib_steps: int = 5
) -> dict[str, Any]:
    """Timed TrainStep run: `calib_steps` steps (loss read) estimate the step time, then
    min(max_steps, seconds / step time) steps run with the loss read only after the last."""
    n = max_steps
    if calib_steps:
        t = time.perf_counter()
        for _ in range(calib_steps):
            step(x, y)
        step.mean_loss()
        per = (time.perf_counter() - t) / calib_steps
        n = int(max(3, min(max_steps, seconds / max(per, 1e-6))))
    t = time.perf_counter()
    for _ in range(n):
        step(x, y)
    loss = step.mean_loss()
    dt = time.perf_counter() - t
    return {
        "steps": n,
        "seconds": dt,
        "galaxies_per_s": n * batch / dt,
        "step_ms": 1e3 * dt / n,
        "final_loss": loss,
    }


def warm_train(step, x, y, warm_steps: int = 2) -> float:
    """Compile: the first TrainStep call (train_on_batch), more steps, then a loss read."""
    t = time.perf_counter()
    for _ in range(warm_steps):
        step(x, y)
    step.mean_loss()
    return time.perf_counter() - t


# --------------------------------------------------------------------------- prediction


def time_predict(model, x, batch: int, seconds: float, max_batches: int) -> dict[str, Any]:
    """model.predict_on_batch on host arrays (pz-predict's call; a host sync per batch)."""
    xb = {k: v[:batch] for k, v in x.items()}
    t = time.perf_counter()
    model.predict_on_batch(xb)
    compile_s = time.perf_counter() - t
    n = 0
    t = time.perf_counter()
    end = t + seconds
    while n < max_batches and (n == 0 or time.perf_counter() < end):
        model.predict_on_batch(xb)
        n += 1
    dt = time.perf_counter() - t
    return {
        "batches": n,
        "seconds": dt,
        "galaxies_per_s": n * batch / dt,
        "first_call_s": compile_s,
    }


def time_predict_resident(
    model, x, batch: int, seconds: float, max_batches: int, calib: int = 3
) -> dict[str, Any]:
    """jax.jit(stateless forward) on a device-resident batch, dispatched asynchronously and
    waited for once at the end (what the device sustains without the host in the loop)."""
    import jax

    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def fwd(tv, ntv, xb):
        y, _ = model.stateless_call(tv, ntv, xb, training=False)
        return y

    xb = to_device({k: v[:batch] for k, v in x.items()})
    t = time.perf_counter()
    fwd(tv, ntv, xb).block_until_ready()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(calib):
        out = fwd(tv, ntv, xb)
    out.block_until_ready()
    per = (time.perf_counter() - t) / calib
    n = int(max(3, min(max_batches, seconds / max(per, 1e-6))))
    t = time.perf_counter()
    outs = [fwd(tv, ntv, xb) for _ in range(n)]
    jax.block_until_ready(outs)
    dt = time.perf_counter() - t
    return {
        "batches": n,
        "seconds": dt,
        "galaxies_per_s": n * batch / dt,
        "first_call_s": compile_s,
    }


# --------------------------------------------------------------------------- feed


def write_feed_table(path: Path, n: int, chunk: int = 512) -> float:
    """A generated training table (objID, z, ebv, image) written through tables.TableWriter,
    which makes ~16 MB row groups as pz-pack's output has; returns the seconds it took."""
    import pyarrow as pa

    from photoz_tools import tables

    t = time.perf_counter()
    rng = np.random.default_rng(n)
    writer = None
    try:
        for s in range(0, n, chunk):
            m = min(chunk, n - s)
            images = rng.normal(0, 0.1, (m, 64, 64, 5)).astype(np.float32)
            part = pa.table(
                {
                    "objID": np.arange(s, s + m, dtype=np.int64),
                    "z": rng.uniform(0.01, 0.35, m),
                    "ebv": rng.uniform(0.01, 0.1, m).astype(np.float32),
                    "image": tables.to_arrow(images),
                }
            )
            if writer is None:
                writer = tables.TableWriter(str(path), part.schema)
            writer.write(part)
    finally:
        if writer is not None:
            writer.close()
    return time.perf_counter() - t


def time_feed(
    sel, batch: int, workers: int, seconds: float, buffer_rows: int, max_batches: int
) -> dict[str, Any]:
    """TrainingBatches alone: galaxies/s after the first batch (which waits for the buffer to
    fill), over as many epochs as the time cap allows."""
    from photoz_tools.model import feed

    tb = feed.TrainingBatches(
        sel, batch, seed=0, augment=True, workers=workers, buffer_rows=buffer_rows
    )
    t0 = time.perf_counter()
    first = None
    n = 0
    epoch = 0
    done = False
    while not done:
        it = tb.iterate(epoch)
        for x, y, _w in it:
            assert x["image"].shape == (batch, 64, 64, 5) and len(y) == batch
            now = time.perf_counter()
            if first is None:
                first = now
                continue
            n += 1
            if n >= max_batches or now - first >= seconds:
                done = True
                break
        it.close()
        epoch += 1
    dt = time.perf_counter() - first
    return {
        "workers": workers,
        "batch": batch,
        "batches": n,
        "epochs": epoch,
        "seconds": dt,
        "first_batch_s": first - t0,
        "galaxies_per_s": n * batch / dt if dt > 0 else float("nan"),
    }


def time_e2e(
    model, sel, batch: int, workers: int, seconds: float, buffer_rows: int, log_every: int = 50
) -> dict[str, Any]:
    """The pz-train loop without validation/checkpoints: TrainStep fed by Prefetch(feed),
    the loss read every `log_every` steps and at the end."""
    from photoz_tools.model import backend, feed

    tb = feed.TrainingBatches(
        sel, batch, seed=1, augment=True, workers=workers, buffer_rows=buffer_rows
    )
    step = backend.TrainStep(model)
    step._built = True  # the model was compiled and stepped before: no train_on_batch first
    steps = 0
    epoch = 0
    t0 = time.perf_counter()
    first = None
    done = False
    loss = float("nan")
    while not done:
        pf = feed.Prefetch(tb.iterate(epoch), depth=4)
        try:
            for x, y, w in pf:
                if first is None:
                    first = time.perf_counter()
                    step(x, y, w)
                    step.mean_loss()
                    t_run = time.perf_counter()
                    continue
                step(x, y, w)
                steps += 1
                if steps % log_every == 0:
                    loss = step.mean_loss()
                    if time.perf_counter() - t_run >= seconds:
                        done = True
                        break
        finally:
            pf.close()
        epoch += 1
        if not done and time.perf_counter() - t_run >= seconds:
            done = True
    if steps % log_every:
        loss = step.mean_loss()
    dt = time.perf_counter() - t_run
    step.sync()
    return {
        "workers": workers,
        "batch": batch,
        "steps": steps,
        "epochs": epoch,
        "seconds": dt,
        "first_batch_s": first - t0,
        "galaxies_per_s": steps * batch / dt,
        "final_loss": loss,
        "log_every": log_every,
    }


# --------------------------------------------------------------------------- the run


class Run:
    """The result object, its budget, and writing it out after every part."""

    def __init__(self, budget: float, out: Path | None) -> None:
        self.budget = budget
        self.out = out
        self.res: dict[str, Any] = {
            "train": [],
            "predict": [],
            "feed": [],
            "e2e": [],
            "skipped": [],
            "errors": [],
        }

    def left(self) -> float:
        return self.budget - elapsed()

    def fits(self, what: str, need: float) -> bool:
        if self.left() >= need:
            return True
        self.res["skipped"].append(
            f"{what}: needs ~{need:.0f} s, {max(0.0, self.left()):.0f} s of the budget left"
        )
        log(f"skip {what} (time budget)")
        return False

    @contextlib.contextmanager
    def part(self, what: str):
        log(f"{what} ...")
        t = time.perf_counter()
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - recorded, the rest still runs
            line = f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            self.res["errors"].append(line)
            log("ERROR " + line)
            traceback.print_exc(file=sys.stderr)
        finally:
            log(f"{what} done in {time.perf_counter() - t:.1f} s")
            self.save()

    def save(self) -> None:
        self.res["elapsed_s"] = elapsed()
        if self.out is not None:
            tmp = self.out.with_name(self.out.name + ".tmp")
            tmp.write_text(json.dumps(self.res, indent=1, default=float))
            os.replace(tmp, self.out)


def settings(args: argparse.Namespace, gpu: bool) -> dict[str, Any]:
    """Sizes and caps: full on an accelerator, tiny with --quick (a CPU check of the code)."""
    if args.quick:
        s = dict(
            train_batches=[8],
            more_batches=[16],
            predict_batch=16,
            train_s=1.5,
            train_max=20,
            calib=2,
            predict_s=1.5,
            predict_max=10,
            peak_n=512,
            peak_s=0.5,
            feed_rows=384,
            feed_buffer=96,
            feed_batch=16,
            feed_workers=[1, 2],
            feed_s=1.5,
            feed_max=40,
            e2e_s=2.0,
            e2e_batch=8,
            e2e_workers=2,
            e2e_log_every=5,
            compile_guess=60.0,
        )
    else:
        cpus = os.cpu_count() or 1
        s = dict(
            train_batches=[128],
            more_batches=[256, 512],
            predict_batch=1024,
            train_s=6.0,
            train_max=5000,
            calib=5,
            predict_s=4.0,
            predict_max=500,
            peak_n=8192 if gpu else 2048,
            peak_s=2.0,
            feed_rows=8192,
            feed_buffer=2048,
            feed_batch=128,
            feed_workers=[w for w in (1, 4, 8, 16)],
            feed_s=5.0,
            feed_max=2000,
            e2e_s=8.0,
            e2e_batch=128,
            e2e_workers=min(8, cpus),
            e2e_log_every=50,
            compile_guess=60.0,
        )
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--arch", default="paper")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for the whole run")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and caps (CPU code check)")
    ap.add_argument(
        "--emulate-bf16",
        action="store_true",
        help="run bfloat16 even where precision.check refuses it (Keras mixed policy set directly)",
    )
    ap.add_argument("--json", default=None, help="also write the JSON here ($OUT/gpu.json if set)")
    args = ap.parse_args()
    args.quick = args.quick or os.environ.get("GPU_BENCH_QUICK", "") not in ("", "0")

    out = Path(args.json) if args.json else None
    if out is None and os.environ.get("OUT"):
        out = Path(os.environ["OUT"]) / "gpu.json"
    run = Run(args.budget, out)
    res = run.res

    from photoz_tools.model import backend

    keras = backend.import_keras()
    backend.configure(0)
    from photoz_tools.model import architecture, precision

    gpu = backend.has_gpu()
    s = settings(args, gpu)
    res["machine"] = {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "device": backend.device_description(),
        "has_gpu": gpu,
        "host_cpu": precision.cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": backend.versions(),
        "keras_backend": backend.name(),
        "load_average_start": os.getloadavg()[0],
    }
    if backend.name() == "jax":
        import jax

        res["machine"]["device_kind"] = jax.devices()[0].device_kind
        res["machine"]["jax_default_matmul_precision"] = str(
            jax.config.jax_default_matmul_precision
        )
    res["quick"] = bool(args.quick)
    res["settings"] = s
    res["budget_s"] = args.budget
    log(f"{res['machine']['device']}; budget {args.budget:.0f} s")

    config = architecture.load_config(args.arch)
    probe = architecture.build_model(config, seed=0)
    fwd = model_flops(probe)
    res["model"] = {
        "arch": args.arch,
        "trainable_params": architecture.trainable_count(probe),
        "gflop_per_galaxy_forward": fwd / 1e9,
        "gflop_per_galaxy_train": 3 * fwd / 1e9,
    }
    del probe

    tmp = tempfile.TemporaryDirectory(prefix="pz-gpu-bench-")
    try:
        precs = ["float32", "bfloat16"]
        refused = {p: refusal(p) for p in precs}
        res["refused"] = {p: r for p, r in refused.items() if r}
        if args.emulate_bf16:
            res["emulated"] = [p for p, r in refused.items() if r]
            refused = {p: None for p in precs}
        run_precs = [p for p in precs if not refused[p]]
        emulate = bool(args.emulate_bf16)

        # ---- matmul peaks
        peaks: dict[str, float] = {}
        with run.part("matmul peaks"):
            for dt in ("float32", "bfloat16"):
                peaks[dt] = matmul_peak(dt, s["peak_n"], s["peak_s"])
                log(f"  {dt} matmul peak {peaks[dt]:.0f} GFLOP/s (n={s['peak_n']})")
            res["matmul_peak_gflops"] = dict(peaks, n=s["peak_n"])

        def mfu(rate: float, flops_per: float, prec: str) -> dict[str, float]:
            out = {}
            if peaks.get("float32"):
                out["mfu_vs_float32_peak"] = rate * flops_per / 1e9 / peaks["float32"]
            if prec != "float32" and peaks.get(prec):
                out[f"mfu_vs_{prec}_peak"] = rate * flops_per / 1e9 / peaks[prec]
            return out

        data_x, data_y = galaxies(
            max(s["predict_batch"], max(s["train_batches"] + s["more_batches"]))
        )
        kept: dict[str, Any] = {}  # precision -> compiled training model at the first batch size

        def train_part(prec: str, batch: int, keep: bool, resident: bool) -> None:
            what = f"train {prec} batch {batch}"
            if not run.fits(what, s["compile_guess"] + 2 * s["train_s"]):
                return
            with run.part(what), compute_policy(prec, emulate):
                model = training_model(config, prec, batch)
                step = backend.TrainStep(model)
                x = {k: v[:batch] for k, v in data_x.items()}
                y = data_y[:batch]
                compile_s = warm_train(step, x, y)
                log(f"  compiled + 2 steps in {compile_s:.1f} s")
                s["compile_guess"] = max(20.0, 1.2 * compile_s)
                r = time_train(step, x, y, batch, s["train_s"], s["train_max"], s["calib"])
                row = {"precision": prec, "batch": batch, "input": "host numpy (as pz-train)"}
                row.update(
                    r, compile_and_warm_s=compile_s, **mfu(r["galaxies_per_s"], 3 * fwd, prec)
                )
                res["train"].append(row)
                log(f"  {r['galaxies_per_s']:.1f} galaxies/s ({r['steps']} steps)")
                if resident and backend.name() == "jax":
                    xd, yd = to_device(x), to_device(y)
                    r = time_train(
                        step, xd, yd, batch, s["train_s"] / 2, s["train_max"], s["calib"]
                    )
                    row = {"precision": prec, "batch": batch, "input": "device-resident batch"}
                    row.update(r, **mfu(r["galaxies_per_s"], 3 * fwd, prec))
                    res["train"].append(row)
                    log(f"  resident: {r['galaxies_per_s']:.1f} galaxies/s ({r['steps']} steps)")
                step.sync()
                if keep:
                    kept[prec] = (model, batch)
                else:
                    del model, step
                    gc.collect()

        def predict_part(prec: str) -> None:
            batch = s["predict_batch"]
            what = f"predict {prec} batch {batch}"
            if not run.fits(what, s["compile_guess"] + 2 * s["predict_s"]):
                return
            with run.part(what), compute_policy(prec, emulate):
                model = architecture.build_model(config, seed=0)
                r = time_predict(model, data_x, batch, s["predict_s"], s["predict_max"])
                row = {"precision": prec, "batch": batch, "path": "predict_on_batch, host arrays"}
                row.update(r, **mfu(r["galaxies_per_s"], fwd, prec))
                res["predict"].append(row)
                log(f"  predict_on_batch {r['galaxies_per_s']:.1f} galaxies/s")
                if backend.name() == "jax":
                    r = time_predict_resident(
                        model, data_x, batch, s["predict_s"], s["predict_max"]
                    )
                    row = {
                        "precision": prec,
                        "batch": batch,
                        "path": "jit forward, device-resident",
                    }
                    row.update(r, **mfu(r["galaxies_per_s"], fwd, prec))
                    res["predict"].append(row)
                    log(f"  resident jit {r['galaxies_per_s']:.1f} galaxies/s")
                del model
                gc.collect()

        for prec in run_precs:
            for i, b in enumerate(s["train_batches"]):
                train_part(prec, b, keep=(i == 0), resident=True)
            predict_part(prec)

        # ---- the feed alone, then the pz-train loop fed by it
        sel = None
        with run.part("feed table"):
            from photoz_tools.model import data
            from photoz_tools.pdf import Bins

            path = Path(tmp.name) / "train.parquet"
            wt = write_feed_table(path, s["feed_rows"])
            sel = data.select_rows(str(path), Bins.default(), val_size=0)
            res["feed_table"] = {
                "rows": s["feed_rows"],
                "mb": path.stat().st_size / 1e6,
                "write_s": wt,
                "buffer_rows": s["feed_buffer"],
            }
        if sel is not None:
            for w in s["feed_workers"]:
                if not run.fits(f"feed workers {w}", s["feed_s"] + 5):
                    continue
                with run.part(f"feed workers {w}"):
                    r = time_feed(
                        sel, s["feed_batch"], w, s["feed_s"], s["feed_buffer"], s["feed_max"]
                    )
                    res["feed"].append(r)
                    log(f"  {r['galaxies_per_s']:.0f} galaxies/s")
            for prec, (model, batch) in list(kept.items()):
                what = f"e2e train {prec} batch {batch}"
                if not run.fits(what, s["e2e_s"] + 15):
                    continue
                with run.part(what), compute_policy(prec, emulate):
                    r = time_e2e(
                        model,
                        sel,
                        batch,
                        s["e2e_workers"],
                        s["e2e_s"],
                        s["feed_buffer"],
                        s["e2e_log_every"],
                    )
                    r["precision"] = prec
                    r.update(mfu(r["galaxies_per_s"], 3 * fwd, prec))
                    res["e2e"].append(r)
                    log(f"  {r['galaxies_per_s']:.1f} galaxies/s")
        kept.clear()
        gc.collect()

        # ---- larger batches, if the budget allows
        for b in s["more_batches"]:
            for prec in run_precs:
                train_part(prec, b, keep=False, resident=False)
    except KeyboardInterrupt:  # timeout -s INT: report what was measured
        res["errors"].append(f"interrupted after {elapsed():.0f} s (the hard time limit)")
        log("interrupted: writing what was measured")

    if backend.name() == "jax":
        try:
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                res["device_peak_gb"] = stats["peak_bytes_in_use"] / 1e9
        except Exception:  # noqa: BLE001 - CPU devices have no memory stats
            pass
    res["machine"]["load_average_end"] = os.getloadavg()[0]
    run.save()
    tmp.cleanup()
    print(json.dumps(res, indent=1, default=float))
    print(table(res))
    del keras


def table(res: dict[str, Any]) -> str:
    m = res.get("model", {})
    lines = [
        "",
        f"{m.get('arch')} ({m.get('trainable_params', 0):,} params, "
        f"{m.get('gflop_per_galaxy_forward', float('nan')):.2f} GFLOP/galaxy forward) on "
        f"{res['machine'].get('device_kind', res['machine']['device'])}"
        + (" [--quick]" if res.get("quick") else ""),
    ]
    pk = res.get("matmul_peak_gflops", {})
    if pk:
        lines.append(
            f"matmul peak (n={pk.get('n')}): float32 {pk.get('float32', float('nan')):,.0f} "
            f"GFLOP/s, bfloat16 {pk.get('bfloat16', float('nan')):,.0f} GFLOP/s"
        )
    lines.append("")
    head = f"{'what':44} {'prec':9} {'batch':>5} {'galaxies/s':>11} {'MFU':>7} {'MFU own':>8}"
    lines.append(head)

    def row(what, prec, batch, rate, r):
        f32 = r.get("mfu_vs_float32_peak")
        own = r.get(f"mfu_vs_{prec}_peak")
        lines.append(
            f"{what:44} {prec:9} {batch:>5} {rate:>11,.1f} "
            f"{'' if f32 is None else f'{100 * f32:6.1f}%':>7} "
            f"{'' if own is None else f'{100 * own:6.1f}%':>8}"
        )

    for r in res["train"]:
        row(f"train, {r['input']}", r["precision"], r["batch"], r["galaxies_per_s"], r)
    for r in res["e2e"]:
        row(
            f"train e2e, feed {r['workers']} workers",
            r["precision"],
            r["batch"],
            r["galaxies_per_s"],
            r,
        )
    for r in res["predict"]:
        row(f"predict, {r['path']}", r["precision"], r["batch"], r["galaxies_per_s"], r)
    for r in res["feed"]:
        lines.append(
            f"{'feed alone, ' + str(r['workers']) + ' workers':44} {'-':9} {r['batch']:>5} "
            f"{r['galaxies_per_s']:>11,.1f}   (first batch {r['first_batch_s']:.1f} s)"
        )
    for p, line in res.get("refused", {}).items():
        lines.append(f"refused {p}: {line}")
    for line in res["skipped"]:
        lines.append(f"skipped: {line}")
    for line in res["errors"]:
        lines.append(f"error: {line}")
    spent, budget = res.get("elapsed_s", 0), res.get("budget_s", 0)
    lines.append(f"elapsed {spent:.0f} s of a {budget:.0f} s budget")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
