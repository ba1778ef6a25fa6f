"""Learning curves of the `small` variant (issue 9): held-out sigma_MAD against training steps for
the input scalings and the learning-rate schedule (Adam rate, warm-up; the drop by 5 at the
halfway step is always on), on the generated toy galaxies of the test suite.

    .venv/bin/python benchmarks/learning_curves.py [--n 2800] [--steps 200] [--seeds 0 1]
        [--lrs 1e-3 3e-3 1e-4] [--scalings none signed_sqrt] [--warmup 50]
        [--budget-min 35] [--json out.json]

The runs of benchmarks/learning_curves.md (a contended 2-core machine):

    .venv/bin/python benchmarks/learning_curves.py --steps 200 --seeds 0 1 --budget-min 35
    .venv/bin/python benchmarks/learning_curves.py --steps 200 --seeds 1 --lrs 3e-3 --budget-min 22

The toy is tests/model/conftest.py's (colours and sizes encode z; the median z alone gives
sigma_MAD ~0.047, a perfect colour reader ~0.005), written with 10 folds; fold 0 is held out
(never trained on or validated on), as in tests/model/test_learn.py. Each configuration is one
train() call of --steps steps of --batch galaxies (so the rate drop is at --steps/2).

The curve: at every epoch end train() evaluates its validation rows (drawn from the training
folds); this script wraps that evaluation (photoz_tools.model.train.evaluate) to evaluate the
same model on the held-out fold too, so both curves come from one run. The end point is scored
as test_learn.py does it: the saved bundle, predict_arrays on fold 0, pdf.zphot, metrics.sigma_mad
(it equals the last held-out point of the curve up to float rounding). The training loss is read
every --log-every steps (mean over those steps, cross-entropy from the logits).

Grid, in priority order: for the first seed, --scalings x --lrs with no warm-up, then per
scaling the rate with the lowest held-out end point (of the first seed) again with --warmup steps
of linear warm-up; then the same runs for the other seeds. --budget-min skips the runs that
would end past the budget (estimated from the last run's wall time; listed in the output). With
--old-check, also one run of 128 steps at 1e-3 per scaling (the old observation: "loss still
4.84 after 112 steps of 128 at lr 1e-3"), whose loss at step 112 is reported.

Prints one JSON object, then a summary table, the sigma_MAD curves and the training losses.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = 0.02


def load_conftest():
    spec = importlib.util.spec_from_file_location(
        "_toy_conftest", ROOT / "tests" / "model" / "conftest.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def first_below(curve: list[tuple[int, float]], threshold: float = THRESHOLD) -> int | None:
    for step, value in curve:
        if value < threshold:
            return step
    return None


def run_one(
    dataset: Path,
    work: Path,
    scaling: str,
    lr: float,
    warmup: int,
    seed: int,
    args,
    steps: int | None = None,
) -> dict:
    from photoz_tools import metrics, tables
    from photoz_tools.model import bundle
    from photoz_tools.model import train as T
    from photoz_tools.model.predict import predict_arrays
    from photoz_tools.pdf import zphot

    steps = steps or args.steps
    t = tables.read_table(dataset)
    folds = tables.column_array(t, "fold")
    test_rows = np.flatnonzero(folds == 0)

    held: dict[str, float] = {}
    original = T.evaluate

    def evaluate_too(model, selection, rows, bins, **kw):
        out = original(model, selection, rows, bins, **kw)
        if rows is selection.val_rows:
            h = original(model, selection, test_rows, bins, **kw)
            held.clear()
            held.update(h)
        return out

    losses: list[tuple[int, float]] = []
    epochs: list[dict] = []
    rate = [float("nan")]

    def reporter(event, **info):
        if event == "step":
            losses.append((int(info["step"]), float(info["loss"])))
            rate[0] = float(info["rate"])
        elif event == "epoch":
            epochs.append(
                {
                    "step": int(info["step"]),
                    "loss": float(info["loss"]),
                    "val_sigma_mad": float(info["val_sigma_mad"]),
                    "val_loss": float(info["val_loss"]),
                    "test_sigma_mad": float(held["sigma_mad"]),
                    "test_loss": float(held["loss"]),
                }
            )

    name = f"{scaling}_lr{lr:g}_wu{warmup}_s{seed}_n{steps}"
    out_dir = work / name
    T.evaluate = evaluate_too
    t0 = time.perf_counter()
    try:
        out = T.train(
            str(dataset),
            out_dir,
            "small",
            T.Recipe(
                steps=steps,
                batch_size=args.batch,
                learning_rate=lr,
                warmup_steps=warmup,
                val_size=args.val_size,
                fold=0,
                seed=seed,
                checkpoint_every=100000,
                log_every=args.log_every,
                xla=False,
            ),
            scaling=scaling,
            reporter=reporter,
            force=True,
        )
    finally:
        T.evaluate = original
    wall = time.perf_counter() - t0
    b = bundle.load_bundle(out)
    p = predict_arrays(
        b, tables.column_array(t, "image")[test_rows], tables.column_array(t, "ebv")[test_rows]
    )
    z = tables.column_array(t, "z")[test_rows]
    end = metrics.sigma_mad(metrics.residuals(zphot(p, b.bins), z))
    manifest = json.loads((out / "manifest.json").read_text())
    history = manifest["history"][0]
    assert [h["step"] for h in history] == [e["step"] for e in epochs]
    loss_at = dict(losses)
    rec = {
        "scaling": scaling,
        "learning_rate": lr,
        "warmup_steps": warmup,
        "seed": seed,
        "steps": steps,
        "steps_per_epoch": manifest["recipe"]["steps_per_epoch"],
        "train_rows": manifest["data"]["train_rows"],
        "val_rows": manifest["data"]["val_rows"],
        "test_rows": int(len(test_rows)),
        "wall_s": round(wall, 1),
        "train_galaxies_per_s": round(rate[0], 1),
        "test_sigma_mad_end": end,
        "val_sigma_mad_end": float(history[-1]["val_sigma_mad"]),
        "first_step_val_below": first_below([(e["step"], e["val_sigma_mad"]) for e in epochs]),
        "first_step_test_below": first_below([(e["step"], e["test_sigma_mad"]) for e in epochs]),
        "loss_at_112": loss_at.get(112),
        "losses": losses,
        "curve": epochs,
    }
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    print(
        f"# {name}: held-out end {end:.4f}, val end {rec['val_sigma_mad_end']:.4f}, {wall:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return rec


def fmt(x, spec=".4f") -> str:
    if x is None:
        return "-"
    return format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=2800, help="toy galaxies (test_learn.py: 2800)")
    ap.add_argument("--data-seed", type=int, default=21, help="toy seed (test_learn.py: 21)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--val-size", type=int, default=250)
    ap.add_argument("--log-every", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--scalings", nargs="+", default=["none", "signed_sqrt"])
    ap.add_argument(
        "--lrs",
        type=float,
        nargs="+",
        default=[1e-3, 3e-3, 1e-4],
        help="in priority order (the budget cuts the last)",
    )
    ap.add_argument("--warmup", type=int, default=50, help="warm-up of the extra runs (0: none)")
    ap.add_argument("--old-check", action="store_true", help="also 128 steps at 1e-3 per scaling")
    ap.add_argument(
        "--budget-min",
        type=float,
        default=0.0,
        help="start no run that would end past this many minutes (0: no limit)",
    )
    ap.add_argument("--json", type=Path, help="also write the JSON object here")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="learning_curves_")
    work = args.work or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    dataset = work / "toy.parquet"
    t0 = time.perf_counter()
    load_conftest().write_dataset(dataset, args.n, seed=args.data_seed, folds=10)

    from photoz_tools import metrics, tables

    t = tables.read_table(dataset)
    test = tables.column_array(t, "fold") == 0
    z = tables.column_array(t, "z")[test]
    prior = metrics.sigma_mad(metrics.residuals(np.full_like(z, np.median(z)), z))

    runs: list[dict] = []
    skipped: list[str] = []
    started = time.perf_counter()

    def go(scaling, lr, warmup, seed, steps=None):
        """Run one configuration unless the budget would be passed (runs are in priority order)."""
        label = f"{scaling} lr {lr:g} warm-up {warmup} seed {seed}"
        label += f" {steps} steps" if steps else ""
        last = max((r["wall_s"] for r in runs), default=0.0)
        if args.budget_min and time.perf_counter() - started + last > 60 * args.budget_min:
            skipped.append(label)
            print(f"# skipped (budget): {label}", file=sys.stderr, flush=True)
            return None
        r = run_one(dataset, work, scaling, lr, warmup, seed, args, steps=steps)
        runs.append(r)
        return r

    # priority order: the grid for the first seed, its warm-up runs, then the other seeds
    best: dict[str, float] = {}
    for k, seed in enumerate(args.seeds):
        for lr in args.lrs:
            for scaling in args.scalings:
                go(scaling, lr, 0, seed)
        if args.warmup > 0:
            if k == 0:
                for scaling in args.scalings:
                    done = {
                        r["learning_rate"]: r["test_sigma_mad_end"]
                        for r in runs
                        if r["scaling"] == scaling and r["warmup_steps"] == 0
                    }
                    if done:
                        best[scaling] = min(done, key=done.get)
            for scaling in args.scalings:
                if scaling in best:
                    go(scaling, best[scaling], args.warmup, seed)
    old = []
    if args.old_check:
        for scaling in args.scalings:
            r = go(scaling, 1e-3, 0, args.seeds[0], steps=128)
            if r is not None:
                old.append(runs.pop())
    import keras

    from photoz_tools.model import backend

    result = {
        "benchmark": "learning_curves",
        "arch": "small",
        "toy": {
            "n": args.n,
            "seed": args.data_seed,
            "folds": 10,
            "held_out_fold": 0,
            "held_out_rows": int(test.sum()),
            "prior_sigma_mad": prior,
        },
        "batch_size": args.batch,
        "steps": args.steps,
        "threshold": THRESHOLD,
        "versions": {"keras": keras.__version__, **backend.versions()},
        "device": backend.device_description(),
        "total_wall_s": None,
        "runs": runs,
        "old_check": old,
        "skipped_for_budget": skipped,
    }
    result["total_wall_s"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")

    print()
    print(
        f"toy: {args.n} galaxies, held-out fold 0 = {int(test.sum())} rows, prior-only "
        f"sigma_MAD {prior:.4f}; {args.steps} steps of {args.batch}, "
        f"{runs[0]['steps_per_epoch']} steps/epoch, lr/5 at step {args.steps // 2}"
    )
    print()
    print(
        "| scaling | lr | warm-up | seed | loss@112 | val end | held-out end "
        "| val<0.02 at | held-out<0.02 at | wall s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs + old:
        lr_s = f"{r['learning_rate']:g}"
        lr_s += "" if r["steps"] == args.steps else f" ({r['steps']} st)"
        print(
            f"| {r['scaling']} | {lr_s} | {r['warmup_steps']} | {r['seed']} "
            f"| {fmt(r['loss_at_112'], '.3f')} | {fmt(r['val_sigma_mad_end'])} "
            f"| {fmt(r['test_sigma_mad_end'])} | {fmt(r['first_step_val_below'], 'd')} "
            f"| {fmt(r['first_step_test_below'], 'd')} | {r['wall_s']:.0f} |"
        )
    print()
    steps = [e["step"] for e in runs[0]["curve"]]
    print("held-out sigma_MAD (val sigma_MAD) at each epoch end, step:")
    print("| scaling | lr | wu | seed | " + " | ".join(str(s) for s in steps) + " |")
    print("|---|---|---|---|" + "---|" * len(steps))
    for r in runs:
        cells = [f"{e['test_sigma_mad']:.4f} ({e['val_sigma_mad']:.4f})" for e in r["curve"]]
        print(
            f"| {r['scaling']} | {r['learning_rate']:g} | {r['warmup_steps']} | {r['seed']} | "
            + " | ".join(cells)
            + " |"
        )
    print()
    print("training loss (mean over the last log interval), step:")
    lsteps = [s for s, _ in runs[0]["losses"]]
    pick = [s for s in lsteps if s in (16, 48, 112, 200, 304, args.steps)]
    print("| scaling | lr | wu | seed | " + " | ".join(str(s) for s in pick) + " |")
    print("|---|---|---|---|" + "---|" * len(pick))
    for r in runs + old:
        d = dict(r["losses"])
        print(
            f"| {r['scaling']} | {r['learning_rate']:g} | {r['warmup_steps']} | {r['seed']} | "
            + " | ".join(fmt(d.get(s), ".3f") for s in pick)
            + " |"
        )
    if skipped:
        print("\nskipped for the time budget: " + "; ".join(skipped))
    print(f"\ntotal wall {result['total_wall_s']:.0f} s")


if __name__ == "__main__":
    main()
