"""The checks every command makes before any work: option values, output names, input columns.

One place for them, so that a bad value, a bad output name or an input of the wrong kind gets
the same one-line answer from every command, and before anything is read, computed or written:
a usage error (exit 2) for what the command line got wrong, a PzError (exit 1) for an input
file that cannot be used.

Output rule (all commands): the folder that holds an output must exist; nothing creates it. A
folder output (a model bundle, a mock survey, the partitions of a catalogue folder) is itself
created, inside an existing folder. Files are written atomically with mode 0666 & ~umask.

Nothing heavy is imported at module level: `pz-* --help` imports this module.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer

from photoz_tools.errors import PzError, PzUsageError
from photoz_tools.paths import require_parent_folder

STDIO = ("", "-")
TABLE_EXTENSIONS = (
    ".parquet",
    ".pq",
    ".fits",
    ".fit",
    ".fits.gz",
    ".fits.bz2",
    ".csv",
    ".ecsv",
    ".vot",
    ".xml",
)
STDOUT_FORMATS = ("parquet", "fits", "csv", "ecsv", "votable")
IMAGE_FORMATS = ("parquet", "fits")  # the formats that hold array cells (images, PDFs)
IMAGE_EXTENSIONS = (".parquet", ".pq", ".fits", ".fit", ".fits.gz", ".fits.bz2")
_FORMAT_ALIASES = {"pq": "parquet", "fit": "fits", "vot": "votable", "xml": "votable"}


# --------------------------------------------------------------------------- option values


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = None if low is None else f"{'>' if low_open else '>='} {low:g}"
    hi = None if high is None else f"{'<' if high_open else '<='} {high:g}"
    if lo and hi:
        return f"{lo} and {hi}"
    return lo or hi or "finite"


def check_number(
    value: float | None,
    option: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    why: str = "",
) -> None:
    """PzUsageError "--seed -1: must be >= 0" for a value outside the range (None passes)."""
    if value is None:
        return
    bad = not math.isfinite(value)
    bad = bad or (low is not None and (value <= low if low_open else value < low))
    bad = bad or (high is not None and (value >= high if high_open else value > high))
    if bad:
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        rule = _range_text(low, high, low_open, high_open)
        kind = "an integer" if isinstance(value, int) else "a finite number"
        raise PzUsageError(f"{option} {shown}: must be {kind} {rule}{f' ({why})' if why else ''}")


def bounds(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    why: str = "",
) -> Callable[..., Any]:
    """An option callback that refuses values outside [low, high] (and NaN/inf) at parse time.

    >>> seed: Annotated[int, typer.Option("--seed", callback=bounds(0))] = 0
    """

    def callback(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if isinstance(v, int | float) and not isinstance(v, bool):
                try:
                    check_number(v, "", low, high, low_open=low_open, high_open=high_open, why=why)
                except PzUsageError as exc:
                    raise typer.BadParameter(str(exc).split(": ", 1)[1], param=param) from None
        return value

    return callback


def one_of(*choices: str) -> Callable[..., Any]:
    """An option callback that refuses a value outside `choices` at parse time (exit 2).

    >>> fill: Annotated[str, typer.Option("--fill", callback=one_of("zero", "nan"))] = "zero"
    """

    def callback(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
        if value is not None and value not in choices:
            raise typer.BadParameter(f"use {' or '.join(choices)}", param=param)
        return value

    return callback


def stdout_format(format: str | None, option: str = "--format") -> str | None:
    """The canonical name of a --format value; PzUsageError for an unknown one."""
    if format is None:
        return None
    name = format.lower().lstrip(".")
    name = _FORMAT_ALIASES.get(name, name)
    if name not in STDOUT_FORMATS:
        raise PzUsageError(f"{option} {format}: choose one of {', '.join(STDOUT_FORMATS)}")
    return name


# --------------------------------------------------------------------------- outputs


def output_file(
    path: str | None,
    option: str = "-o",
    extensions: Sequence[str] | None = TABLE_EXTENSIONS,
    what: str = "table",
) -> None:
    """Refuse, before any work, an output file name that cannot be written: a folder, an unknown
    extension (None: any), a missing folder. '-' and '' (stdout) pass."""
    if path is None or path in STDIO:
        return
    if os.path.isdir(path) or path.endswith(("/", os.sep)):
        raise PzUsageError(f"{option} {path}: a folder; name the {what} file")
    if extensions is not None and not path.lower().endswith(tuple(extensions)):
        raise PzUsageError(
            f"{option} {path}: cannot tell the {what} format from the name; end it in "
            + ", ".join(extensions)
        )
    require_parent_folder(path, option)


def stdout_table(format: str | None) -> None:
    """Refuse a binary table (Parquet, FITS) for a terminal on stdout, before any work."""
    import sys

    fmt = stdout_format(format) or "parquet"
    if fmt in ("parquet", "fits") and sys.stdout.isatty():
        raise PzUsageError(
            f"stdout is a terminal: refusing to print a binary {fmt} table there; give -o FILE, "
            "pipe it on, or choose --format csv"
        )


def table_output(path: str | None, format: str | None, option: str = "-o") -> str | None:
    """Check a table output (-o; '-' or '' is stdout) and --format before any work; returns the
    canonical format."""
    fmt = stdout_format(format)
    if path is None or path in STDIO:
        stdout_table(fmt)
    output_file(path, option)
    return fmt


def image_table_output(
    path: str | None, format: str | None, column: str = "image", option: str = "-o"
) -> str | None:
    """:func:`table_output` for a table that carries an image column: the text formats (CSV,
    ECSV, VOTable) cannot hold its cells, so they are refused before any work."""
    fmt = table_output(path, format, option)
    if path is None or path in STDIO:
        if (fmt or "parquet") not in IMAGE_FORMATS:
            raise PzUsageError(
                f"--format {format}: {fmt.upper()} cannot hold the '{column}' column's "
                "cells; choose parquet or fits"
            )
    elif not path.lower().endswith(IMAGE_EXTENSIONS):
        raise PzUsageError(
            f"{option} {path}: a text table cannot hold the '{column}' column's cells; "
            f"end the name in {', '.join(IMAGE_EXTENSIONS)}"
        )
    return fmt


def fits_output_names(names: Sequence[str], path: str | None, format: str | None) -> None:
    """Refuse, before any work, input columns that a FITS output would have to carry and cannot
    hold exactly (names equal but for case, non-ASCII...): the writer refuses them too, but only
    at the end, after the work, and a resumable command would leave its partial state behind."""
    from photoz_tools.tables import detect_format
    from photoz_tools.tables.fits import check_fits_names

    named = path is not None and path not in STDIO
    # the writer's rule: a file's extension decides, --format only for stdout
    fmt = (detect_format(path) if named else None) or stdout_format(format)
    if fmt == "fits":
        check_fits_names(names, str(path) if named else "stdout")


def output_folder(path: str | None, option: str = "-o", what: str = "folder") -> None:
    """Refuse a folder output that names an existing file, or whose parent folder is missing."""
    if path is None or path in STDIO:
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise PzUsageError(f"{option} {path}: an existing file; name a {what} (a folder)")
    require_parent_folder(path, option)


# --------------------------------------------------------------------------- inputs


def peek_schema(path: str | None) -> Any:
    """The Arrow schema of a FITS/Parquet input file, read from its header only; None for stdin,
    folders, other formats and unreadable files (the reader then says what is wrong)."""
    if path is None or path in STDIO or not os.path.isfile(path):
        return None
    from photoz_tools.tables import detect_format, open_table

    if detect_format(path) not in ("parquet", "fits"):
        return None
    try:
        with open_table(path) as reader:
            return reader.schema
    except (PzError, OSError):
        return None


def cell_shape(arrow_type: Any) -> tuple[int, ...]:
    """The shape of one cell of an Arrow column type: () for a scalar column."""
    import pyarrow as pa

    if isinstance(arrow_type, pa.FixedShapeTensorType):
        return tuple(int(s) for s in arrow_type.shape)
    if pa.types.is_fixed_size_list(arrow_type):
        return (arrow_type.list_size, *cell_shape(arrow_type.value_type))
    return ()


def numeric_column(schema: Any, name: str, option: str, where: str, unit: str = "") -> None:
    """PzError when column `name` exists and does not hold plain numbers (strings, lists)."""
    import pyarrow as pa

    if schema is None or name not in schema.names:
        return
    t = schema.field(name).type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return
    kind = "strings" if pa.types.is_string(t) or pa.types.is_large_string(t) else str(t)
    raise PzError(
        f"{where}: column '{name}' ({option}) holds {kind}; expected numbers"
        + (f" ({unit})" if unit else "")
    )


def image_column(
    schema: Any, name: str, shape: Sequence[int], option: str, where: str, whose: str
) -> None:
    """PzError when the image column's cells are not `shape` (the shape `whose` takes)."""
    if schema is None or name not in schema.names:
        return
    import pyarrow as pa

    t = schema.field(name).type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return  # cell lengths are in the data, not the header: the reader checks them
    found = cell_shape(t)
    if tuple(found) == (math.prod(shape),):
        return  # flat cells of the right size (pandas, LSDB) are reshaped by the reader
    if tuple(found) != tuple(shape):
        got = "scalars" if not found else f"{tuple(found)} cells"
        about = f" ({option})" if option else ""
        raise PzError(
            f"{where}: column '{name}'{about} holds {got}; {whose} takes {tuple(shape)} "
            "(64x64 ugriz cutouts from pz-cutout)"
        )


# --------------------------------------------------------------------------- writing


@contextmanager
def atomic_path(dest: str) -> Iterator[str]:
    """A temporary path beside `dest` (same extension) for a writer that takes a file name;
    renamed onto `dest` with mode 0666 & ~umask when the block succeeds, removed when it fails."""
    folder, base = os.path.split(os.path.abspath(dest))
    suffix = os.path.splitext(base)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
