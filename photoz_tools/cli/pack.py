"""pz-pack: catalogue + cutouts (or the authors' sdss.npz) -> a dataset with folds and splits.

Only parsing and reporting live here; the work is ``photoz_tools.dataset.pack``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from photoz_tools.cli import checks
from photoz_tools.cli.checks import bounds
from photoz_tools.cli.common import (
    DebugOpt,
    FormatOpt,
    OutputOpt,
    QuietOpt,
    VersionOpt,
    command_line,
    log,
    main_for,
    make_app,
    progress,
    prose,
    warn,
)
from photoz_tools.errors import PzUsageError

HELP = prose("""\
Join a catalogue and its cutouts by id (or read the authors' published sdss.npz) into a
training-ready dataset: adds fold (k seeded folds, stratified in z when there is a z column),
split (train/validation/test) and pack_flags, drops (or flags) rows with bad images, ebv or
z, and writes Parquet in row groups sized for streaming (FITS by extension). Counts per split
and fold go to stderr.

INPUT is pz-cutout's output (id, image, n_frames, flags), streamed in batches; or a .npz:
'cube' (N,64,64,5) + a 'labels' record array (the authors' sdss.npz), or 'data' + 'z' + 'ebv'
(their example file). The cube is read from the zip member by member, never loaded whole.
npz labels EBV -> ebv and zphot -> zphot_b16 are renamed by default.

Rows are written in a uniform random order drawn from --seed (said on stderr and recorded in the
pz_pack metadata), so that training reads them shuffled; --keep-order keeps the input's order.
The shuffle holds at most PZ_PACK_BUFFER_MB megabytes of rows in memory (default 1024); beyond
that it spills them to hidden temporary files beside the output (the system's temporary folder
for stdout), which needs about the dataset's size in free disk space there while it runs.
""")
EXAMPLES = """\
[bold]Examples[/bold]

  pz-pack cutouts.parquet --catalog mgs.fits -o dataset.parquet

  pz-pack sdss.npz --mgs-cut --folds 5 --seed 0 -o sdss-dataset.parquet

  pz-cutout mgs.fits --frames sas/ | \\
      pz-pack -c mgs.fits --validation 5000 -o ds.parquet
"""

app = make_app("pz-pack", HELP)


def _number(text: str, option: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise PzUsageError(f"{option} {text}: give a count or a fraction") from None
    checks.check_number(value, option, 0)
    return value


def _test_fold(text: str, folds: int) -> int | None:
    """--test-fold: a fold number below --folds, or none."""
    if text.strip().lower() in ("none", "-1", ""):
        return None
    try:
        fold = int(text)
    except ValueError:
        raise PzUsageError(
            f"--test-fold {text}: give a fold number (0..{folds - 1}) or none"
        ) from None
    checks.check_number(fold, "--test-fold", 0, folds - 1, why=f"--folds {folds}")
    return fold


def _check_before_work(input: str, output: str, format: str | None) -> None:
    """The output name, --format and the image column's shape, before anything is read."""
    checks.image_table_output(output, format)
    schema = checks.peek_schema(input)
    checks.image_column(schema, "image", (64, 64, 5), "", input, "pz-pack")
    if schema is not None:  # the cutouts' columns are carried into the dataset
        checks.fits_output_names(schema.names, output, format)


@app.command(help=HELP, epilog=EXAMPLES)
def pack(
    input: Annotated[
        str,
        typer.Argument(
            help="Cutouts table (FITS/Parquet, '-' for stdin) or a .npz path.",
            show_default=False,
        ),
    ] = "-",
    catalog: Annotated[
        str | None,
        typer.Option(
            "-c",
            "--catalog",
            help="Catalogue to join on the id (its non-image columns pass through; it wins "
            "where both tables carry a column). Omit it when the cutouts carry z and ebv.",
            show_default=False,
        ),
    ] = None,
    output: OutputOpt = "-",
    format: FormatOpt = None,
    id_column: Annotated[
        str | None,
        typer.Option("--id", help="Id column to join on (default: objID, specObjID or id)."),
    ] = None,
    folds: Annotated[
        int, typer.Option("--folds", "-k", help="Number of folds.", callback=bounds(1, 1000))
    ] = 5,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            help="Seed of the fold and split draws and of the row order.",
            callback=bounds(0),
        ),
    ] = 0,
    keep_order: Annotated[
        bool,
        typer.Option(
            "--keep-order",
            help="Write rows in the input's order (default: a random order drawn from --seed, "
            "in memory up to PZ_PACK_BUFFER_MB, else through temporary files).",
        ),
    ] = False,
    stratify: Annotated[
        bool | None,
        typer.Option(
            "--stratify/--no-stratify",
            help="Stratify folds in z (default: when a z column exists).",
            show_default=False,
        ),
    ] = None,
    test_fold: Annotated[
        str,
        typer.Option(
            "--test-fold",
            help="Fold whose rows get split=test; 'none' for k-fold cross-validation, where "
            "pz-train --fold k holds each fold out in turn.",
        ),
    ] = "0",
    validation: Annotated[
        str,
        typer.Option(
            "--validation",
            help="Rows of the other folds to set aside as split=validation: a count (5000) or "
            "a fraction (0.1); 0 for none.",
        ),
    ] = "0.1",
    bad: Annotated[
        str,
        typer.Option(
            "--bad",
            help="Bad rows (NaN/inf pixels, flagged by pz-cutout, a missing band, a bad ebv "
            "or z): 'drop' them or 'flag' them in pack_flags (1 NaN/inf, 2 pz-cutout flag, 4 "
            "missing band, 8 NaN/inf or negative ebv, 16 missing or impossible z) and keep them.",
        ),
    ] = "drop",
    flag_mask: Annotated[
        int,
        typer.Option(
            "--flag-mask",
            help="Bits of pz-cutout's cutout_flags that make a row bad (default: all). Its bits: "
            "1 edge, 2 missing band, 4 NaN input, 8 centre off frame, 16 fetch failed; "
            "--flag-mask 30 keeps cutouts that only touch a frame edge.",
            show_default=False,
        ),
    ] = -1,
    mgs_cut: Annotated[
        bool,
        typer.Option(
            "--mgs-cut",
            help="Keep the Main Galaxy Sample: dered_petro_r <= 17.8, z <= 0.4, primtarget >= 64 "
            "(each part where its column exists).",
        ),
    ] = False,
    label_map: Annotated[
        list[str] | None,
        typer.Option(
            "--label-map",
            help="Rename labels/catalogue columns, OLD=NEW[,OLD=NEW...] (repeatable); an empty "
            "NEW drops the column. E.g. --label-map zphot_beck=zphot_b16.",
            show_default=False,
        ),
    ] = None,
    batch_rows: Annotated[
        int,
        typer.Option(
            "--batch-rows",
            help="Images read per batch (memory ~80 kB each).",
            callback=bounds(1, 1_000_000),
        ),
    ] = 512,
    list_labels: Annotated[
        bool,
        typer.Option(
            "--list-labels",
            help="Print the labels of a .npz (name, dtype, output column after renaming) as "
            "tab-separated lines on stdout and exit: the names to use in --label-map.",
        ),
    ] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    version: VersionOpt = False,
) -> None:
    """Pack cutouts and a catalogue (or sdss.npz) into a dataset with folds and splits."""
    from photoz_tools.dataset import pack as pack_dataset
    from photoz_tools.dataset import parse_label_map, report

    if list_labels:
        from photoz_tools.dataset import NpzSource

        if not input.lower().endswith(".npz"):
            raise PzUsageError("--list-labels reads a .npz path")
        src = NpzSource(input, parse_label_map(label_map), log)
        print("label\tdtype\tcolumn")
        for row in src.labels_info:
            print("\t".join(row))
        src.close()
        return
    _check_before_work(input, output, format)
    tf = _test_fold(test_fold, folds)
    with progress("packing", unit="rows") as bar:
        summary = pack_dataset(
            input,
            output,
            catalog=catalog,
            id_column=id_column,
            folds=folds,
            seed=seed,
            stratify=stratify,
            test_fold=tf,
            validation=_number(validation, "--validation"),
            bad=bad,
            flag_mask=flag_mask,
            mgs_cut=mgs_cut,
            label_map=parse_label_map(label_map),
            batch_rows=batch_rows,
            format=format,
            keep_order=keep_order,
            command_line=command_line(),
            log=log,
            warn=warn,
            advance=bar.advance,
            total=lambda n: bar.update(total=n),
        )
    if summary.bad:
        what = ", ".join(f"{c} {w}" for w, c in summary.bad.items())
        if summary.bad_action == "drop":
            warn(f"dropped bad rows: {what} (--bad flag keeps them)")
        else:
            warn(f"flagged bad rows in pack_flags: {what}")
    for line in report(summary):
        log(line)


main = main_for(app)

if __name__ == "__main__":
    main()
