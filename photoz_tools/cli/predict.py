"""pz-predict: redshift PDFs and summaries for every galaxy of a table with cutouts."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from photoz_tools.cli import checks
from photoz_tools.cli.checks import bounds
from photoz_tools.cli.common import (
    DebugOpt,
    FormatOpt,
    OutputOpt,
    QuietOpt,
    SchedulerOpt,
    ShardOpt,
    VersionOpt,
    command_line,
    fail,
    log,
    main_for,
    make_app,
    progress,
    prose,
    warn,
)

HELP = prose("""\
Predict photometric redshift PDFs with a model bundle (an ensemble made by pz-train).

Reads a table with the image (64x64x5 ugriz, nanomaggies) and ebv columns in batches and writes
every input column but the image (or the --keep columns), then zphot, zphot_err, zmode, z_lo68,
z_hi68, width68, pz_flags and the 180-bin pdf; the bin edges and the bundle's hash go into the
metadata. Rows with NaN/inf pixels, a missing or negative ebv, or pixels so large that the
network overflows get null predictions and pz_flags bit 1, with a count on stderr. The bundle
is -m BUNDLE, else $PZ_MODEL, else the default registered by pz-train --default or pz-predict
--set-default.
""")
PRECISION_HELP = (
    "Compute precision: float32 (the default, on every machine), bfloat16 (GPUs; CPUs with AMX "
    "or AVX512-BF16; refused elsewhere) or float16 (GPUs only). bfloat16 is safe for zphot and "
    "the scores: measured on a trained bundle, zphot moved by at most 6e-4, sigma_MAD and CRPS "
    "by 0.3 %, eta not at all. Keep float32 for biases below 1e-4 (the bias moved by up to "
    "9e-5), for zmode (it changed for 3-6 % of galaxies) and for the PDFs bin by "
    "bin (a 1.2-1.4 % L1 change on average). Recorded in the output's metadata (pz_precision)."
)
EXAMPLES = """\
[bold]Examples[/bold]

  pz-predict -m model/ catalog.fits > zphot.parquet

  pz-predict catalog.parquet --tta --pdf float16 --qp pdfs.hdf5 -o zphot.parquet
"""

app = make_app("pz-predict", HELP)


@app.command(help=HELP, epilog=EXAMPLES)
def main_command(
    input: Annotated[
        str | None,
        typer.Argument(
            help="Input table with image and ebv columns (FITS/Parquet; '-' or nothing: stdin).",
            show_default=False,
        ),
    ] = None,
    output: OutputOpt = "-",
    model: Annotated[
        str | None,
        typer.Option(
            "-m",
            "--model",
            help="Model bundle folder \\[default: $PZ_MODEL, else the registered default].",
            show_default=False,
        ),
    ] = None,
    pdf: Annotated[
        str,
        typer.Option(
            "--pdf",
            help="PDF column: float32, float16, uint8 (one byte a bin: each row scaled to its "
            "maximum, kept in a float32 pdf_max column, and rounded, so bins below max/510 "
            "become 0; pz-score restores and renormalises it) or none.",
        ),
    ] = "float32",
    keep: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated input columns to keep \\[default: all but the image].",
            show_default=False,
        ),
    ] = None,
    tta: Annotated[
        bool, typer.Option(help="Average over the 8 rotations/flips (8x slower).")
    ] = False,
    qp: Annotated[
        str | None,
        typer.Option(
            "--qp",
            help="Also write the PDFs as a qp histogram ensemble (FILE.hdf5; needs the qp extra).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Galaxies per network call.", callback=bounds(1, 1_000_000))
    ] = 256,
    precision: Annotated[
        str,
        typer.Option(help=PRECISION_HELP),
    ] = "float32",
    set_default: Annotated[
        str | None,
        typer.Option(
            "--set-default",
            help="Register BUNDLE as the default (then predict only if an input is given).",
            show_default=False,
        ),
    ] = None,
    image_col: Annotated[str, typer.Option("--image-col", help="Image column.")] = "image",
    ebv_col: Annotated[str, typer.Option("--ebv-col", help="E(B-V) column.")] = "ebv",
    shard: ShardOpt = None,
    scheduler: SchedulerOpt = None,
    format: FormatOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    version: VersionOpt = False,
) -> None:
    from photoz_tools.model import bundle
    from photoz_tools.model import precision as prec

    prec.check(precision)  # a refused precision: one line, before any work
    if set_default:
        path = bundle.set_default(set_default)
        log(f"default model bundle: {path}")
        if input is None:
            return
    from photoz_tools import partitions
    from photoz_tools.errors import PzUsageError

    shard_spec = partitions.parse_shard(shard)
    folder_in = partitions.is_partitioned(input)
    if shard_spec is not None and not folder_in:
        raise PzUsageError("--shard: only with a catalogue folder as the input")
    if scheduler is not None and not folder_in:
        raise PzUsageError("--scheduler: only with a catalogue folder as the input")
    if folder_in:
        from photoz_tools.partitions import check_output_folder, parse_scheduler

        check_output_folder(input, output, "predictions")
        checks.output_folder(output, "-o", "predictions folder")
        scheduler_spec = parse_scheduler(scheduler)
    else:
        checks.table_output(output, format)
    checks.output_file(qp, "--qp", None, "qp file")
    model_path = bundle.resolve(model)  # before reading stdin: fail fast without a bundle
    if not folder_in:
        _check_input(input, model_path, image_col, ebv_col)
    from photoz_tools.model import predict as pr

    cols = [c.strip() for c in keep.split(",") if c.strip()] if keep is not None else None
    if folder_in:
        _predict_folder(
            input,
            output,
            model_path,
            shard=shard_spec,
            scheduler=scheduler_spec,
            keep=cols,
            batch_size=batch_size,
            pdf_dtype=pdf,
            tta=tta,
            precision=precision,
            image_col=image_col,
            ebv_col=ebv_col,
        )
        return
    with progress("predicting", unit="galaxies") as bar:
        res = pr.predict(
            input or "-",
            output or "-",
            str(model_path),
            batch_size=batch_size,
            pdf_dtype=pdf,
            keep=cols,
            tta=tta,
            qp_path=qp,
            format=format,
            image_col=image_col,
            ebv_col=ebv_col,
            command_line=command_line(),
            precision=precision,
            on_start=lambda n: bar.update(total=n),
            on_rows=bar.advance,
        )
    for c in getattr(res, "replaced_columns", []):
        warn(f"input column {c!r} replaced by this prediction's")
    if res.bad_rows:
        warn(
            f"{res.bad_rows:,} of {res.rows:,} rows have NaN/inf or overflowing pixels, or a "
            f"missing or negative {ebv_col}: "
            "null predictions, pz_flags bit 1 (bad_input)"
        )
    log(
        f"predicted {res.rows:,} rows with {res.members} member(s) of {model_path} "
        f"(bundle {res.bundle_hash[:12]}, {precision})"
    )


def _check_input(input: str | None, model_path: Any, image_col: str, ebv_col: str) -> None:
    """The image column's cell shape against the bundle's, and a numeric ebv, before any work."""
    from photoz_tools.model import bundle

    schema = checks.peek_schema(input)
    if schema is None:
        return
    inputs = bundle.read_manifest(model_path).get("inputs") or bundle.INPUTS
    shape = tuple((inputs.get("image") or bundle.INPUTS["image"])["shape"])
    where = f"the model bundle {model_path}"
    checks.image_column(schema, image_col, shape, "--image-col", input, where)
    checks.numeric_column(schema, ebv_col, "--ebv-col", input, "E(B-V), mag")


def _predict_folder(source: str, output: str, model_path, **options) -> None:
    """A catalogue folder in, a folder out: one line of summary; exit 1 if any partition
    failed, after doing the others."""
    from photoz_tools.model.predict_partitions import predict_partitioned

    with progress("partitions", unit="partitions") as bar:
        summary = predict_partitioned(
            source,
            output,
            str(model_path),
            command_line=command_line(),
            on_partition=lambda part, what: bar.advance(),
            **options,
        )
    if summary.failed:
        fail(summary.line())
    log(summary.line())


main = main_for(app)

if __name__ == "__main__":
    main()
