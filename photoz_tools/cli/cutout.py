"""pz-cutout: 64x64x5 ugriz cutouts of SDSS corrected frames for every catalogue row.

Options map one to one onto :func:`photoz_tools.imaging.cutouts.cutout`; nothing heavy is
imported until the command runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

from photoz_tools.cli import checks
from photoz_tools.cli.checks import bounds
from photoz_tools.cli.common import (
    DebugOpt,
    FormatOpt,
    InputArg,
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
Cut 64x64 ugriz cutouts (0.396"/pixel, north up, east left, nanomaggies) centred on each
catalogue row, as Pasquet et al. (2019) did with SWarp: every overlapping SDSS corrected frame
is resampled with Lanczos-3 onto a gnomonic grid and the frames are median-combined per band.

Output: the catalogue's columns + image float32 (64,64,5) \\[y, x, band] + n_frames int16[5]
(frames per band) + cutout_flags (1 edge, 2 missing band, 4 NaN input, 8 centre off frame,
16 frame not fetched). Uncovered pixels are 0 (SWarp's convention; --fill nan) and flagged.

Frames come from a local folder (--frames DIR: any layout, .fits/.fits.bz2/.fits.gz, indexed
from their headers, no network) or from the SAS (--frame-index, a 'pz-query frames' table;
without it each row's own run/camcol/field), through a verified cache (--cache). With -o FILE
a killed run resumes from FILE.partial/.

A catalogue folder in (a partitioned catalogue: plain, hive-style key=value/ or HATS Parquet
files) gives a folder out: one cutouts file per input partition at the same relative path
under -o FOLDER. A rerun redoes only the partitions whose output is missing or stale (older
than its input, or made with other --frames, --frame-index, --sas-url, --resampler, --fill or
columns); a killed partition resumes from its hidden .NAME.partial/. --shard I/N takes one
share of the partitions (array jobs); --scheduler runs one dask.distributed task per
partition. One summary line; exit 1 if any partition failed, after doing the others. In a Slurm
array job (--array=0-7), each task takes its share:

  pz-cutout survey/ --frames sdss/ -o cut/ --shard $SLURM_ARRAY_TASK_ID/8
""")
EXAMPLES = """\
[bold]Examples[/bold]

  pz-cutout mgs.fits --frame-index frames.parquet -o cutouts.parquet

  pz-cutout galaxies.parquet --frames ~/sdss -o cut.parquet --preview cut.png
"""

app = make_app("pz-cutout", HELP)


@app.command(help=HELP, epilog=EXAMPLES)
def main_command(
    catalog: InputArg = "-",
    output: Annotated[
        str,
        typer.Option(
            "-o",
            "--output",
            help="Output table (written atomically; resumable); '-' is stdout. With a "
            "catalogue folder: the output folder (required).",
        ),
    ] = "-",
    frames: Annotated[
        str | None,
        typer.Option(
            "--frames",
            metavar="DIR",
            help="Folder of frame files (any layout, compressed or not): no network.",
        ),
    ] = None,
    frame_index: Annotated[
        str | None,
        typer.Option(
            "--frame-index",
            metavar="FILE",
            help="Frames table from 'pz-query frames' (run, rerun, camcol, "
            "field, ra_min, ra_max, dec_min, dec_max).",
        ),
    ] = None,
    sas_url: Annotated[
        str | None,
        typer.Option(
            "--sas-url",
            help="SAS photoObj base URL \\[default: https://data.sdss.org/sas/dr12/boss/photoObj].",
        ),
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option(
            "--cache",
            metavar="DIR",
            help="Frame cache \\[default: $PZ_CACHE or ~/.cache/photoz-tools].",
        ),
    ] = None,
    ra: Annotated[str, typer.Option("--ra", help="RA column (deg).")] = "ra",
    dec: Annotated[str, typer.Option("--dec", help="Dec column (deg).")] = "dec",
    id: Annotated[
        str | None,
        typer.Option("--id", help="Id column \\[default: first of objID, specObjID, id]."),
    ] = None,
    resampler: Annotated[
        str,
        typer.Option(
            "--resampler",
            help="native (numpy Lanczos-3, SWarp's conventions) or swarp (runs SWarp per galaxy).",
            callback=checks.one_of("native", "swarp"),
        ),
    ] = "native",
    fill: Annotated[
        str,
        typer.Option(
            "--fill",
            help="Value of uncovered pixels: zero or nan (always flagged).",
            callback=checks.one_of("zero", "nan"),
        ),
    ] = "zero",
    workers: Annotated[
        int | None,
        typer.Option(
            "-j",
            "--workers",
            help="Processes \\[default: all cores; twice that when fetching from the SAS].",
            callback=bounds(1),
        ),
    ] = None,
    preview: Annotated[
        str | None,
        typer.Option(
            "--preview",
            metavar="FILE.png",
            help="Grid of Lupton RGB (g, r, i) composites of the first cutouts.",
        ),
    ] = None,
    preview_count: Annotated[
        int,
        typer.Option(
            "--preview-count", help="Cutouts in the preview grid.", callback=bounds(1, 10_000)
        ),
    ] = 16,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Rows per output batch.", callback=bounds(1))
    ] = 1024,
    shard: ShardOpt = None,
    scheduler: SchedulerOpt = None,
    no_resume: Annotated[
        bool,
        typer.Option(
            "--no-resume",
            help="Start afresh, ignoring OUTPUT.partial/ (a folder's: each .NAME.partial/).",
        ),
    ] = False,
    format: FormatOpt = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    version: VersionOpt = False,
) -> None:
    from photoz_tools import partitions
    from photoz_tools.errors import PzUsageError

    shard_spec = partitions.parse_shard(shard)
    folder_in = partitions.is_partitioned(catalog)
    if shard_spec is not None and not folder_in:
        raise PzUsageError("--shard: only with a catalogue folder as the input")
    if scheduler is not None and not folder_in:
        raise PzUsageError("--scheduler: only with a catalogue folder as the input")
    opts = {
        "frames": frames,
        "frame_index": frame_index,
        "sas_url": sas_url,
        "cache": cache,
        "ra": ra,
        "dec": dec,
        "id": id,
        "resampler": resampler,
        "fill": fill,
        "workers": workers,
        "batch_rows": batch_size,
    }
    if folder_in:
        _cutout_folder(
            catalog,
            output,
            shard=shard_spec,
            scheduler=scheduler,
            preview=preview,
            format=format,
            resume=not no_resume,
            **opts,
        )
        return
    _check_single(catalog, output, format, preview, ra, dec)
    from photoz_tools.imaging.cutouts import cutout

    if no_resume and output not in ("-", ""):
        import shutil

        shutil.rmtree(f"{output}.partial", ignore_errors=True)
    with progress("cutouts", unit="rows") as bar:
        cutout(
            catalog,
            output,
            **opts,
            format=format,
            preview=preview,
            preview_count=preview_count,
            command_line=command_line(),
            log=log,
            warn=warn,
            progress=bar,
        )
    if preview:
        log(f"preview written to {preview}")


def _check_single(
    catalog: str, output: str, format: str | None, preview: str | None, ra: str, dec: str
) -> None:
    """Output name, --format, --preview and the position columns, before any work."""
    checks.image_table_output(output, format)
    checks.output_file(preview, "--preview", (".png",), "preview image")
    schema = checks.peek_schema(catalog)
    checks.numeric_column(schema, ra, "--ra", catalog, "degrees")
    checks.numeric_column(schema, dec, "--dec", catalog, "degrees")
    if schema is not None:  # the catalogue's columns are carried into the cutouts table
        checks.fits_output_names(schema.names, output, format)


def _cutout_folder(
    source: str,
    output: str,
    *,
    shard,
    scheduler: str | None,
    preview: str | None,
    format: str | None,
    **options,
) -> None:
    """A catalogue folder in, a folder out: one line of summary; exit 1 if any partition
    failed, after doing the others."""
    from photoz_tools.errors import PzUsageError
    from photoz_tools.imaging.cutout_partitions import cutout_partitioned
    from photoz_tools.partitions import check_output_folder, parse_scheduler

    check_output_folder(source, output, "cutouts")
    checks.output_folder(output, "-o", "cutouts folder")
    if preview is not None:
        raise PzUsageError("--preview: only with a single table as the input")
    if format is not None and format.lower() not in ("parquet", "pq"):
        raise PzUsageError(
            f"--format {format}: a catalogue folder gives Parquet partitions; drop --format"
        )
    scheduler_spec = None
    if scheduler is not None:
        scheduler_spec = parse_scheduler(scheduler)
    with progress("partitions", unit="partitions") as bar:
        summary = cutout_partitioned(
            source,
            output,
            shard=shard,
            scheduler=scheduler_spec,
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
