"""pz-query: SkyServer SQL -> the Main Galaxy Sample catalogue; `pz-query frames`: the frame index.

Only parsing, reporting and output live here; the work is ``photoz_tools.sdss.query``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

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
)
from photoz_tools.errors import PzError, PzUsageError

HELP = prose("""\
Query the SDSS SkyServer (astroquery's SDSS.query_sql over HTTPS; data release --release, default
DR12) and write the result as a table. Without --sql it runs the Main Galaxy Sample selection of
Pasquet et al. 2019 (Appendix A: SpecObjAll x PhotoObjAll x Photoz x galSpecInfo; z > 0,
zWarning = 0, SCIENCE, survey sdss, class GALAXY, primtarget >= 64, clean = 1, insideMask = 0,
dereddened Petrosian r <= 17.8, z <= 0.4), each cut an option.

Columns: specObjID, objID, ra, dec (deg), z, zErr, dered_petro_u..z and petroMagErr_u..z,
extinction_u..z, ebv = extinction_r / 2.751 (mag), ba (expAB_r), psfFWHM_u..z (arcsec),
sky_u..z (nanomaggy/arcsec2), run, rerun, camcol, field, primtarget, and the Beck et al. 2016
photo-z as zphot_b16, zphot_b16_err.

Results come in pages of --page-size rows (keyset on specObjID), so 500k rows stay within
SkyServer's limits. Pages are kept in a resume folder (--spool, default in ~/.cache): after a
failure, the same command fetches only the missing pages. Timeouts, HTTP 5xx, dropped
connections and SkyServer's error pages (HTML or "Error: ..." text with status 200) are retried
with exponential backoff, then reported in one line; the output is written, atomically, only once
complete, with units and provenance. `pz-query frames` writes the index of imaging frames.
""")
EXAMPLES = """\
[bold]Examples[/bold]

  pz-query -o mgs.parquet                        [dim]# the paper's ~500k galaxies[/dim]

  pz-query --box 150,160,0,5 --r-max 17.5 --limit 1000 -o small.fits

  pz-query --sql my.sql --release 16 -o out.csv  [dim]# any SQL, with comments[/dim]

  pz-query frames mgs.parquet -o frames.parquet  [dim]# the frames it needs[/dim]
"""

FRAMES_HELP = prose("""\
The index of SDSS imaging frames (every epoch) for a sky box or a catalogue.

One row per field (Stripe 82's many runs included, primary or not) whose bounding box overlaps a
sky box (--box or --ra-min...) or the sky covered by the positions in CATALOG (cells of --cell
degrees, grown by --margin arcsec). pz-cutout reads it to find every frame under a cutout.

Columns: fieldID, run, rerun, camcol, field (the frames are
frames/RERUN/RUN/CAMCOL/frame-BAND-RUN6-CAMCOL-FIELD4.fits.bz2 on the SAS, BAND in ugriz) and
ra_min, ra_max, dec_min, dec_max (deg; SkyServer's Field.raMin...decMax; ra_min > ra_max across
RA = 0). Paging, retries and resuming work as for pz-query.
""")
FRAMES_EXAMPLES = """\
[bold]Examples[/bold]

  pz-query frames --box 323.2,323.5,-1,0 -o frames.parquet

  pz-query frames mgs.parquet --margin 60 -o frames.parquet
"""


app = make_app("pz-query", HELP)

# --------------------------------------------------------------------------- shared options

ReleaseOpt = Annotated[
    int,
    typer.Option(
        "--release",
        help="SDSS data release (DR number).",
        callback=bounds(1, 99, why="a DR number, e.g. 12 or 16"),
    ),
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="SkyServer base URL (default: $PZ_SKYSERVER_URL, else https://skyserver.sdss.org).",
        show_default=False,
    ),
]
BoxOpt = Annotated[
    str | None,
    typer.Option(
        "--box",
        help="Sky box RA_MIN,RA_MAX,DEC_MIN,DEC_MAX in degrees (RA_MIN > RA_MAX wraps through 0).",
        show_default=False,
    ),
]
RaMinOpt = Annotated[
    float | None, typer.Option("--ra-min", help="Box: lowest RA (deg).", show_default=False)
]
RaMaxOpt = Annotated[
    float | None, typer.Option("--ra-max", help="Box: highest RA (deg).", show_default=False)
]
DecMinOpt = Annotated[
    float | None, typer.Option("--dec-min", help="Box: lowest Dec (deg).", show_default=False)
]
DecMaxOpt = Annotated[
    float | None, typer.Option("--dec-max", help="Box: highest Dec (deg).", show_default=False)
]
PageOpt = Annotated[
    int,
    typer.Option(
        "--page-size",
        help="Rows per request (keyset paging).",
        callback=bounds(1, 500_000, why="SkyServer answers at most 500,000 rows a request"),
    ),
]
RetriesOpt = Annotated[
    int,
    typer.Option("--retries", help="Retries of a failed request.", callback=bounds(0, 100)),
]
BackoffOpt = Annotated[
    float,
    typer.Option(
        "--backoff",
        help="Seconds before the first retry; doubled at each retry (max 120 s).",
        callback=bounds(0),
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        "--timeout", help="Seconds to wait for an answer.", callback=bounds(0, low_open=True)
    ),
]
SpoolOpt = Annotated[
    str | None,
    typer.Option(
        "--spool",
        help="Resume folder for the pages (default: a folder named by the "
        "query's hash in $PZ_QUERY_SPOOL, else ~/.cache/photoz-tools/query).",
        show_default=False,
    ),
]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="Ignore pages left by an interrupted run.")]
KeepOpt = Annotated[
    bool, typer.Option("--keep-spool", help="Keep the resume folder after success.")
]
ShowSqlOpt = Annotated[
    bool, typer.Option("--show-sql", help="Print the SQL of the first page on stdout and exit.")
]


def _box(
    box: str | None,
    ra_min: float | None,
    ra_max: float | None,
    dec_min: float | None,
    dec_max: float | None,
) -> Any:
    from photoz_tools.sdss.queries import Box

    parts = (ra_min, ra_max, dec_min, dec_max)
    if box is not None and any(p is not None for p in parts):
        raise PzUsageError("give --box or --ra-min/--ra-max/--dec-min/--dec-max, not both")
    try:
        if box is not None:
            return Box.parse(box)
        if any(p is not None for p in parts):
            return Box(
                0.0 if ra_min is None else ra_min,
                360.0 if ra_max is None else ra_max,
                -90.0 if dec_min is None else dec_min,
                90.0 if dec_max is None else dec_max,
            )
    except ValueError as exc:
        raise PzUsageError(str(exc)) from None
    return None


def _check_cuts(z_min: float, z_max: float, r_min: float | None, r_max: float) -> None:
    """Cuts that select nothing are refused before a query is sent."""
    if z_min >= z_max:
        raise PzUsageError(
            f"--z-min {z_min:g} --z-max {z_max:g}: no redshift is > --z-min and <= --z-max; "
            "give --z-min below --z-max"
        )
    if z_max < 0:
        raise PzUsageError(f"--z-max {z_max:g}: redshifts of galaxies are > 0")
    if r_min is not None and r_min > r_max:
        raise PzUsageError(
            f"--r-min {r_min:g} --r-max {r_max:g}: no magnitude is >= --r-min and <= --r-max"
        )


def _run_and_write(
    job: Any,
    output: str,
    format: str | None,
    fresh: bool,
    keep_spool: bool,
    total: int | None,
    finish: Any = None,
) -> None:
    """Fetch (resuming), then write the pages as one table; the spool goes once written."""
    from photoz_tools.tables import TableWriter, provenance_metadata, write_table

    log(
        f"querying {job.client.query_url} (DR{job.client.release}), pages of {job.page_size:,} rows"
    )
    try:
        with progress("SkyServer", total=total, unit="rows") as bar:
            rows = job.fetch(fresh=fresh, log=log, on_rows=lambda n: bar.update(completed=n))
    except PzError as exc:
        if job.spool.exists() and any(job.spool.glob("*.parquet")):
            raise PzError(
                f"{exc}; the pages fetched so far are kept in {job.spool}: rerun the "
                "same command to resume"
            ) from None
        raise
    provenance = provenance_metadata(command_line(), [job.client.query_url])
    if finish is not None:  # a whole-table step (deduplication): small tables only
        table = finish(job.read())
        rows = table.num_rows
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        write_table(table, output, format=format, metadata=meta, provenance=provenance)
    else:  # page by page: memory bounded by a page
        schema = job.schema()
        meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
        with TableWriter(
            output, schema, format=format, metadata=meta, provenance=provenance
        ) as writer:
            for page in job.iter_tables():
                writer.write(page)
    log(
        f"{rows:,} rows, {job.requests} request{'s' if job.requests != 1 else ''}"
        + ("" if output == "-" else f" -> {output}")
    )
    if not keep_spool:
        job.cleanup()


def _read_sql(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise PzError(f"--sql {path}: cannot read it ({exc.strerror or exc})") from None


# --------------------------------------------------------------------------- pz-query


@app.callback(invoke_without_command=True, epilog=EXAMPLES)
def query_cmd(
    ctx: typer.Context,
    output: OutputOpt = "-",
    format: FormatOpt = None,
    sql: Annotated[
        str | None,
        typer.Option(
            "--sql",
            help="Run the SQL in this file ('-': stdin) instead of the MGS selection (one "
            "request, no paging: an answer of 500,000 rows or more, SkyServer's cap, is refused "
            "as possibly cut short; -- and /* */ comments allowed).",
            show_default=False,
        ),
    ] = None,
    release: ReleaseOpt = 12,
    url: UrlOpt = None,
    r_max: Annotated[float, typer.Option("--r-max", help="Dereddened Petrosian r <= this.")] = 17.8,
    r_min: Annotated[
        float | None,
        typer.Option("--r-min", help="Dereddened Petrosian r >= this.", show_default=False),
    ] = None,
    z_min: Annotated[float, typer.Option("--z-min", help="Spectroscopic z > this.")] = 0.0,
    z_max: Annotated[float, typer.Option("--z-max", help="Spectroscopic z <= this.")] = 0.4,
    primtarget_min: Annotated[
        int,
        typer.Option(
            "--primtarget-min",
            help="galSpecInfo.primtarget >= this (64: MGS targets).",
            callback=bounds(0),
        ),
    ] = 64,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            help="An extra SQL condition on the aliases s (SpecObjAll), p (PhotoObjAll), "
            "pz (Photoz), g (galSpecInfo); repeatable.",
            show_default=False,
        ),
    ] = None,
    box: BoxOpt = None,
    ra_min: RaMinOpt = None,
    ra_max: RaMaxOpt = None,
    dec_min: DecMinOpt = None,
    dec_max: DecMaxOpt = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            help="At most this many rows (lowest specObjIDs).",
            show_default=False,
            callback=bounds(1),
        ),
    ] = None,
    page_size: PageOpt = 50_000,
    retries: RetriesOpt = 5,
    backoff: BackoffOpt = 2.0,
    timeout: TimeoutOpt = 300.0,
    spool: SpoolOpt = None,
    fresh: FreshOpt = False,
    keep_spool: KeepOpt = False,
    show_sql: ShowSqlOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    version: VersionOpt = False,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from photoz_tools.sdss.query import plan_query

    _check_cuts(z_min, z_max, r_min, r_max)
    if not show_sql:
        checks.table_output(output, format)
    skybox = _box(box, ra_min, ra_max, dec_min, dec_max)
    text = None
    if sql is not None:
        defaults = {
            "--r-max": r_max == 17.8,
            "--r-min": r_min is None,
            "--z-min": z_min == 0.0,
            "--z-max": z_max == 0.4,
            "--primtarget-min": primtarget_min == 64,
            "--where": not where,
            "--box/--ra-min...": skybox is None,
            "--limit": limit is None,
        }
        clash = [k for k, is_default in defaults.items() if not is_default]
        if clash:
            raise PzUsageError(
                f"--sql runs the file as it is: {', '.join(clash)} apply only to the MGS selection"
            )
        text = _read_sql(sql)
        if not text.strip():
            raise PzError(f"--sql {sql}: the file is empty")
    if retries < 0 or backoff < 0 or timeout <= 0:
        raise PzUsageError("--retries and --backoff must be >= 0, --timeout > 0")
    job = plan_query(
        text,
        release=release,
        url=url,
        r_max=r_max,
        r_min=r_min,
        z_min=z_min,
        z_max=z_max,
        primtarget_min=primtarget_min,
        where=where,
        box=skybox,
        limit=limit,
        page_size=page_size,
        retries=retries,
        backoff=backoff,
        timeout=timeout,
        spool=spool,
        log=log,
    )
    if show_sql:
        first = (
            text
            if text is not None
            else job.parts[0].build(min(page_size, limit or page_size), None)
        )
        print(first)
        return
    _run_and_write(job, output, format, fresh, keep_spool, limit)


# --------------------------------------------------------------------------- pz-query frames


def _catalog_boxes(
    catalog: str, ra_col: str, dec_col: str, cell: float, margin: float
) -> tuple[list, int]:
    from photoz_tools.sdss.query import boxes_from_cells, cover_cells
    from photoz_tools.tables import column_array, open_table

    cells: set = set()
    n = 0
    with open_table(catalog) as reader:
        names = {c.lower(): c for c in reader.column_names}
        cols = []
        for want, opt in ((ra_col, "--ra-col"), (dec_col, "--dec-col")):
            if want.lower() not in names:
                raise PzError(
                    f"{reader.name}: no column '{want}' ({opt}); columns: "
                    + ", ".join(reader.column_names[:30])
                )
            cols.append(names[want.lower()])
            checks.numeric_column(reader.schema, cols[-1], opt, reader.name, "degrees")
        for batch in reader.iter_batches(columns=cols):
            cells |= cover_cells(column_array(batch, cols[0]), column_array(batch, cols[1]), cell)
            n += batch.num_rows
        where = reader.name
    if not cells:
        raise PzError(f"{where}: no finite positions in {ra_col}/{dec_col}")
    return boxes_from_cells(cells, cell, margin / 3600.0), n


@app.command("frames", help=FRAMES_HELP, epilog=FRAMES_EXAMPLES)
def frames_cmd(
    catalog: Annotated[
        str | None,
        typer.Argument(
            help="Catalogue whose positions the frames must cover ('-': stdin; the default when "
            "no box is given).",
            show_default=False,
        ),
    ] = None,
    output: OutputOpt = "-",
    format: FormatOpt = None,
    box: BoxOpt = None,
    ra_min: RaMinOpt = None,
    ra_max: RaMaxOpt = None,
    dec_min: DecMinOpt = None,
    dec_max: DecMaxOpt = None,
    ra_col: Annotated[str, typer.Option("--ra-col", help="RA column of CATALOG.")] = "ra",
    dec_col: Annotated[str, typer.Option("--dec-col", help="Dec column of CATALOG.")] = "dec",
    cell: Annotated[
        float,
        typer.Option(
            "--cell", help="Cell size (deg) gathering CATALOG's positions into query boxes."
        ),
    ] = 1.0,
    margin: Annotated[
        float,
        typer.Option(
            "--margin",
            help="Arcsec added around the box or cells (>= a cutout's half-diagonal, 18 arcsec).",
        ),
    ] = 60.0,
    release: ReleaseOpt = 12,
    url: UrlOpt = None,
    page_size: PageOpt = 50_000,
    retries: RetriesOpt = 5,
    backoff: BackoffOpt = 2.0,
    timeout: TimeoutOpt = 300.0,
    spool: SpoolOpt = None,
    fresh: FreshOpt = False,
    keep_spool: KeepOpt = False,
    show_sql: ShowSqlOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    version: VersionOpt = False,
) -> None:
    from photoz_tools.sdss.query import plan_frames, unique_frames

    if not show_sql:
        checks.table_output(output, format)
    skybox = _box(box, ra_min, ra_max, dec_min, dec_max)
    if skybox is not None and catalog is not None:
        raise PzUsageError("give a CATALOG or a sky box, not both")
    if cell <= 0 or margin < 0:
        raise PzUsageError("--cell must be > 0 and --margin >= 0")
    if skybox is not None:
        boxes = [skybox.padded(margin / 3600.0) if margin > 0 else skybox]
    else:
        boxes, n = _catalog_boxes(catalog or "-", ra_col, dec_col, cell, margin)
        log(f"{n:,} positions from {catalog or 'stdin'} -> {len(boxes)} sky boxes")
    job = plan_frames(
        boxes=boxes,
        release=release,
        url=url,
        page_size=page_size,
        retries=retries,
        backoff=backoff,
        timeout=timeout,
        spool=spool,
        log=log,
    )
    if show_sql:
        for part in job.parts:
            print(part.build(page_size, None) + ";")
        return
    _run_and_write(job, output, format, fresh, keep_spool, None, finish=unique_frames)


main = main_for(app)

if __name__ == "__main__":
    main()
