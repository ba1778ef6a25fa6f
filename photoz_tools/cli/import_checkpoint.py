"""pz-import: the authors' released TensorFlow-1 weights -> a model bundle for pz-predict.

Only parsing and reporting live here; the work is ``photoz_tools.model.tf1_checkpoint``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from photoz_tools.cli.common import (
    DebugOpt,
    QuietOpt,
    VersionOpt,
    log,
    main_for,
    make_app,
    prose,
)

HELP = prose("""\
Turn the trained network released by the authors of Pasquet et al. (2019) into a bundle.

CHECKPOINT is their pretrained_model/ folder (checkpoint, -120000.index and
-120000.data-00000-of-00001; the -120000.meta graph is not needed), a checkpoint prefix, or the
zip that holds the folder. The weights are copied by name into the paper network (their
inception branch order), checked variable by variable for name and shape; Adam's slots are
skipped. The bundle predicts over their 180 bins on 0-0.4 from the nanomaggy cube as it is
(input scaling none) and E(B-V), and its manifest names the source, the data file's sha256 and
the training step.

Nothing is written unless the whole checkpoint reads and matches: a missing or truncated file, a
checkpoint of another network or a zip without a checkpoint is refused with one line.
pz-predict gives zphot as the PDF's mean over bin midpoints (their test.py used the bins' left
edges, which puts every zphot 0.0011 low).
""")
EXAMPLES = """\
[bold]Examples[/bold]

  pz-import pretrained_model.zip -o authors/ --default

  pz-pack data_example.npz -o ex.parquet
  pz-predict -m authors/ ex.parquet | pz-score --truth z
"""

app = make_app("pz-import", HELP)


@app.command(help=HELP, epilog=EXAMPLES)
def main_command(
    checkpoint: Annotated[
        str,
        typer.Argument(
            help="The authors' pretrained_model/ folder, a checkpoint prefix, or its zip.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str, typer.Option("-o", "--output", help="Bundle folder to write.", show_default=False)
    ] = "",
    default: Annotated[
        bool, typer.Option("--default", help="Register the bundle as the default of pz-predict.")
    ] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing bundle folder.")] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
    version: VersionOpt = False,
) -> None:
    from photoz_tools.errors import PzUsageError

    if not output:
        raise PzUsageError("-o BUNDLE is required (the bundle folder to write)")
    from photoz_tools.cli.checks import output_folder

    output_folder(output, "-o", "bundle folder")
    from photoz_tools.model import bundle, tf1_checkpoint

    path = tf1_checkpoint.import_checkpoint(checkpoint, output, force=force, log=log)
    if default:
        bundle.set_default(path)
    m = bundle.read_manifest(path)
    src = m["source"]
    log(
        f"wrote {path}: {src['variables']} variables of step {src['step']} "
        f"(data sha256 {src['data_sha256'][:12]}...)"
        + (" (registered as the default bundle)" if default else "")
    )


main = main_for(app)

if __name__ == "__main__":
    main()
