"""Training an ensemble bundle: the plain function behind pz-train.

The recipe is the design brief's (Adam 1e-4 divided by 5 halfway, batch 128, random 90-degree
rotations and flips, sparse cross-entropy over the 180 bins computed from the logits, members
differing by their seed). Training runs in a work folder ``OUTPUT.partial`` that holds a
checkpoint every 10 minutes of wall clock (model and optimizer state in one ``.keras`` file,
written atomically, only the latest kept, plus a small JSON state); rerunning the same command
after a crash or ``kill -9`` resumes from there and, with the same seed on CPU, ends with the
weights the uninterrupted run would have produced. When every member is done, the manifest is
written and the folder is renamed to OUTPUT.

Members can also be trained as independent jobs (one per GPU or per machine): ``member_job=K``
trains only member K of the ``members`` ensemble, with the seed and batches it has in a full
run, so its weights equal that member's bit for bit on CPU (on GPUs, as closely as two full
runs agree: not all their kernels are deterministic); `assemble` then joins the job bundles
into the ensemble bundle, after checking that they were trained alike.
"""

from __future__ import annotations

import contextlib
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
    learning_rate: float | None = None  # None: the architecture's [train] value, else 1e-4
    warmup_steps: int | None = None  # None: the architecture's [train] value, else 0
    lr_drop: float = 5.0
    epochs: int | None = None
    steps: int | None = None
    augment: bool = True
    balanced: bool = False
    val_size: int = 20000
    fold: int | None = None
    members: int = 1
    member_job: int | None = None  # train only this member (0-based) of `members`
    seed: int = 0
    precision: str = "float32"
    xla: bool | None = None
    checkpoint_every: int | None = None  # steps; None: by wall clock
    checkpoint_minutes: float = 10.0
    log_every: int = 50  # steps between reads of the loss (each read waits for the device)
    workers: int | None = None  # feed threads (None: up to 4)
    drop_out_of_range: bool = False
    distribute: str | None = None  # "data": each batch split over the host's devices


def _noop(event: str, **info: Any) -> None:
    pass


def member_seed(seed: int, m: int) -> int:
    """Member m's seed: an independent stream of numpy's SeedSequence (seed, spawn_key=(m,)),
    the same whatever --members is, so a member trained alone equals member m of a full run."""
    state = np.random.SeedSequence(int(seed), spawn_key=(int(m),)).generate_state(1)
    return int(state[0] >> 1)


def check_member_job(recipe: Recipe) -> None:
    """Refuse a --member outside 0..members-1 (a usage error, before any work)."""
    k, n = recipe.member_job, recipe.members
    if k is None or n < 1:  # --members itself is checked by plan()
        return
    if not 0 <= k < n:
        raise PzUsageError(
            f"--member {k}: out of range; the members of --members {n} are numbered 0 to {n - 1}"
        )


def trained_members(recipe: Recipe) -> list[int]:
    """The member numbers this run trains: all of them, or the one --member job."""
    if recipe.member_job is None:
        return list(range(recipe.members))
    return [int(recipe.member_job)]


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
        ("--checkpoint-every", recipe.checkpoint_every or 1),
        ("--log-every", recipe.log_every),
        ("--workers", recipe.workers or 1),
    ):
        if value < 1:
            raise PzUsageError(f"{name} must be at least 1 (got {value})")
    check_member_job(recipe)
    if recipe.seed < 0:
        raise PzUsageError(f"--seed {recipe.seed}: must be >= 0")
    if not recipe.checkpoint_minutes > 0:
        raise PzUsageError(f"--checkpoint-minutes {recipe.checkpoint_minutes:g}: must be > 0")
    train_defaults = config.get("train", {})
    if recipe.learning_rate is None:
        recipe.learning_rate = float(train_defaults.get("learning_rate", 1e-4))
    if recipe.warmup_steps is None:
        recipe.warmup_steps = int(train_defaults.get("warmup_steps", 0))
    if not (math.isfinite(recipe.learning_rate) and recipe.learning_rate > 0):
        raise PzUsageError(f"--lr {recipe.learning_rate:g}: must be a positive number")
    if recipe.warmup_steps < 0:
        raise PzUsageError(f"--warmup {recipe.warmup_steps}: must be >= 0")
    if not (math.isfinite(recipe.lr_drop) and recipe.lr_drop > 0):
        raise PzUsageError(f"--lr-drop {recipe.lr_drop:g}: must be a positive number")
    from photoz_tools.model import precision

    if recipe.precision not in precision.PRECISIONS:
        raise PzUsageError(
            f"--precision {recipe.precision}: choose one of {', '.join(precision.PRECISIONS)}"
        )
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
        "image_col": image_col,
    }


def _run_key(p: dict[str, Any]) -> str:
    r = p["recipe"]
    key = {
        "config": p["config"],
        "bins": p["bins"].to_json(),
        "data": p["selection"].fingerprint,
        "recipe": {
            k: v
            for k, v in r.__dict__.items()
            if k
            not in ("checkpoint_every", "checkpoint_minutes", "log_every", "workers", "distribute")
            and not (k == "member_job" and v is None)  # full runs keep their earlier keys
        },
        "total": p["total_steps"],
        "batch": p["batch_size"],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def compile_for_training(model, p: dict[str, Any]) -> None:
    """Adam with the warm-up and halfway drop, cross-entropy from the logits (`model` is the
    logits model of architecture.logits_model)."""
    from photoz_tools.model.schedule import WarmupDrop

    keras = backend.import_keras()
    r: Recipe = p["recipe"]
    schedule = WarmupDrop(
        r.learning_rate, max(1, p["total_steps"] // 2), r.lr_drop, int(r.warmup_steps or 0)
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
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


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    return z / z.sum(axis=1, keepdims=True)


def evaluate(
    model,
    selection,
    rows: np.ndarray,
    bins: Bins,
    batch_size: int = 256,
    image_col: str = "image",
    logits: bool = False,
    cache: list | None = None,
    multiple: int = 1,
) -> dict[str, float]:
    """Validation loss, point metrics, mean CRPS and PIT flatness of one model on `rows`
    (a model that outputs logits when `logits`, else probabilities).

    `cache`, an empty list the caller keeps, holds the validation inputs after the first call
    when they fit in a quarter of the shuffle buffer's budget: the rows are scattered over the
    table, and reading the whole table at every epoch's end cost more than the training steps
    (benchmarks/train_loop.md). `multiple`: the batch is a multiple of it (the devices of a
    data-parallel model each take an equal share)."""
    from photoz_tools import metrics, pdf
    from photoz_tools.model import data
    from photoz_tools.model.predict import predict_padded

    if len(rows) == 0:
        return {}
    pdfs, zs = [], []
    batch_size = min(batch_size, len(rows))  # one traced shape per run
    batch_size = -(-batch_size // multiple) * multiple
    if cache:
        batches = cache
    else:
        batches = _regroup(data.iter_eval_batches(selection, rows, image_col), batch_size)
        if cache is not None:
            from photoz_tools.model.feed import buffer_bytes

            if len(rows) * data.IMAGE_BYTES <= buffer_bytes() // 4:
                batches = list(batches)
                cache.extend(batches)
    for r, x in batches:
        out = predict_padded(model, x["image"], x["ebv"], batch_size)
        pdfs.append(softmax(out) if logits else out.astype(np.float64))
        zs.append(selection.z[r])
    p = np.concatenate(pdfs)
    z = np.concatenate(zs)
    lab = np.asarray(bins.index(z))
    loss = float(-np.mean(np.log(np.maximum(p[np.arange(len(lab)), lab], 1e-12))))
    summ = pdf.summarize(p, bins)
    pit, crps = pdf.pit_crps(p, bins, z)
    stats = metrics.statistics(summ["zphot"], z, crps=crps, pit=pit, width68=summ["width68"])
    return {"loss": loss, **{k: float(v) for k, v in stats.items()}}


def _regroup(batches, size: int):
    """(rows, inputs) pairs of exactly `size` rows (the last one shorter), whatever the table's
    row groups: the validation rows are scattered, so each row group gives a few, and padding
    every few to a full batch multiplied the network's work by ~16 (benchmarks/train_loop.md)."""
    pending: list = []
    n = 0

    def flush(k: int):
        r = np.concatenate([p[0] for p in pending])
        x = {key: np.concatenate([p[1][key] for p in pending]) for key in pending[0][1]}
        head = (r[:k], {key: v[:k] for key, v in x.items()})
        rest = (r[k:], {key: v[k:] for key, v in x.items()})
        return head, rest

    for r, x in batches:
        pending.append((r, x))
        n += len(r)
        while n >= size:
            head, rest = flush(size)
            yield head
            pending, n = ([rest] if len(rest[0]) else []), len(rest[0])
    if n:
        yield flush(n)[0]


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
    With ``recipe.member_job = K`` only member K of ``recipe.members`` is trained (the bundle
    holds that one member, equal to member K of the full run); `assemble` joins such bundles.
    The run key of the work folder holds the member choice, so a member job never resumes
    (or clobbers) a full run's work folder, nor the reverse.
    """
    report = reporter or _noop
    recipe = recipe or Recipe()
    check_member_job(recipe)
    output = Path(output)
    if output.exists() and not force:
        raise PzError(f"{output}: already exists; choose another -o or pass --force to replace it")
    p = plan(dataset, arch, recipe, scaling, z_col, ebv_col, image_col)
    from photoz_tools.model import distribute, precision

    precision.check(recipe.precision)  # refuse before any work, not after the shuffle copy
    distribute.check_mode(recipe.distribute)
    report("plan", **p)
    backend.configure(recipe.seed, deterministic=False)
    p["distribution"] = dp = distribute.setup(recipe.distribute, p["batch_size"])
    if dp is not None:
        report("log", message=dp.describe())
    p["z_col"], p["ebv_col"] = z_col, ebv_col
    work = output.with_name(output.name + ".partial")
    fresh = restart or not work.exists()
    try:
        _run(p, dataset, output, work, restart, report, make_default)
    except Exception as exc:
        # A run that started here leaves nothing behind when it fails for a reason a rerun
        # would meet again (bad pixels, a diverging loss: PzError), or before its first
        # checkpoint; a crash or kill after one keeps the work folder to resume from.
        if fresh and (isinstance(exc, PzError) or not _resumable(work)):
            shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if dp is not None:
            dp.close()
    return output


def _resumable(work: Path) -> bool:
    """The work folder holds a member checkpoint or a finished member."""
    return any(work.glob("member_*.state.json"))


def _run(
    p: dict[str, Any],
    dataset: str,
    output: Path,
    work: Path,
    restart: bool,
    report: Reporter,
    make_default: bool,
) -> None:
    """train() after the plan: the work folder, the shuffled copy, the members, the bundle."""
    from photoz_tools.model import feed

    keras = backend.import_keras()
    recipe, image_col = p["recipe"], p["image_col"]
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

    sel = p["selection"]
    chunks = feed.prepare(sel, work, recipe.seed, image_col, log=lambda m: report("log", message=m))
    members_info = []
    for m in trained_members(recipe):
        info = _train_member(p, m, work, chunks, image_col, report)
        members_info.append(info)
        keras.backend.clear_session()
    _finish_bundle(p, dataset, work, output, members_info, p["z_col"], p["ebv_col"], image_col)
    if make_default:
        bundle.set_default(output)


def _train_member(
    p: dict[str, Any],
    m: int,
    work: Path,
    chunks,
    image_col: str,
    report: Reporter,
) -> dict[str, Any]:
    """Train (or resume, or skip when done) member m; returns its manifest entry."""
    from photoz_tools.model import architecture, feed, precision

    keras = backend.import_keras()
    recipe: Recipe = p["recipe"]
    sel, bins, cfg = p["selection"], p["bins"], p["config"]
    total = p["total_steps"]
    mseed = member_seed(recipe.seed, m)
    final = work / f"member_{m}.keras"
    state_file = work / f"member_{m}.state.json"
    ckpt = work / f"member_{m}.ckpt.keras"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    if final.is_file() and state.get("done"):
        report("member", member=m, members=recipe.members, info=state["info"], skipped=True)
        return state["info"]
    backend.configure(mseed)
    dp = p.get("distribution")
    with precision.policy(recipe.precision), dp.scope() if dp else contextlib.nullcontext():
        if ckpt.is_file() and state.get("step"):
            from photoz_tools.model import schedule  # noqa: F401  (registers WarmupDrop)

            model = keras.saving.load_model(ckpt, safe_mode=True)
            step = int(state["step"])
            history = state.get("history", [])
        else:
            model = architecture.logits_model(architecture.build_model(cfg, seed=mseed))
            compile_for_training(model, p)
            step, history = 0, []
        batches = feed.TrainingBatches(
            sel,
            p["batch_size"],
            seed=mseed,
            augment=recipe.augment,
            balanced=recipe.balanced,
            image_col=image_col,
            bins=bins,
            chunks=chunks,
            workers=recipe.workers,
        )
        report("start", member=m, members=recipe.members, step=step, total=total)
        run = _Loop(model, p, m, ckpt, state_file, report)
        try:
            history = run.steps(batches, step, history)
        finally:
            run.close()
    val = history[-1] if history else {}
    clean = architecture.build_model(cfg, seed=mseed)  # float32, no optimizer state
    architecture.copy_weights(model, clean)
    _save_atomic(clean, final)
    info = {
        "file": final.name,
        "sha256": bundle.sha256_file(final),
        "seed": mseed,
        "member": m,
        "steps": total,
        "output": "probabilities",
        "validation": {k[4:]: v for k, v in val.items() if k.startswith("val_")},
        "history": history,
    }
    bundle.write_json_atomic(state_file, {"step": total, "done": True, "info": info})
    ckpt.unlink(missing_ok=True)
    report("member", member=m, members=recipe.members, info=info, skipped=False)
    return info


class _Loop:
    """The step loop of one member: prefetched batches, the loss read every `log_every` steps,
    validation at each epoch's end, checkpoints by wall clock (or every N steps)."""

    def __init__(self, model, p: dict[str, Any], m: int, ckpt: Path, state_file: Path, report):
        from photoz_tools.model import feed

        self.model, self.p, self.m = model, p, m
        self.ckpt, self.state_file, self.report = ckpt, state_file, report
        self.step_fn = backend.TrainStep(model, p.get("distribution"))
        self.val_cache: list = []
        self.prefetch: feed.Prefetch | None = None

    def close(self) -> None:
        if self.prefetch is not None:
            self.prefetch.close()
            self.prefetch = None

    def steps(self, batches, step: int, history: list[dict]) -> list[dict]:
        from photoz_tools.model import feed

        p, r = self.p, self.p["recipe"]
        total, spe = p["total_steps"], p["steps_per_epoch"]
        it_epoch = -1
        t0, n0 = time.perf_counter(), step
        last_save = time.monotonic()
        loss = float("nan")
        while step < total:
            epoch, i = divmod(step, spe)
            if it_epoch != epoch:
                self.close()
                self.prefetch = feed.Prefetch(batches.iterate(epoch, start=i), depth=4)
                it_epoch = epoch
            x, y, w = next(self.prefetch)
            self.step_fn(x, y, w)
            step += 1
            end_epoch = step % spe == 0
            if step % r.log_every == 0 or end_epoch or step == total:
                loss = self.step_fn.mean_loss()
                if not math.isfinite(loss):
                    raise PzError(
                        f"member {self.m}: the loss became {loss} by step {step}; lower "
                        "--lr or check the dataset's images"
                    )
                rate = (step - n0) * p["batch_size"] / max(time.perf_counter() - t0, 1e-9)
                self.report("step", member=self.m, step=step, total=total, loss=loss, rate=rate)
            if end_epoch or step == total:
                self.step_fn.sync()
                val = evaluate(
                    self.model,
                    p["selection"],
                    p["selection"].val_rows,
                    p["bins"],
                    image_col=p["image_col"],
                    logits=True,
                    cache=self.val_cache,
                    multiple=self.p["distribution"].n if self.p.get("distribution") else 1,
                )
                history.append(
                    {
                        "epoch": (step - 1) // spe + 1,
                        "step": step,
                        "loss": loss,
                        **{f"val_{k}": v for k, v in val.items()},
                    }
                )
                self.report("epoch", member=self.m, **history[-1])
            due = (
                step % r.checkpoint_every == 0
                if r.checkpoint_every
                else time.monotonic() - last_save >= 60 * r.checkpoint_minutes
            )
            if due and step < total:
                self.step_fn.sync()
                _save_atomic(self.model, self.ckpt)  # one file, replaced: only the latest kept
                bundle.write_json_atomic(self.state_file, {"step": step, "history": history})
                last_save = time.monotonic()
        self.step_fn.sync()
        return history


def _finish_bundle(
    p: dict[str, Any],
    dataset: str,
    work: Path,
    output: Path,
    members_info: list[dict[str, Any]],
    z_col: str,
    ebv_col: str,
    image_col: str,
) -> None:
    """Write the manifest and move the work folder to `output` (atomically)."""
    recipe: Recipe = p["recipe"]
    sel, bins, cfg = p["selection"], p["bins"], p["config"]
    total, spe = p["total_steps"], p["steps_per_epoch"]
    manifest = {
        **bundle.manifest_header(cfg, bins, cfg["scaling"], f"photoz-tools {__version__}"),
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
            "loss": "sparse categorical cross-entropy from the logits",
            "augmentation": "random 90-degree rotations and flips" if recipe.augment else "none",
        },
        "seeds": [mi["seed"] for mi in members_info],
        "members": [{k: v for k, v in mi.items() if k != "history"} for mi in members_info],
        "history": [mi["history"] for mi in members_info],
        "versions": {"photoz-tools": __version__, **backend.versions()},
        "device": backend.device_description(),
        **({"distribution": p["distribution"].describe()} if p.get("distribution") else {}),
    }
    # state files, the shuffled copy, and temporaries a killed run may have left
    for f in [*work.glob("*.state.json"), *work.glob(".*"), work / "run.json"]:
        if f.is_dir():
            shutil.rmtree(f)
        else:
            f.unlink(missing_ok=True)
    bundle.write_json_atomic(work / bundle.MANIFEST, manifest)
    if output.exists():
        shutil.rmtree(output)
    os.replace(work, output)
