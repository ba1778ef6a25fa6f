"""pz-score: predictions (+ truth) -> bias, sigma_MAD, eta, CRPS, PIT flatness, width68, N.

Only parsing, reporting and output live here; the work is ``photoz_tools.scoring``.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from photoz_tools.cli import checks
from photoz_tools.cli.common import (
    DebugOpt,
    FormatOpt,
    InputArg,
    OutputOpt,
    QuietOpt,
    VersionOpt,
    command_line,
    log,
    main_for,
    make_app,
    progress,
    prose,
    rich_console,
    state,
    warn,
)
from photoz_tools.errors import PzUsageError

HELP = prose(
    "Score photometric redshifts against spectroscopic truth. "
    "The metrics are those of Pasquet et al. (2019): bias, sigma_MAD and the outlier rate eta "
    "of dz = (zphot - zspec)/(1 + zspec), and where the table has PDFs the mean CRPS (exact "
    "for the histogram PDF), the flatness of the PIT "
    "(Kolmogorov-Smirnov and Cramer-von Mises statistics against uniform) and the mean width "
    "of the central 68 % interval."
    "\n\n"
    "The table of results is the command's output: printed on stdout, and with -o also "
    "written as a machine-readable table (.csv, .json, .fits, .parquet by extension; with "
    "-o - that table goes to stdout in --format and the printed one to stderr)."
    "\n\n"
    "INPUT is a predictions table (pz-predict's output, or any table with a photo-z column), "
    "read in batches: PDFs are reduced to PIT, CRPS and width per batch, never held whole. "
    "The estimator zphot uses the column pdf, another estimator X the column X_pdf (or "
    "X_width68); bin edges come from the file metadata pz_bin_edges, else 180 bins over "
    "[0, 0.4]. Rows with a null photo-z (flagged predictions) are left out with a count on "
    "stderr; rows repeating an id are refused unless --dedupe says which to keep."
)
EXAMPLES = """\
[bold]Examples[/bold]

  The CNN beside Beck et al. (2016), with the summary figure and a CSV:
  pz-score zphot.parquet --zphot zphot,zphot_b16 --plot scores.png -o scores.csv

  Table 1 (per fold, mean, std) and Table 2's trials (drop the widest PDFs):
  pz-score zphot.parquet --group fold
  pz-score zphot.parquet --drop-widest 10,20

  In bins of spectroscopic redshift; the truth from a catalogue joined by id:
  pz-score zphot.parquet --by z --bins 0,0.05,0.1,0.2,0.4
  pz-score preds.csv --truth-table mgs.fits --id specObjID --dedupe first
"""

app = make_app("pz-score", HELP)

# display: column -> (header, format)
_SHOW = {
    "estimator": ("estimator", "{}"),
    "drop_widest": ("drop %", "{:g}"),
    "by_lo": ("{by} from", "{:.4g}"),
    "by_hi": ("to", "{:.4g}"),
    "group": ("{group}", "{}"),
    "N": ("N", "{:,}"),
    "N_excluded": ("N excluded", "{:,}"),
    "bias": ("bias", "{:.3g}"),
    "sigma_mad": ("σ_MAD", "{:.3g}"),
    "eta": ("η %", "{:.3g}"),
    "crps": ("CRPS", "{:.4g}"),
    "pit_ks": ("PIT KS", "{:.4f}"),
    "pit_cvm": ("PIT CvM", "{:.4g}"),
    "width68": ("width68", "{:.4g}"),
}
_JSON_EXT = (".json",)
_OUT_EXT = (
    ".json",
    ".csv",
    ".ecsv",
    ".fits",
    ".fit",
    ".fits.gz",
    ".parquet",
    ".pq",
    ".vot",
    ".xml",
)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return "–"
    return fmt.format(value)


def _print_table(
    rows: list[dict[str, Any]], title: str, to_stderr: bool, by: str | None, group: str | None
) -> None:
    from rich import box
    from rich.table import Table

    stream = sys.stderr if to_stderr else sys.stdout
    tty = stream.isatty()
    keys = [k for k in _SHOW if any(k in r for r in rows)]
    # N_excluded only where some cell left rows out
    keys = [k for k in keys if k != "N_excluded" or any(r.get(k) for r in rows)]
    # PDF metrics only where some estimator has them
    keys = [
        k
        for k in keys
        if k not in ("crps", "pit_ks", "pit_cvm", "width68")
        or any(r.get(k) == r.get(k) and r.get(k) is not None for r in rows)
    ]
    table = Table(box=box.SIMPLE_HEAD if tty else box.ASCII2)
    cells = []
    for r in rows:
        line = [_cell(r.get(k), _SHOW[k][1]) for k in keys]
        if r.get("group") == "std":  # N there is the total, already on the mean row
            for k in ("N", "N_excluded"):
                if k in keys:
                    line[keys.index(k)] = ""
        cells.append(line)
    for i, k in enumerate(keys):
        header = _SHOW[k][0].format(by=by or "", group=group or "group")
        width = max([len(header), *(len(c[i]) for c in cells)])
        table.add_column(
            header,
            justify="left" if k in ("estimator", "group") else "right",
            no_wrap=True,
            min_width=width,
        )
    # never drop or elide a column: a narrow terminal wraps the lines instead
    need = sum(c.min_width or 0 for c in table.columns) + 3 * len(keys) + 4
    width = max(need, rich_console(file=stream).width) if tty else max(need, 100)
    console = rich_console(
        file=stream, highlight=False, width=width, no_color=not tty, force_terminal=tty or None
    )
    for r, line in zip(rows, cells, strict=True):
        style = "dim" if r.get("group") == "std" and tty else None
        if r.get("group") == "mean" and tty:
            style = "bold"
        table.add_row(*line, style=style)
    console.print(title, style="bold" if tty else None, soft_wrap=True, markup=False)
    console.print(table)


def _write_output(table: Any, output: str, format: str | None) -> None:
    from photoz_tools.tables import provenance_metadata, write_table

    if output != "-" and output.lower().endswith(_JSON_EXT) or (output == "-" and format == "json"):
        _write_json(table, output)
        return
    write_table(
        table,
        output,
        format=format if output == "-" else None,
        provenance=provenance_metadata(
            command_line(), [table.schema.metadata.get(b"pz_score_source", b"").decode()]
        ),
    )


def _write_json(table: Any, output: str) -> None:
    """A JSON list of records (NaN -> null), atomically."""
    import json
    import math

    rows = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in table.to_pylist()
    ]
    text = json.dumps(rows, indent=1) + "\n"
    if output == "-":
        sys.stdout.write(text)
        return
    with checks.atomic_path(output) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def _check_outputs(output: str, format: str | None, plot: str | None) -> None:
    """-o, --format and --plot, before any work (usage errors, exit 2)."""
    if not (format is not None and format.lower() == "json"):
        checks.stdout_format(format)
        if output == "-":
            checks.stdout_table(format)
    checks.output_file(output, "-o", _OUT_EXT, "scores table")
    checks.output_file(plot, "--plot", (".png", ".pdf", ".svg"), "figure")


@app.command(help=HELP, epilog=EXAMPLES)
def score(
    input: InputArg = "-",
    truth: Annotated[
        str,
        typer.Option(
            "--truth",
            help="Column of spectroscopic redshifts (in INPUT, or in --truth-table).",
        ),
    ] = "z",
    truth_table: Annotated[
        str | None,
        typer.Option(
            "--truth-table",
            help="Catalogue holding the truth, joined to INPUT by --id.",
            show_default=False,
        ),
    ] = None,
    id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="Id column for the join and the duplicate check (default: the first of "
            "objID, specObjID, id present).",
            show_default=False,
        ),
    ] = None,
    zphot: Annotated[
        str,
        typer.Option(
            "--zphot",
            help="Photo-z column(s) to score side by side, comma-separated, e.g. zphot,zphot_b16.",
        ),
    ] = "zphot",
    eta_threshold: Annotated[
        float,
        typer.Option("--eta-threshold", help="|dz| above which a galaxy is an outlier (eta)."),
    ] = 0.05,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="Also score in bins of this numeric column (z, zphot, ebv, ...).",
            show_default=False,
        ),
    ] = None,
    bins: Annotated[
        str | None,
        typer.Option(
            "--bins",
            help="With --by: N equal-width bins over the data, or edges "
            "'0,0.1,0.2,0.4' (last bin closed); 10 bins if omitted.",
            show_default=False,
        ),
    ] = None,
    drop_widest: Annotated[
        str | None,
        typer.Option(
            "--drop-widest",
            help="Extra trials removing these percentages of the widest PDFs "
            "(by width68), e.g. 10,20 (Table 2).",
            show_default=False,
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="Score each value of this column (e.g. fold) plus mean and std over "
            "them (Table 1).",
            show_default=False,
        ),
    ] = None,
    dedupe: Annotated[
        str,
        typer.Option(
            "--dedupe",
            help="Rows repeating an id: 'error' refuses them, 'first'/'last' keep one "
            "of each, 'all' scores every row.",
        ),
    ] = "error",
    drop_nan: Annotated[
        bool,
        typer.Option(
            "--drop-nan",
            help="Drop rows whose truth is NaN/inf or impossible (< -0.01 or > 10) "
            "instead of failing.",
        ),
    ] = False,
    plot: Annotated[
        str | None,
        typer.Option(
            "--plot",
            help="Write a summary figure (zphot vs zspec, dz and PIT histograms, mean "
            "dz vs z) to this .png/.pdf/.svg.",
            show_default=False,
        ),
    ] = None,
    output: OutputOpt = "",
    format: FormatOpt = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="Rows per batch read (memory is bounded by it).",
            show_default=False,
        ),
    ] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    version: VersionOpt = False,
) -> None:
    from photoz_tools import scoring

    if not eta_threshold > 0:
        raise PzUsageError(f"--eta-threshold {eta_threshold:g}: must be > 0")
    if dedupe not in scoring.DEDUPE_CHOICES:
        raise PzUsageError(f"--dedupe {dedupe}: choose one of {', '.join(scoring.DEDUPE_CHOICES)}")
    if bins is not None and by is None:
        raise PzUsageError("--bins needs --by COLUMN")
    if input in ("-", "") and sys.stdin.isatty():
        raise PzUsageError("no input: name a predictions table, or pipe one in")
    if batch_size is not None and batch_size < 1:
        raise PzUsageError(f"--batch-size {batch_size}: must be >= 1")
    spec = scoring.parse_bins(bins) if bins is not None else None
    drops = scoring.parse_drop_widest(drop_widest) if drop_widest else []
    _check_outputs(output, format, plot)

    with progress("scoring", total=None) as bar:

        def tick(n: int, total: int | None = None) -> None:
            if total is not None:
                bar.update(total=total)
            bar.advance(n)

        data = scoring.collect(
            input,
            truth=truth,
            zphot=zphot,
            truth_table=truth_table,
            id=id,
            by=by,
            group=group,
            dedupe=dedupe,
            drop_nan=drop_nan,
            batch_rows=batch_size,
            warn=warn,
            progress=tick,
        )
    rows = scoring.metrics_rows(
        data, eta_threshold=eta_threshold, bins=spec, drop_widest=drops, warn=warn
    )
    table = scoring.rows_to_table(rows, scoring.table_metadata(data, eta_threshold))
    _write_results(table, len(rows), data, output, format, plot, eta_threshold)
    if output == "-" and state.quiet:
        return
    title = f"{data.source}: photo-z vs {truth} (|dz| > {eta_threshold:g} for η)"
    _print_table(rows, title, to_stderr=output == "-", by=by, group=group)


def _write_results(
    table: Any,
    n_rows: int,
    data: Any,
    output: str,
    format: str | None,
    plot: str | None,
    eta_threshold: float,
) -> None:
    """The figure is drawn into a temporary file first, so that a failure of either leaves
    neither the table nor the figure behind."""
    if not plot:
        _write_table_output(table, n_rows, output, format)
        return
    from photoz_tools.plots import score_figure

    with checks.atomic_path(plot) as tmp:
        score_figure(data, tmp, eta_threshold=eta_threshold)
        _write_table_output(table, n_rows, output, format)
    log(f"wrote the figure to {plot}")


def _write_table_output(table: Any, n_rows: int, output: str, format: str | None) -> None:
    if output:
        _write_output(table, output, format)
        if output != "-":
            log(f"wrote {n_rows} row{'s' if n_rows != 1 else ''} to {output}")


main = main_for(app)

if __name__ == "__main__":
    main()
