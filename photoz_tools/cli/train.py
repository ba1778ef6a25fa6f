"""pz-train: train the Pasquet et al. 2019 CNN ensemble on a dataset table into a model bundle."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from photoz_tools.cli.checks import bounds
from photoz_tools.cli.common import (
    DebugOpt,
    QuietOpt,
    VersionOpt,
    command_line,
    log,
    main_for,
    make_app,
    progress,
    prose,
    state,
    warn,
)

HELP = prose("""\
Train the CNN classifier ensemble of Pasquet et al. (2019) into a model bundle folder.

Reads a dataset table (image, ebv, z; optional split and fold columns, as pz-pack writes) in
streaming batches, trains --members networks with the paper's recipe (Adam 1e-4 divided by 5
halfway, batch 128, random 90-degree rotations and flips, cross-entropy from the logits), checks
them on a validation subset each epoch (loss, sigma_MAD and PIT flatness), and writes each member
as a .keras file with manifest.json.

Batches are drawn from the whole training set: a dataset pz-pack wrote in its default random
order is read as it is; any other table is first copied in a shuffled order next to the bundle
(memory bounded by $PZ_TRAIN_BUFFER_MB). A checkpoint is written every --checkpoint-minutes of
wall clock (or every --checkpoint-every steps): after a crash or kill -9, rerun the same command
and it resumes, with the same batches.

Members can be trained as independent jobs, one per GPU or machine: --member K (0-based) trains
only member K of the --members N ensemble into its own bundle, with the seed and batches it has
in the full run (on CPU the same weights bit for bit; on GPUs, whose kernels are not all
deterministic, as close as two full runs are). pz-train --assemble BUNDLE... -o BUNDLE joins
the job bundles (given as the arguments, instead of a dataset) into the ensemble: it verifies
each one, refuses bundles that differ in anything but --member (dataset, architecture, bins,
scaling, options; the line names the two bundles and the field) or that hold the same member
twice, and writes the members in their member order. Library versions and devices may differ
between jobs; each member's are recorded. With --assemble only -o, --force and --default apply.

On a host with several GPUs, --distribute data trains each member on all of them at once: every
batch is split evenly over the devices and their gradients averaged before one update, so the
steps are those of one device (up to the order of floating-point sums), only faster. It uses
keras.distribution.DataParallel on JAX and tf.distribute.MirroredStrategy on TensorFlow; the
batch size must be a multiple of the number of devices. PZ_CPU_DEVICES=N splits the CPU into N
logical devices to try it without GPUs.
""")
EXAMPLES = """\
[bold]Examples[/bold]

  pz-train dataset.parquet -o model/ --arch paper --members 6 --fold 0 --default

  pz-train dataset.parquet --arch small --epochs 50 --dry-run

  # the same 6-member ensemble as six jobs (one per GPU), then joined
  for k in 0 1 2 3 4 5; do
    CUDA_VISIBLE_DEVICES=$k pz-train dataset.parquet -o jobs/m$k/ \\
        --members 6 --member $k --fold 0 &
  done; wait
  pz-train --assemble jobs/m0/ jobs/m1/ jobs/m2/ jobs/m3/ jobs/m4/ jobs/m5/ \\
      -o model/

  pz-train --assemble jobs/m*/ -o model/ --default

  # one member on the 4 GPUs of a host, 4 x 128 galaxies a step
  pz-train dataset.parquet -o model/ --distribute data --batch-size 512
"""

app = make_app("pz-train", HELP)


@app.command(help=HELP, epilog=EXAMPLES)
def main_command(
    ctx: typer.Context,
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="DATASET | BUNDLE",
            help="The dataset table to train on (FITS or Parquet, as pz-pack writes; a file, "
            "not stdin: it is read several times); with --assemble, the member bundles to join.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str, typer.Option("-o", "--output", help="Bundle folder to write.", show_default=False)
    ] = "",
    arch: Annotated[
        str, typer.Option(help="Architecture: paper, small, tiny or a TOML file.")
    ] = "paper",
    scaling: Annotated[
        str | None,
        typer.Option(
            help="Input scaling stored in the bundle: none (the paper's) or signed_sqrt "
            "\\[default: the architecture's]",
            show_default=False,
        ),
    ] = None,
    members: Annotated[
        int, typer.Option(help="Ensemble members (paper: 6).", callback=bounds(1, 1000))
    ] = 1,
    member: Annotated[
        int | None,
        typer.Option(
            metavar="K",
            help="Train only member K (0 to N-1) of the --members N ensemble, into its own "
            "bundle, equal to member K of the full run; join the jobs with --assemble.",
            show_default=False,
            callback=bounds(0),
        ),
    ] = None,
    assemble: Annotated[
        bool,
        typer.Option(
            "--assemble",
            help="Join the member bundles named as arguments (from --member jobs, or any "
            "bundles of one run) into the bundle -o.",
        ),
    ] = False,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed (>= 0); member m draws its own stream SeedSequence(seed, (m,)).",
            callback=bounds(0),
        ),
    ] = 0,
    epochs: Annotated[
        int | None,
        typer.Option(help="Epochs \\[default: 30].", show_default=False, callback=bounds(1)),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="Training steps instead of epochs (paper: 120000).",
            show_default=False,
            callback=bounds(1),
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Galaxies per step.", callback=bounds(1, 65536))
    ] = 128,
    lr: Annotated[
        float | None,
        typer.Option(
            help="Adam learning rate, divided by 5 halfway \\[default: the architecture's: "
            "paper 1e-4, small 3e-3, tiny 1e-4].",
            show_default=False,
            callback=bounds(0, low_open=True),
        ),
    ] = None,
    warmup: Annotated[
        int | None,
        typer.Option(
            help="Steps of linear learning-rate warm-up \\[default: the architecture's: small "
            "50, else 0].",
            show_default=False,
            callback=bounds(0),
        ),
    ] = None,
    fold: Annotated[
        int | None,
        typer.Option(
            help="Hold out the rows of this fold as the test set; every other fold trains "
            "(also rows pz-pack split as test).",
            show_default=False,
            callback=bounds(0),
        ),
    ] = None,
    val_size: Annotated[
        int,
        typer.Option(
            help="Validation rows drawn when there is no split column (at most 10 %).",
            callback=bounds(0),
        ),
    ] = 20000,
    balanced: Annotated[bool, typer.Option(help="Redshift-balanced sample weights.")] = False,
    augment: Annotated[bool, typer.Option(help="Random 90-degree rotations and flips.")] = True,
    precision: Annotated[
        str,
        typer.Option(
            help="Compute precision: float32, bfloat16 (GPUs; CPUs with AMX or AVX512-BF16) or "
            "float16 (GPUs). Members are saved float32."
        ),
    ] = "float32",
    xla: Annotated[
        bool | None,
        typer.Option(
            help="XLA compilation \\[default: on GPUs and JAX, off on CPU].", show_default=False
        ),
    ] = None,
    checkpoint_minutes: Annotated[
        float,
        typer.Option(
            help="Minutes of wall clock between checkpoints.", callback=bounds(0, low_open=True)
        ),
    ] = 10.0,
    checkpoint_every: Annotated[
        int | None,
        typer.Option(
            help="Steps between checkpoints, instead of by wall clock.",
            show_default=False,
            callback=bounds(1),
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Threads reading and augmenting batches \\[default: up to 4].",
            show_default=False,
            callback=bounds(1, 64),
        ),
    ] = None,
    distribute: Annotated[
        str | None,
        typer.Option(
            help="'data': split each batch evenly over the host's GPUs (data parallel: the same "
            "steps as on one device, faster); --batch-size must be a multiple of their number.",
            show_default=False,
        ),
    ] = None,
    drop_out_of_range: Annotated[
        bool, typer.Option(help="Drop rows whose z is outside the bins instead of refusing them.")
    ] = False,
    z_col: Annotated[str, typer.Option("--z-col", help="Redshift column.")] = "z",
    ebv_col: Annotated[str, typer.Option("--ebv-col", help="E(B-V) column.")] = "ebv",
    dry_run: Annotated[
        bool, typer.Option(help="Show the model, data and plan; do not train.")
    ] = False,
    default: Annotated[
        bool, typer.Option("--default", help="Register the bundle as the default of pz-predict.")
    ] = False,
    restart: Annotated[
        bool, typer.Option(help="Discard an interrupted run instead of resuming it.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing bundle folder.")] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    version: VersionOpt = False,
) -> None:
    from photoz_tools.errors import PzUsageError

    inputs = list(inputs or [])
    if assemble:
        _assemble(ctx, inputs, output, force=force, make_default=default)
        return
    if not output and not dry_run:
        raise PzUsageError("name the bundle folder to write with -o BUNDLE")
    if len(inputs) > 1:
        raise PzUsageError(
            f"pz-train trains on one DATASET, got {len(inputs)} arguments; to join member "
            "bundles, pass --assemble"
        )
    dataset = inputs[0] if inputs else "-"
    if dataset in ("-", ""):
        raise PzUsageError("pz-train reads its dataset several times: name a file, not stdin")
    from photoz_tools.model import train as tr

    recipe = tr.Recipe(
        batch_size=batch_size,
        learning_rate=lr,
        warmup_steps=warmup,
        epochs=epochs,
        steps=steps,
        augment=augment,
        balanced=balanced,
        val_size=val_size,
        fold=fold,
        members=members,
        member_job=member,
        seed=seed,
        precision=precision,
        xla=xla,
        checkpoint_every=checkpoint_every,
        checkpoint_minutes=checkpoint_minutes,
        workers=workers,
        drop_out_of_range=drop_out_of_range,
        distribute=distribute,
    )
    tr.check_member_job(recipe)  # a usage error before the dataset is read
    from photoz_tools.model import distribute as dist

    dist.check_mode(distribute)
    from photoz_tools.cli import checks

    if not dry_run:  # before any work: the dataset is read, shuffled and trained on first
        checks.output_folder(output, "-o", "bundle folder")
    checks.image_column(checks.peek_schema(dataset), "image", (64, 64, 5), "", dataset, "pz-train")
    if dry_run:
        _dry_run(tr.plan(dataset, arch, recipe, scaling, z_col, ebv_col))
        return
    reporter = _Reporter()
    with reporter:
        path = tr.train(
            dataset,
            output,
            arch,
            recipe,
            scaling=scaling,
            z_col=z_col,
            ebv_col=ebv_col,
            restart=restart,
            force=force,
            make_default=default,
            reporter=reporter,
        )
    log(f"wrote {path}" + (" (registered as the default bundle)" if default else ""))
    _ = command_line


# what --assemble uses; any other option given with it is refused rather than ignored
_ASSEMBLE_OPTIONS = {
    "inputs",
    "output",
    "assemble",
    "force",
    "default",
    "quiet",
    "debug",
    "version",
}


def _assemble(
    ctx: typer.Context, bundles: list[str], output: str, *, force: bool, make_default: bool
) -> None:
    from photoz_tools.errors import PzUsageError

    for param in ctx.command.params:
        if param.name in _ASSEMBLE_OPTIONS:
            continue
        source = ctx.get_parameter_source(param.name)  # typer's own click: compare names
        if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP"):
            name = "/".join([*param.opts, *param.secondary_opts])
            raise PzUsageError(f"{name} does not apply to --assemble (only -o, --force, --default)")
    if not bundles:
        raise PzUsageError("--assemble: name the member bundles to join, e.g. jobs/m*/")
    if not output or output == "-":
        raise PzUsageError("--assemble: name the bundle folder to write with -o BUNDLE")
    from photoz_tools.model.assemble import assemble

    reporter = _Reporter()
    with reporter:
        path = assemble(bundles, output, force=force, make_default=make_default, reporter=reporter)
    log(f"wrote {path}" + (" (registered as the default bundle)" if make_default else ""))


def _dry_run(p: dict[str, Any]) -> None:
    """The plan on stdout: it is what the user asked for."""
    from photoz_tools.model import architecture, backend

    backend.silence()
    model = architecture.build_model(p["config"], seed=0)
    model.summary(print_fn=lambda line, *a, **k: print(line), line_length=100)
    sel, r = p["selection"], p["recipe"]
    print(f"trainable parameters: {architecture.trainable_count(model):,}")
    print(
        f"dataset: {sel.path}: {sel.n_rows:,} rows; training {len(sel.train_rows):,}, "
        f"validation {len(sel.val_rows):,} ({sel.val_source}), held out {sel.n_test:,}, "
        f"dropped out of range {sel.n_dropped:,}"
    )
    who = (
        f"{r.members} member(s)"
        if r.member_job is None
        else f"member {r.member_job} of {r.members} (--member)"
    )
    print(
        f"plan: {who} x {p['total_steps']:,} steps of {p['batch_size']} "
        f"({p['steps_per_epoch']:,} steps per epoch, "
        f"{p['total_steps'] / p['steps_per_epoch']:.1f} epochs), Adam {r.learning_rate:g} "
        f"divided by {r.lr_drop:g} at step {max(1, p['total_steps'] // 2):,}"
        + (f" after {r.warmup_steps:,} warm-up steps" if r.warmup_steps else "")
        + f"; scaling {p['config']['scaling']}; precision {r.precision}"
    )


class _Reporter:
    """Turns training events into a rich progress bar and per-epoch log lines on stderr."""

    def __init__(self) -> None:
        self._cm = None
        self._task = None
        self._member = -1
        self._job = False  # a --member job: members named by their 0-based --member number

    def _name(self, info: dict[str, Any], of: bool = True) -> str:
        if self._job:
            return f"member {info['member']} (--member)" + (f" of {info['members']}" if of else "")
        return f"member {info['member'] + 1}" + (f"/{info['members']}" if of else "")

    def __enter__(self) -> _Reporter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close()

    def _close(self) -> None:
        if self._cm is not None:
            self._cm.__exit__(None, None, None)
            self._cm = self._task = None

    def __call__(self, event: str, **info: Any) -> None:
        if event == "plan":
            self._job = getattr(info.get("recipe"), "member_job", None) is not None
            sel = info["selection"]
            log(
                f"{sel.path}: training {len(sel.train_rows):,} rows, validation "
                f"{len(sel.val_rows):,} ({sel.val_source}); {info['total_steps']:,} steps of "
                f"{info['batch_size']} per member"
            )
            if sel.n_dropped:
                warn(f"dropped {sel.n_dropped:,} rows with z outside the bins")
        elif event == "log":
            log(info["message"])
        elif event == "warning":
            warn(info["message"])
        elif event == "start":
            self._close()
            self._cm = progress(
                self._name(info),
                total=info["total"],
                unit="steps",
                fields=("loss", "val_loss", "gal_s"),
            )
            self._task = self._cm.__enter__()
            self._task.update(completed=info["step"])
            if info["step"]:
                log(f"{self._name(info, of=False)}: resumed at step {info['step']:,}")
        elif event == "step" and self._task is not None:
            self._task.update(
                completed=info["step"], loss=f"{info['loss']:.3f}", gal_s=f"{info['rate']:.0f}"
            )
        elif event == "epoch":
            if self._task is not None and "val_loss" in info:
                self._task.update(val_loss=f"{info['val_loss']:.3f}")
            val = ""
            if "val_loss" in info:
                val = (
                    f", val_loss {info['val_loss']:.3f}, sigma_MAD {info['val_sigma_mad']:.4f},"
                    f" PIT KS {info['val_pit_ks']:.3f}"
                )
            log(
                f"{self._name(info, of=False)} epoch {info['epoch']} (step {info['step']:,}): "
                f"loss {info['loss']:.3f}{val}"
            )
        elif event == "member":
            self._close()
            v = info["info"].get("validation", {})
            what = "already trained" if info["skipped"] else "done"
            extra = (
                f": validation sigma_MAD {v['sigma_mad']:.4f}, eta {v['eta']:.2f} %"
                if "sigma_mad" in v
                else ""
            )
            log(f"{self._name(info)} {what}{extra}")


main = main_for(app)
_ = state

if __name__ == "__main__":
    main()
