"""pz-mock: a simulated SDSS survey (catalogue, frame index, corrected frames) for tests and the
demo; `pz-mock serve DIR` answers as SkyServer and the SAS on 127.0.0.1.

Only parsing and reporting live here; the work is ``photoz_tools.mock.survey.mock``.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Annotated

import typer

from photoz_tools.cli.checks import bounds, one_of, output_folder
from photoz_tools.cli.common import (
    DebugOpt,
    QuietOpt,
    VersionOpt,
    command_line,
    console,
    fail,
    log,
    main_for,
    make_app,
    memory_hint,
    progress,
    prose,
    state,
    warn,
)
from photoz_tools.errors import PzUsageError

HELP = prose("""\
Simulate an SDSS-like imaging survey of Main Galaxy Sample galaxies, in the archive's own
formats, so every other pz-* command runs on it unchanged.

Intrinsic galaxies come from a colour-magnitude-redshift model fitted to the real MGS by
extreme deconvolution of its listed errors (with --photometry: each row's z, with colours drawn
from that model given z and the row's r; --photometry-mode as-measured renders the row's
measured magnitudes instead). One latent type drives colour and shape: bulge-to-total, a de
Vaucouleurs bulge and an exponential disk, Shen et al. (2003) sizes, drawn with GalSim at their
angular-diameter distance, with random b/a and angle, and Galactic extinction from a smooth
E(B-V) map. Frames are SDSS corrected frames (2048x1489, nanomaggies, TAN WCS, HDU1-3
calib/sky/astrometry) with per-band seeing, sky noise and gain, fainter neighbours and stars;
--deep-fraction puts galaxies in a "Stripe 82" region observed by --epochs runs.

The catalogue is measured from the rendered frames, as on the sky: its dered_petro_* and
petroMagErr_* are SDSS Petrosian photometry (r_P from the r band, flux within 2 r_P in every band)
with the neighbours, sky noise and PSF of the frames; the truth stays in true_mag_* (total,
dereddened) and r50_true.

Writes into --out DIR: catalog.parquet (pz-query's columns plus the truth), frames.parquet (the
frame index), frames/301/RUN/CAMCOL/frame-BAND-RUN6-CAMCOL-FIELD4.fits.bz2, the per-field
photometry under photometry/ and mock.json. Seeded and reproducible; a rerun with the same
options resumes.
""")
EXAMPLES = """\
[bold]Examples[/bold]

  pz-mock -n 3000 --seed 1 -o mock/

  pz-mock --photometry ../shared/data/mgs-photometry/SDSS_MGS.train \\
      --repeat 3 -o train-sky/

  pz-cutout mock/catalog.parquet --frames mock/frames -o cutouts.parquet
"""
SERVE_HELP = prose("""\
Serve a pz-mock survey folder as SkyServer (SQL over its catalogue and frame index) and as the
SAS (its frames) on 127.0.0.1 until Ctrl-C, so pz-query and pz-cutout run against it unchanged.
The URLs to pass them are printed on stdout.
""")
SERVE_EXAMPLES = """\
[bold]Examples[/bold]

  pz-mock serve mock/ --port 8765 &

  pz-query --url http://127.0.0.1:8765 -o mgs.parquet
"""

app = make_app("pz-mock", HELP)
memory_hint("pz-mock", "render fewer objects: lower -n, --repeat, --neighbours or --stars")

MAX_PER_FIELD = 10_000.0
_DENSE = "an SDSS field holds a few hundred objects to r = 22"
# bytes held per catalogue galaxy and per neighbour or star while the survey is drawn (measured
# with margin: the sky is held whole, one process per worker holds a copy of it)
_GALAXY_BYTES = 2_000
_OBJECT_BYTES = 400
_LISTEN_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL, None)


def _available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (None where there is none)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _check_memory(
    n: int | None, photometry: str | None, repeat: int, per_field: float, extra: float
) -> None:
    """Refuse, before any work, a survey that cannot fit in memory (it is drawn whole)."""
    galaxies = n if n is not None else (None if photometry else 1000)
    if galaxies is None:
        return
    galaxies *= repeat
    fields = galaxies / per_field + 2
    need = galaxies * _GALAXY_BYTES + fields * extra * _OBJECT_BYTES
    have = _available_bytes()
    if have is not None and need > have / 2:
        raise PzUsageError(
            f"-n {n} --repeat {repeat}: {galaxies:,} galaxies and {fields * extra:,.0f} "
            f"neighbours and stars need about {need / 2**30:.1f} GiB of memory, more than half "
            f"of the {have / 2**30:.1f} GiB available; make the survey in parts (several -o "
            "folders with other --seed values) or lower -n, --repeat, --neighbours, --stars"
        )


def _listen_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"--port {port}: already in use on {host}; pick another, or --port 0 for any free one"
        )
    if exc.errno == errno.EACCES:
        return (
            f"--port {port}: not allowed for this user (ports below 1024 need root); use --port 0"
        )
    return f"--host {host}: cannot listen there ({exc.strerror or exc}); 127.0.0.1 is the default"


def _check_port(host: str, port: int) -> None:
    """Fail before reading the survey when the port cannot be listened on."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        fail(_listen_error(host, port, exc))


@app.callback(invoke_without_command=True, epilog=EXAMPLES)
def mock_cmd(
    ctx: typer.Context,
    out: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--out",
            help="Folder to write the survey into (created; resumed when it holds "
            "the same survey).",
            show_default=False,
        ),
    ] = None,
    n: Annotated[
        int | None,
        typer.Option(
            "-n",
            "--galaxies",
            help="Galaxies to render (default: every --photometry row, or 1000 "
            "from the shipped model).",
            show_default=False,
            callback=bounds(1),
        ),
    ] = None,
    photometry: Annotated[
        str | None,
        typer.Option(
            "--photometry",
            help="Table with z and ugriz magnitudes (MGS whitespace file, FITS, "
            "Parquet, CSV; pz-query's dered_petro_* names work).",
            show_default=False,
        ),
    ] = None,
    photometry_mode: Annotated[
        str,
        typer.Option(
            "--photometry-mode",
            help="With --photometry: 'conditioned' keeps each row's z and draws its intrinsic "
            "ugriz from the shipped error-deconvolved model given z and the row's measured r; "
            "'as-measured' renders the row's measured magnitudes as the truth (the mock before "
            "issue 12: the catalogue's own noise frozen into the truth).",
            callback=one_of("conditioned", "as-measured"),
        ),
    ] = "conditioned",
    repeat: Annotated[
        int,
        typer.Option(
            "--repeat",
            help="Render each photometry row this many times (new shape, position, E(B-V), noise).",
            callback=bounds(1),
        ),
    ] = 1,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of every random draw.", callback=bounds(0))
    ] = 0,
    per_field: Annotated[
        float,
        typer.Option(
            "--per-field",
            help="Catalogue galaxies per field (the density: SDSS's MGS has ~3).",
            callback=bounds(0, MAX_PER_FIELD, low_open=True, why=_DENSE),
        ),
    ] = 200.0,
    neighbours: Annotated[
        float,
        typer.Option(
            "--neighbours",
            help="Fainter, uncatalogued galaxies (17.8 < r < 22) per field.",
            callback=bounds(0, MAX_PER_FIELD, why=_DENSE),
        ),
    ] = 60.0,
    stars: Annotated[
        float,
        typer.Option(
            "--stars",
            help="Stars (14 < r < 22) per field.",
            callback=bounds(0, MAX_PER_FIELD, why=_DENSE),
        ),
    ] = 30.0,
    deep_fraction: Annotated[
        float,
        typer.Option(
            "--deep-fraction",
            help="Share of galaxies in the multi-epoch 'Stripe 82' region.",
            callback=bounds(0, 1),
        ),
    ] = 0.0,
    epochs: Annotated[
        int,
        typer.Option(
            "--epochs", help="Runs (epochs) covering the deep region.", callback=bounds(1, 100)
        ),
    ] = 4,
    ebv: Annotated[
        float,
        typer.Option(
            "--ebv",
            help="Median E(B-V) of the mock's whole dust map, a smooth log-normal field "
            "varying over ~0.3-1 degree (the deep region's map is 1.5x): a small survey sees "
            "a local patch of it, whose own median may differ.",
            callback=bounds(0, 5),
        ),
    ] = 0.03,
    jobs: Annotated[
        int | None,
        typer.Option(
            "-j",
            "--jobs",
            help="Worker processes (default: all cores).",
            show_default=False,
            callback=bounds(1),
        ),
    ] = None,
    compress: Annotated[
        bool,
        typer.Option(
            "--compress/--no-compress",
            help="bzip2 the frames as the SAS does (--no-compress: "
            "plain .fits, ~2x faster; pz-cutout --frames reads either).",
        ),
    ] = True,
    no_frames: Annotated[
        bool,
        typer.Option("--catalog-only", help="Write the catalogue and frame index, not the frames."),
    ] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    version: VersionOpt = False,
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise PzUsageError("give the folder to write with -o/--out DIR")
    output_folder(out, "-o", "survey folder")
    _check_memory(n, photometry, repeat, per_field, neighbours + stars)
    from photoz_tools.mock.survey import mock

    with progress("rendering frames", unit="frames") as bar:

        def report(done: int, total: int) -> None:
            bar.update(total=total, completed=done)

        res = mock(
            out,
            n=n,
            photometry=photometry,
            photometry_mode=photometry_mode,
            seed=seed,
            per_field=per_field,
            neighbours=neighbours,
            stars=stars,
            repeat=repeat,
            deep_fraction=deep_fraction,
            epochs=epochs,
            jobs=jobs,
            compress=compress,
            ebv_median=ebv,
            frames=not no_frames,
            command=command_line(),
            progress=report,
        )
    if res.skipped:
        warn(res.skipped)
    if no_frames:
        rate = "catalogue only"
    elif res.frames_written < res.n_frames:
        rate = f"{res.n_frames - res.frames_written} frames were already there: resumed"
    else:
        rate = f"{res.n_galaxies / res.seconds:.0f} galaxies/s"
    log(
        f"{res.n_galaxies} galaxies over {res.area_deg2:.3f} deg2 ({res.density_deg2:.0f} per "
        f"deg2), {res.n_fields} fields, {res.frames_written} of {res.n_frames} frames written "
        f"in {res.seconds:.1f} s ({rate})"
    )
    log(f"catalogue {res.catalog}, frame index {res.frames_index}, frames under {out}/frames")


@app.command("serve", help=SERVE_HELP, epilog=SERVE_EXAMPLES)
def serve_cmd(
    folder: Annotated[str, typer.Argument(help="A pz-mock output folder.", show_default=False)],
    port: Annotated[
        int,
        typer.Option("--port", help="TCP port (0: any free one).", callback=bounds(0, 65535)),
    ] = 8765,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    _check_port(host, port)
    root = Path(folder)
    manifest = root / "mock.json"
    if not manifest.is_file():
        fail(f"{folder}: not a pz-mock survey (no mock.json); make one with pz-mock -o {folder}")
    import json

    from photoz_tools.sdss.standin import serve

    info = json.loads(manifest.read_text())
    catalog = root / info.get("catalog", "catalog.parquet")
    index = root / info.get("frames_index", "frames.parquet")
    for p in (catalog, index):
        if not p.is_file():
            fail(f"{p}: missing from the survey folder; rerun pz-mock -o {folder}")
    from photoz_tools.tables import read_table

    def ready(standin) -> None:
        print(f"skyserver {standin.url}", flush=True)
        print(f"sas {standin.sas_url}", flush=True)
        log(f"serving {folder} ({catalog.name}, {index.name}) on {standin.url}; Ctrl-C stops")
        if not state.quiet:
            console().print(f"  pz-query --url {standin.url} -o mgs.parquet", highlight=False)

    try:
        serve(
            catalog=read_table(str(catalog)),
            frames=read_table(str(index)),
            sas_root=root,
            host=host,
            port=port,
            ready=ready,
        )
    except BrokenPipeError:
        raise
    except OSError as exc:
        if exc.errno not in _LISTEN_ERRORS:
            raise
        fail(_listen_error(host, port, exc))


main = main_for(app)

if __name__ == "__main__":
    main()
