"""Training an ensemble bundle: the plain function behind pz-train.

The recipe is the design brief's (Adam 1e-4 divided by 5 halfway, batch 128, random 90-degree
rotations and flips, sparse cross-entropy over the 180 bins, members differing by their seed).
Training runs in a work folder ``OUTPUT.partial`` that holds a checkpoint every N steps (model and
optimizer state in one ``.keras`` file, written atomically, plus a small JSON state); rerunning the
same command after a crash or ``kill -9`` resumes from there and, with the same seed on CPU,
ends with the weights the uninterrupted run would have produced. When every member is done, the
manifest is written and the folder is renamed to OUTPUT.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from photoz_tools import __version__
from photoz_tools.errors import PzError, PzUsageError
from photoz_tools.model import backend, bundle
from photoz_tools.pdf import Bins

# reporter(event, **info); events: plan, start, step, epoch, member, log
Reporter = Callable[..., None]


@dataclass
class Recipe:
    """Training options recorded in the manifest (and compared on resume)."""

    batch_size: int = 128
    learning_rate: float = 1e-4
    lr_drop: float = 5.0
    epochs: int | None = None
    steps: int | None = None
    augment: bool = True
    balanced: bool = False
    val_size: int = 20000
    fold: int | None = None
    members: int = 1
    seed: int = 0
    mixed_precision: bool = False
    xla: bool | None = None
    checkpoint_every: int = 200
    drop_out_of_range: bool = False


def _noop(event: str, **info: Any) -> None:
    pass


def _member_seed(seed: int, m: int) -> int:
    return int(seed) + 1000 * int(m)


def plan(
    dataset: str,
    arch: str | Path | dict = "paper",
    recipe: Recipe | None = None,
    scaling: str | None = None,
    z_col: str = "z",
    ebv_col: str = "ebv",
    image_col: str = "image",
    bins: Bins | None = None,
) -> dict[str, Any]:
    """Everything decided before training: config, row selection, steps (what --dry-run shows)."""
    from photoz_tools.model import architecture, data

    recipe = recipe or Recipe()
    bins = bins or Bins.default()
    config = (
        architecture.normalize_config(arch)
        if isinstance(arch, dict)
        else architecture.load_config(arch)
    )
    if scaling is not None:
        config["scaling"] = scaling
    config["n_bins"] = bins.n
    for name, value in (
        ("--batch-size", recipe.batch_size),
        ("--members", recipe.members),
        ("--checkpoint-every", recipe.checkpoint_every),
    ):
        if value < 1:
            raise PzUsageError(f"{name} must be at least 1 (got {value})")
    if recipe.steps is not None and recipe.epochs is not None:
        raise PzUsageError("give --steps or --epochs, not both")
    sel = data.select_rows(
        dataset,
        bins,
        z_col=z_col,
        ebv_col=ebv_col,
        image_col=image_col,
        fold=recipe.fold,
        val_size=recipe.val_size,
        seed=recipe.seed,
        drop_out_of_range=recipe.drop_out_of_range,
    )
    batch = min(recipe.batch_size, len(sel.train_rows))
    steps_per_epoch = max(1, len(sel.train_rows) // batch)
    if recipe.steps is not None:
        total = int(recipe.steps)
    else:
        total = int((recipe.epochs if recipe.epochs is not None else 30) * steps_per_epoch)
    if total < 1:
        raise PzUsageError("--steps/--epochs must give at least one step")
    return {
        "config": config,
        "selection": sel,
        "bins": bins,
        "batch_size": batch,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total,
        "recipe": recipe,
    }


def _run_key(p: dict[str, Any]) -> str:
    r = p["recipe"]
    key = {
        "config": p["config"],
        "bins": p["bins"].to_json(),
        "data": p["selection"].fingerprint,
        "recipe": {k: v for k, v in r.__dict__.items() if k not in ("checkpoint_every",)},
        "total": p["total_steps"],
        "batch": p["batch_size"],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _compile(model, p: dict[str, Any]) -> None:
    keras = backend.import_keras()

    r: Recipe = p["recipe"]
    half = max(1, p["total_steps"] // 2)
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [half], [r.learning_rate, r.learning_rate / r.lr_drop]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        jit_compile=_jit(r.xla),
    )


def _jit(xla: bool | None) -> bool | str:
    """XLA for the training step: on request; by default wherever it pays (GPUs, and JAX, which
    always compiles), but not on TensorFlow's CPU, where it measured slower here (9.5 against
    15.5 galaxies/s for the paper network, BENCHMARKS.md) and costs ~20 s to compile."""
    if xla is not None:
        return bool(xla)
    if backend.name() != "tensorflow" or backend.has_gpu():
        return "auto"
    return False


def _save_atomic(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def evaluate(
    model, selection, rows: np.ndarray, bins: Bins, batch_size: int = 256, image_col: str = "image"
) -> dict[str, float]:
    """Validation loss, point metrics, mean CRPS and PIT flatness of one model on `rows`."""
    from photoz_tools import metrics, pdf
    from photoz_tools.model import data
    from photoz_tools.model.predict import predict_padded

    if len(rows) == 0:
        return {}
    pdfs, zs = [], []
    batch_size = min(batch_size, len(rows))  # one traced shape per run
    for r, x in data.iter_eval_batches(selection, rows, image_col):
        pdfs.append(predict_padded(model, x["image"], x["ebv"], batch_size).astype(np.float64))
        zs.append(selection.z[r])
    p = np.concatenate(pdfs)
    z = np.concatenate(zs)
    lab = np.asarray(bins.index(z))
    loss = float(-np.mean(np.log(np.maximum(p[np.arange(len(lab)), lab], 1e-12))))
    summ = pdf.summarize(p, bins)
    pit, crps = pdf.pit_crps(p, bins, z)
    stats = metrics.statistics(summ["zphot"], z, crps=crps, pit=pit, width68=summ["width68"])
    return {"loss": loss, **{k: float(v) for k, v in stats.items()}}


def train(
    dataset: str,
    output: str | Path,
    arch: str | Path | dict = "paper",
    recipe: Recipe | None = None,
    *,
    scaling: str | None = None,
    z_col: str = "z",
    ebv_col: str = "ebv",
    image_col: str = "image",
    restart: bool = False,
    force: bool = False,
    make_default: bool = False,
    reporter: Reporter | None = None,
) -> Path:
    """Train an ensemble on `dataset` and write the bundle folder `output`; returns its path.

    Resumes from ``OUTPUT.partial`` when a previous run with the same settings was interrupted.
    """
    report = reporter or _noop
    recipe = recipe or Recipe()
    output = Path(output)
    if output.exists() and not force:
        raise PzError(f"{output}: already exists; choose another -o or pass --force to replace it")
    p = plan(dataset, arch, recipe, scaling, z_col, ebv_col, image_col)
    report("plan", **p)
    backend.configure(recipe.seed, deterministic=False)
    keras = backend.import_keras()

    from photoz_tools.model import architecture, feed

    if recipe.mixed_precision:
        if backend.has_gpu():
            keras.mixed_precision.set_dtype_policy("mixed_float16")
        else:
            report("log", message="--mixed-precision ignored: no GPU (float32 on CPU)")
    work = output.with_name(output.name + ".partial")
    key = _run_key(p)
    run_file = work / "run.json"
    if work.exists():
        old = json.loads(run_file.read_text()).get("key") if run_file.is_file() else None
        if restart or old is None:
            shutil.rmtree(work)
        elif old != key:
            raise PzError(
                f"{work} holds an interrupted run with other settings or data; rerun "
                "the same command to resume it, or pass --restart to discard it"
            )
        else:
            report("log", message=f"resuming from {work}")
    work.mkdir(parents=True, exist_ok=True)
    bundle.write_json_atomic(run_file, {"key": key, "dataset": str(dataset)})

    sel, bins, cfg = p["selection"], p["bins"], p["config"]
    total, spe = p["total_steps"], p["steps_per_epoch"]
    members_info = []
    for m in range(recipe.members):
        mseed = _member_seed(recipe.seed, m)
        final = work / f"member_{m}.keras"
        state_file = work / f"member_{m}.state.json"
        ckpt = work / f"member_{m}.ckpt.keras"
        state = json.loads(state_file.read_text()) if state_file.is_file() else {}
        if final.is_file() and state.get("done"):
            members_info.append(state["info"])
            report("member", member=m, members=recipe.members, info=state["info"], skipped=True)
            continue
        backend.configure(mseed)
        if ckpt.is_file() and state.get("step"):
            model = keras.saving.load_model(ckpt, safe_mode=True)
            step = int(state["step"])
            history = state.get("history", [])
        else:
            model = architecture.build_model(cfg, seed=mseed)
            _compile(model, p)
            step, history = 0, []
        batches = feed.TrainingBatches(
            sel,
            p["batch_size"],
            seed=mseed,
            augment=recipe.augment,
            balanced=recipe.balanced,
            image_col=image_col,
            bins=bins,
        )
        report("start", member=m, members=recipe.members, step=step, total=total)
        it, it_epoch = None, -1
        t0, n0 = time.perf_counter(), step
        loss_ema = None
        while step < total:
            epoch, i = divmod(step, spe)
            if it is None or it_epoch != epoch:
                it, it_epoch = batches.iterate(epoch, start=i), epoch
            x, y, w = next(it)
            logs = model.train_on_batch(x, y, sample_weight=w, return_dict=True)
            loss = float(logs["loss"])
            if not math.isfinite(loss):
                raise PzError(
                    f"member {m}: the loss became {loss} at step {step + 1}; lower "
                    "--lr or check the dataset's images"
                )
            loss_ema = loss if loss_ema is None else 0.9 * loss_ema + 0.1 * loss
            step += 1
            rate = (step - n0) * p["batch_size"] / max(time.perf_counter() - t0, 1e-9)
            report("step", member=m, step=step, total=total, loss=loss_ema, rate=rate)
            end_epoch = step % spe == 0
            if end_epoch or step == total:
                val = evaluate(model, sel, sel.val_rows, bins, image_col=image_col)
                history.append(
                    {
                        "epoch": (step - 1) // spe + 1,
                        "step": step,
                        "loss": loss_ema,
                        **{f"val_{k}": v for k, v in val.items()},
                    }
                )
                report("epoch", member=m, **history[-1])
            if end_epoch or step == total or step % recipe.checkpoint_every == 0:
                _save_atomic(model, ckpt)
                bundle.write_json_atomic(state_file, {"step": step, "history": history})
        val = history[-1] if history else {}
        clean = architecture.build_model(cfg, seed=mseed)  # no optimizer state in the bundle
        clean.set_weights(model.get_weights())
        _save_atomic(clean, final)
        info = {
            "file": final.name,
            "sha256": bundle.sha256_file(final),
            "seed": mseed,
            "steps": total,
            "validation": {k[4:]: v for k, v in val.items() if k.startswith("val_")},
            "history": history,
        }
        bundle.write_json_atomic(state_file, {"step": step, "done": True, "info": info})
        ckpt.unlink(missing_ok=True)
        members_info.append(info)
        report("member", member=m, members=recipe.members, info=info, skipped=False)
        keras.backend.clear_session()

    manifest = {
        "format": bundle.FORMAT,
        "format_version": bundle.FORMAT_VERSION,
        "created_by": f"photoz-tools {__version__}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "architecture": cfg,
        "bins": [float(e) for e in bins.edges],
        "inputs": bundle.INPUTS,
        "scaling": cfg["scaling"],
        "data": {
            "path": str(dataset),
            "fingerprint": sel.fingerprint,
            "rows": sel.n_rows,
            "train_rows": int(len(sel.train_rows)),
            "val_rows": int(len(sel.val_rows)),
            "validation": sel.val_source,
            "held_out_test_rows": sel.n_test,
            "dropped_out_of_range": sel.n_dropped,
            "z_column": z_col,
            "ebv_column": ebv_col,
            "image_column": image_col,
        },
        "recipe": {
            **recipe.__dict__,
            "batch_size": p["batch_size"],
            "total_steps": total,
            "steps_per_epoch": spe,
            "optimizer": "Adam",
            "loss": "sparse categorical cross-entropy",
            "augmentation": "random 90-degree rotations and flips" if recipe.augment else "none",
        },
        "seeds": [mi["seed"] for mi in members_info],
        "members": [{k: v for k, v in mi.items() if k != "history"} for mi in members_info],
        "history": [mi["history"] for mi in members_info],
        "versions": {"photoz-tools": __version__, **backend.versions()},
        "device": backend.device_description(),
    }
    for f in work.glob("*.state.json"):
        f.unlink()
    run_file.unlink(missing_ok=True)
    bundle.write_json_atomic(work / bundle.MANIFEST, manifest)
    if output.exists():
        shutil.rmtree(output)
    os.replace(work, output)
    if make_default:
        bundle.set_default(output)
    return output
