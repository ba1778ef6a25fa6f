"""pz-train's steady-state training rate against a bare Keras loop on one in-memory batch
(issue 9, "A loop that never makes the accelerator wait").

    .venv/bin/python benchmarks/train_loop.py [--rows 4096] [--repeats 3] [--steps 220] \
        [--short 20] [--batch 128] [--variant 'workers1:--workers 1'] \
        [--variant 'buf64:PZ_TRAIN_BUFFER_MB=64'] [--breakdown 'default:'] \
        [--breakdown 'log1000:log_every=1000'] [--profile-validate] [--workdir /tmp/pz_train_loop]

The dataset: --rows generated galaxies (tests/model/conftest.py's write_dataset, loaded by path),
written once through pz-pack (default options: 5 folds, fold 0 held out as test, 10 % of the rest
as validation; rows in a seeded random order, marked shuffled, so pz-train reads the table as it
is). It is kept in --workdir and reused by later runs and by benchmarks/feed_speed.py.

pz-train: the real command, `.venv/bin/pz-train DATA -o OUT --arch tiny --steps N --batch-size
128 -q [variant args]`, timed as a subprocess for N = --short and N = --steps; its rate is
(steps - short) x batch / (wall(steps) - wall(short)): process start, TensorFlow import, the first
step's tracing and the final save cancel in the difference; validation at each epoch's end,
the loss read every 50 steps and the wall-clock checkpoint policy (every 10 minutes: none fire in
runs this short) stay in.

bare: a separate subprocess loads member_0.keras of a bundle written above (safe_mode), takes its
logits model, compiles it with photoz_tools.model.train.compile_for_training (Adam +
SparseCategoricalCrossentropy(from_logits=True), jit_compile=False on TensorFlow's CPU) and runs
train_on_batch on ONE in-memory batch of --batch training rows: --bare-warmup steps, then
(steps - short) timed steps. It also times pz-train's own step function (backend.TrainStep: the
loss read every 50 steps) on the same batch, which separates the feed from the step call.

Runs are interleaved (each repeat: every variant's short and long run, then bare). Ratios use
the medians. --breakdown runs pz-train's training function in-process (one subprocess each) with
timers around the loop's parts (waiting for a batch, the step, reading the loss, validation,
saving) and reports them per step; its spec is NAME:key=value,... with keys workers, log_every,
buffer_mb. --profile-validate times train.evaluate (the validation at each epoch's end) on the
table's validation rows and its parts (reading, prediction, metrics), with a cProfile.

Prints one JSON object and a short table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# --------------------------------------------------------------------------- machine, data


def machine() -> dict:
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu_model": model or platform.processor(),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "python": platform.python_version(),
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def make_dataset(workdir: Path, rows: int, seed: int = 1) -> dict:
    """The packed, shuffled table of `rows` generated galaxies (made once, then reused)."""
    workdir.mkdir(parents=True, exist_ok=True)
    packed = workdir / f"packed_{rows}.parquet"
    info = {"path": str(packed), "rows": rows, "generator": "tests/model/conftest.py"}
    if packed.is_file():
        info["made"] = "reused"
        return info
    spec = importlib.util.spec_from_file_location(
        "pz_bench_conftest", ROOT / "tests" / "model" / "conftest.py"
    )
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    raw = workdir / f"raw_{rows}.parquet"
    conf.write_dataset(raw, rows, seed=seed)
    pack = BIN / "pz-pack"
    if pack.exists():
        tmp = workdir / f".packed_{rows}.tmp.parquet"
        subprocess.run([str(pack), str(raw), "-o", str(tmp), "-q"], check=True)
        os.replace(tmp, packed)
        raw.unlink()
        info["made"] = "pz-pack (default options: shuffled, split column)"
    else:  # no pz-pack: pz-train will write a shuffled copy in its work folder
        os.replace(raw, packed)
        info["made"] = "write_dataset only (pz-pack missing: NOT marked shuffled)"
    return info


def shuffled_mark(path: str) -> bool:
    from photoz_tools import shuffle, tables

    with tables.open_table(path) as reader:
        return bool(shuffle.is_shuffled(reader.metadata))


def plan_info(path: str, batch: int) -> dict:
    from photoz_tools.model import data
    from photoz_tools.pdf import Bins

    sel = data.select_rows(path, Bins.default())
    import pyarrow.parquet as pq

    md = pq.ParquetFile(path).metadata
    return {
        "train_rows": int(len(sel.train_rows)),
        "val_rows": int(len(sel.val_rows)),
        "val_source": sel.val_source,
        "steps_per_epoch": max(1, len(sel.train_rows) // batch),
        "row_groups": md.num_row_groups,
        "rows_per_group": md.row_group(0).num_rows,
        "marked_shuffled": shuffled_mark(path),
    }


# --------------------------------------------------------------------------- pz-train runs


def parse_variant(spec: str) -> tuple[str, list[str], dict[str, str]]:
    """'NAME:args' where args are pz-train options and KEY=VALUE environment settings."""
    name, _, rest = spec.partition(":")
    args, env = [], {}
    for tok in shlex.split(rest):
        key, eq, value = tok.partition("=")
        if eq and key.isupper():
            env[key] = value
        else:
            args.append(tok)
    return name or "default", args, env


def run_pz_train(data: str, out: Path, steps: int, batch: int, args: list[str], env: dict) -> float:
    for p in (out, out.with_name(out.name + ".partial")):
        shutil.rmtree(p, ignore_errors=True)
    cmd = [str(BIN / "pz-train"), data, "-o", str(out), "--arch", "tiny", "--steps", str(steps)]
    cmd += ["--batch-size", str(batch), "-q", *args]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} failed:\n{r.stderr}")
    return wall


def command_text(steps: int, batch: int, args: list[str], env: dict) -> str:
    pre = " ".join(f"{k}={v}" for k, v in env.items())
    cmd = f".venv/bin/pz-train DATA -o OUT --arch tiny --steps {steps} --batch-size {batch} -q"
    return " ".join(x for x in (pre, cmd, shlex.join(args)) if x)


# --------------------------------------------------------------------------- bare loop


def bare_child(bundle: str, data: str, batch: int, warmup: int, steps: int, log_every: int) -> dict:
    """In a fresh process: train_on_batch (and TrainStep) on one in-memory batch."""
    from photoz_tools.model import architecture, backend  # noqa: F401 (registers layers)
    from photoz_tools.model import data as d
    from photoz_tools.model import train as tr
    from photoz_tools.pdf import Bins

    keras = backend.import_keras()
    backend.configure(0)
    member = json.loads((Path(bundle) / "manifest.json").read_text())["members"][0]["file"]
    model = keras.saving.load_model(Path(bundle) / member, safe_mode=True)
    lm = architecture.logits_model(model)
    p = {"recipe": tr.Recipe(learning_rate=1e-4, warmup_steps=0), "total_steps": warmup + steps}
    tr.compile_for_training(lm, p)
    sel = d.select_rows(data, Bins.default(), val_size=0)
    rows = sel.train_rows[:batch]
    ims = np.concatenate([im for _, im in d.iter_images(data, rows)])
    x = {"image": ims, "ebv": sel.ebv[rows].reshape(-1, 1)}
    y = sel.labels[rows]
    for _ in range(warmup):
        lm.train_on_batch(x, y)
    t = time.perf_counter()
    for _ in range(steps):
        lm.train_on_batch(x, y)
    tob = time.perf_counter() - t
    step = backend.TrainStep(lm)
    for _ in range(warmup):
        step(x, y)
    step.mean_loss()
    t = time.perf_counter()
    for i in range(1, steps + 1):
        step(x, y)
        if i % log_every == 0:
            step.mean_loss()
    step.mean_loss()
    ts = time.perf_counter() - t
    return {
        "train_on_batch_s": tob,
        "train_on_batch_gal_s": steps * batch / tob,
        "trainstep_s": ts,
        "trainstep_gal_s": steps * batch / ts,
        "jit_compile": str(lm.jit_compile),
    }


def run_bare(bundle: str, data: str, batch: int, warmup: int, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--_bare", bundle, data]
    cmd += ["--batch", str(batch), "--bare-warmup", str(warmup), "--bare-steps", str(steps)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bare loop failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- breakdown


def breakdown_child(data: str, out: str, steps: int, batch: int, opts: dict) -> dict:
    """In a fresh process: pz-train's train() with timers around the loop's parts."""
    import resource

    if opts.get("buffer_mb"):
        os.environ["PZ_TRAIN_BUFFER_MB"] = str(opts["buffer_mb"])
    from photoz_tools.model import backend, feed
    from photoz_tools.model import train as tr

    times: dict[str, list[float]] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                times.setdefault(name, []).append(time.perf_counter() - t)

        return wrapper

    orig_init, orig_next = feed.Prefetch.__init__, feed.Prefetch.__next__

    def init(self, *a, **k):
        self._bench_first = True
        orig_init(self, *a, **k)

    def nxt(self):
        t = time.perf_counter()
        try:
            return orig_next(self)
        finally:
            key = "wait_epoch_start" if self._bench_first else "wait_batch"
            self._bench_first = False
            times.setdefault(key, []).append(time.perf_counter() - t)

    feed.Prefetch.__init__ = init
    feed.Prefetch.__next__ = nxt
    in_loop = [False]
    orig_close = feed.Prefetch.close

    def close(self):
        t = time.perf_counter()
        try:
            return orig_close(self)
        finally:
            key = "prefetch_close" if in_loop[0] else "prefetch_close_after_loop"
            times.setdefault(key, []).append(time.perf_counter() - t)

    feed.Prefetch.close = close
    backend.TrainStep.__call__ = timed("step", backend.TrainStep.__call__)
    backend.TrainStep.mean_loss = timed("read_loss", backend.TrainStep.mean_loss)
    tr.evaluate = timed("validate", tr.evaluate)
    tr._save_atomic = timed("save", tr._save_atomic)

    cpu = {}
    orig_steps = tr._Loop.steps

    def loop(self, *a, **k):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        in_loop[0] = True
        try:
            return orig_steps(self, *a, **k)
        finally:
            in_loop[0] = False
            times.setdefault("loop", []).append(time.perf_counter() - t)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu["loop_cpu_s"] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)

    tr._Loop.steps = loop
    recipe = tr.Recipe(
        batch_size=batch,
        steps=steps,
        log_every=int(opts.get("log_every", 50)),
        workers=int(opts["workers"]) if opts.get("workers") else None,
    )
    outp = Path(out)
    for p in (outp, outp.with_name(outp.name + ".partial")):
        shutil.rmtree(p, ignore_errors=True)
    t = time.perf_counter()
    tr.train(data, outp, "tiny", recipe)
    total = time.perf_counter() - t
    shutil.rmtree(outp, ignore_errors=True)
    loop_s = sum(times["loop"])
    step = times["step"]
    parts = {
        "first_step_s": step[0],
        "steps_s": sum(step[1:]),
        "wait_batch_s": sum(times.get("wait_batch", [])),
        "wait_epoch_start_s": sum(times.get("wait_epoch_start", [])),
        "read_loss_s": sum(times.get("read_loss", [])),
        "validate_s": sum(times.get("validate", [])),
        "prefetch_close_s": sum(times.get("prefetch_close", [])),
    }
    parts["other_s"] = loop_s - sum(parts.values())
    n = steps - 1
    return {
        "opts": opts,
        "steps": steps,
        "total_s": total,
        "loop_s": loop_s,
        "loop_cpu_s": cpu.get("loop_cpu_s"),
        "epochs_started": len(times.get("wait_epoch_start", [])),
        "validations": len(times.get("validate", [])),
        "loss_reads": len(times.get("read_loss", [])),
        **parts,
        "ms_per_step_after_first": {
            "step": 1e3 * parts["steps_s"] / n,
            "wait_batch": 1e3 * parts["wait_batch_s"] / n,
            "wait_epoch_start": 1e3 * parts["wait_epoch_start_s"] / n,
            "read_loss": 1e3 * parts["read_loss_s"] / n,
            "validate": 1e3 * parts["validate_s"] / n,
            "prefetch_close": 1e3 * parts["prefetch_close_s"] / n,
            "other": 1e3 * parts["other_s"] / n,
        },
        "step_ms_median": 1e3 * statistics.median(step[1:]),
        "wait_batch_ms_median": 1e3 * statistics.median(times.get("wait_batch", [0.0])),
        "wait_epoch_start_ms_each": [round(1e3 * x, 1) for x in times.get("wait_epoch_start", [])],
        "validate_s_each": [round(x, 3) for x in times.get("validate", [])],
        "gal_s_loop_after_first": n * batch / (loop_s - parts["first_step_s"]),
        "gal_s_loop_without_validation": n
        * batch
        / (loop_s - parts["first_step_s"] - parts["validate_s"]),
        "gal_s_loop_without_validation_and_epoch_start": n
        * batch
        / (loop_s - parts["first_step_s"] - parts["validate_s"] - parts["wait_epoch_start_s"]),
    }


def validate_child(bundle: str, data: str) -> dict:
    """In a fresh process: train.evaluate on the validation rows (as pz-train calls it at each
    epoch's end), then its parts one by one, and a cProfile of one call."""
    import cProfile
    import pstats

    from photoz_tools import metrics, pdf
    from photoz_tools.model import architecture, backend
    from photoz_tools.model import data as d
    from photoz_tools.model import train as tr
    from photoz_tools.model.predict import predict_padded
    from photoz_tools.pdf import Bins

    keras = backend.import_keras()
    member = json.loads((Path(bundle) / "manifest.json").read_text())["members"][0]["file"]
    lm = architecture.logits_model(keras.saving.load_model(Path(bundle) / member, safe_mode=True))
    bins = Bins.default()
    sel = d.select_rows(data, bins)
    rows = sel.val_rows
    out: dict = {"val_rows": int(len(rows)), "table_rows": sel.n_rows}
    t = time.perf_counter()
    tr.evaluate(lm, sel, rows, bins, logits=True)
    out["evaluate_first_s"] = time.perf_counter() - t
    evals = []
    for _ in range(2):
        t = time.perf_counter()
        tr.evaluate(lm, sel, rows, bins, logits=True)
        evals.append(time.perf_counter() - t)
    out["evaluate_s"] = evals
    bs = min(256, len(rows))
    # the read alone, and what it decodes
    t = time.perf_counter()
    chunks = [(r, x) for r, x in d.iter_eval_batches(sel, rows)]
    out["read_s"] = time.perf_counter() - t
    out["read_chunks"] = len(chunks)
    out["table_rows_decoded"] = int(min(sel.n_rows, 1024 * ((int(rows[-1]) // 1024) + 1)))
    padded = sum(-(-len(r) // bs) * bs for r, _ in chunks)
    out["images_through_the_network"] = int(padded)
    t = time.perf_counter()
    outs = [predict_padded(lm, x["image"], x["ebv"], bs) for _, x in chunks]
    out["predict_chunked_s"] = time.perf_counter() - t
    images = np.concatenate([x["image"] for _, x in chunks])
    ebv = np.concatenate([x["ebv"] for _, x in chunks])
    t = time.perf_counter()
    predict_padded(lm, images, ebv, bs)
    out["predict_contiguous_s"] = time.perf_counter() - t
    out["images_contiguous"] = int(-(-len(images) // bs) * bs)
    t = time.perf_counter()
    p = tr.softmax(np.concatenate(outs))
    z = np.concatenate([sel.z[r] for r, _ in chunks])
    summ = pdf.summarize(p, bins)
    pit, crps = pdf.pit_crps(p, bins, z)
    metrics.statistics(summ["zphot"], z, crps=crps, pit=pit, width68=summ["width68"])
    out["metrics_s"] = time.perf_counter() - t
    prof = cProfile.Profile()
    prof.enable()
    tr.evaluate(lm, sel, rows, bins, logits=True)
    prof.disable()
    st = pstats.Stats(prof)
    top = sorted(st.stats.items(), key=lambda kv: -kv[1][3])
    out["cprofile_top_cumtime"] = [
        {
            "function": f"{Path(f).name}:{ln}({fn})",
            "calls": v[1],
            "tottime_s": round(v[2], 3),
            "cumtime_s": round(v[3], 3),
        }
        for (f, ln, fn), v in top[:30]
    ]
    return out


def run_validate(bundle: str, data: str) -> dict:
    cmd = [sys.executable, __file__, "--_validate", bundle, data]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"validation profile failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def parse_breakdown(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    opts = {}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        opts[k.strip()] = v.strip()
    return name or "default", opts


def run_breakdown(data: str, out: Path, steps: int, batch: int, opts: dict) -> dict:
    cmd = [sys.executable, __file__, "--_breakdown", data, str(out), json.dumps(opts)]
    cmd += ["--steps", str(steps), "--batch", str(batch)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"breakdown failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=4096, help="generated galaxies in the table")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=220, help="the long pz-train run")
    ap.add_argument("--short", type=int, default=20, help="the short pz-train run")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--bare-warmup", type=int, default=20)
    ap.add_argument("--bare-steps", type=int, default=None, help="default: steps - short")
    ap.add_argument(
        "--variant",
        action="append",
        default=None,
        help="NAME:ARGS, pz-train options and KEY=VALUE environment (repeatable); "
        "'default:' is always run first",
    )
    ap.add_argument(
        "--breakdown",
        action="append",
        default=[],
        help="NAME:key=value,... (workers, log_every, buffer_mb): an instrumented in-process run",
    )
    ap.add_argument("--no-bare", action="store_true")
    ap.add_argument(
        "--profile-validate",
        action="store_true",
        help="time train.evaluate (pz-train's per-epoch validation) and its parts",
    )
    ap.add_argument("--workdir", default="/tmp/pz_train_loop")
    ap.add_argument("--json-out", default=None, help="also write the JSON object here")
    ap.add_argument("--_bare", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--_breakdown", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--_validate", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    timed_steps = a.steps - a.short
    bare_steps = a.bare_steps or timed_steps
    if a._bare:
        print(json.dumps(bare_child(*a._bare, a.batch, a.bare_warmup, bare_steps, 50)))
        return
    if a._validate:
        print(json.dumps(validate_child(*a._validate)))
        return
    if a._breakdown:
        data, out, opts = a._breakdown
        print(json.dumps(breakdown_child(data, out, a.steps, a.batch, json.loads(opts))))
        return

    work = Path(a.workdir)
    result: dict = {"machine": machine(), "load_before": loadavg()}
    ds = make_dataset(work, a.rows)
    ds.update(plan_info(ds["path"], a.batch))
    result["dataset"] = ds
    data = ds["path"]
    variants = [parse_variant(v) for v in ["default:", *(a.variant or [])]]
    result["commands"] = {
        name: [command_text(n, a.batch, args, env) for n in (a.short, a.steps)]
        for name, args, env in variants
    }
    result["config"] = {
        "steps": a.steps,
        "short": a.short,
        "batch": a.batch,
        "repeats": a.repeats,
        "bare_warmup": a.bare_warmup,
        "bare_steps": bare_steps,
    }
    runs: dict[str, dict[str, list[float]]] = {
        name: {"short_s": [], "long_s": [], "gal_s": []} for name, _, _ in variants
    }
    bare_runs: list[dict] = []
    bundle = None
    for rep in range(a.repeats):
        for name, args, env in variants:
            out_s = work / f"bundle_{name}_short"
            out_l = work / f"bundle_{name}_long"
            ws = run_pz_train(data, out_s, a.short, a.batch, args, env)
            wl = run_pz_train(data, out_l, a.steps, a.batch, args, env)
            r = runs[name]
            r["short_s"].append(ws)
            r["long_s"].append(wl)
            r["gal_s"].append(timed_steps * a.batch / (wl - ws))
            print(
                f"[{rep + 1}/{a.repeats}] pz-train {name}: {a.short} steps {ws:.2f} s, "
                f"{a.steps} steps {wl:.2f} s -> {r['gal_s'][-1]:.0f} galaxies/s",
                file=sys.stderr,
            )
            if name == "default":
                bundle = str(out_l)
        if not a.no_bare:
            b = run_bare(bundle, data, a.batch, a.bare_warmup, bare_steps)
            bare_runs.append(b)
            print(
                f"[{rep + 1}/{a.repeats}] bare: train_on_batch {b['train_on_batch_gal_s']:.0f}, "
                f"TrainStep {b['trainstep_gal_s']:.0f} galaxies/s",
                file=sys.stderr,
            )
    summary: dict = {}
    for name, r in runs.items():
        if not r["gal_s"]:  # --repeats 0
            continue
        s = {
            "short_s_median": med(r["short_s"]),
            "long_s_median": med(r["long_s"]),
            "gal_s_median": med(r["gal_s"]),
            "gal_s_from_median_walls": timed_steps
            * a.batch
            / (med(r["long_s"]) - med(r["short_s"])),
            "runs": {k: [round(x, 3) for x in v] for k, v in r.items()},
        }
        summary[name] = s
    result["pz_train"] = summary
    if bare_runs:
        tob = med([b["train_on_batch_gal_s"] for b in bare_runs])
        ts = med([b["trainstep_gal_s"] for b in bare_runs])
        result["bare"] = {
            "train_on_batch_gal_s_median": tob,
            "trainstep_gal_s_median": ts,
            "runs": bare_runs,
        }
        for name in summary:
            summary[name]["ratio_to_bare_train_on_batch"] = summary[name]["gal_s_median"] / tob
            summary[name]["ratio_to_bare_trainstep"] = summary[name]["gal_s_median"] / ts
    if a.breakdown:
        bd = {}
        for spec in a.breakdown:
            name, opts = parse_breakdown(spec)
            bd[name] = run_breakdown(data, work / f"bundle_bd_{name}", a.steps, a.batch, opts)
            print(f"breakdown {name}: {bd[name]['ms_per_step_after_first']}", file=sys.stderr)
        result["breakdown"] = bd
    if a.profile_validate:
        if bundle is None:  # --repeats 0: the last run's bundle, or a short one trained now
            bundle = str(work / "bundle_default_long")
            if not (Path(bundle) / "manifest.json").is_file():
                run_pz_train(data, Path(bundle), a.short, a.batch, [], {})
        v = run_validate(bundle, data)
        result["validate"] = v
        print(f"validation: { ({k: v[k] for k in v if k.endswith('_s')}) }", file=sys.stderr)
    result["load_after"] = loadavg()
    text = json.dumps(result, indent=1)
    print(text)
    if a.json_out:
        Path(a.json_out).write_text(text)

    print()
    print(f"{'run':<28} {'galaxies/s (median)':>20} {'per run':>28} {'vs bare':>8}")
    for name, s in summary.items():
        per = ", ".join(f"{x:.0f}" for x in s["runs"]["gal_s"])
        ratio = s.get("ratio_to_bare_train_on_batch")
        rtxt = f"{100 * ratio:.0f} %" if ratio is not None else "-"
        print(f"{'pz-train ' + name:<28} {s['gal_s_median']:>20.0f} {per:>28} {rtxt:>8}")
    if bare_runs:
        per = ", ".join(f"{b['train_on_batch_gal_s']:.0f}" for b in bare_runs)
        print(f"{'bare train_on_batch':<28} {tob:>20.0f} {per:>28} {'100 %':>8}")
        per = ", ".join(f"{b['trainstep_gal_s']:.0f}" for b in bare_runs)
        print(f"{'bare TrainStep':<28} {ts:>20.0f} {per:>28} {'':>8}")
    for name, b in result.get("breakdown", {}).items():
        ms = b["ms_per_step_after_first"]
        print(
            f"breakdown {name}: ms/step: "
            + ", ".join(f"{k} {v:.1f}" for k, v in ms.items())
            + f"; loop {b['gal_s_loop_after_first']:.0f} galaxies/s "
            f"({b['gal_s_loop_without_validation']:.0f} without validation, "
            f"{b['gal_s_loop_without_validation_and_epoch_start']:.0f} also without the "
            f"epoch-start waits), CPU {b['loop_cpu_s'] / b['loop_s']:.2f} cores"
        )
    if "validate" in result:
        v = result["validate"]
        print(
            f"validation of {v['val_rows']} rows: evaluate "
            f"{statistics.median(v['evaluate_s']):.2f} s"
            f" (first {v['evaluate_first_s']:.2f} s); read {v['read_s']:.2f} s "
            f"({v['table_rows_decoded']} table rows decoded, {v['read_chunks']} chunks); predict "
            f"{v['predict_chunked_s']:.2f} s "
            f"({v['images_through_the_network']} images with padding)"
            f" vs {v['predict_contiguous_s']:.2f} s contiguous ({v['images_contiguous']}); "
            f"metrics {v['metrics_s']:.2f} s"
        )
    print(f"load average before {result['load_before']}, after {result['load_after']}")


if __name__ == "__main__":
    main()
