"""The shared base of every pz-* command (csvkit's way).

It owns what every command does the same: the common options (input, -o, --format, -q, --debug,
--version), friendly one-line errors with exit status 1 (2 for usage), a quiet end on a closed
pipe, logging and progress bars on stderr. A command module only declares its options and wires
them to a plain function of the package.

Nothing here imports numpy, pyarrow or astropy: `pz-* --help` must answer in well under a second.
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from photoz_tools import __version__
from photoz_tools.errors import PzError, PzUsageError


class _State:
    """Per-process flags set by the common options (one command runs per process)."""

    prog: str = "pz"
    quiet: bool = False
    debug: bool = False


state = _State()


def make_app(name: str, help: str) -> typer.Typer:
    """A Typer app with the conventions every command shares; `help` ends with a worked example."""
    state.prog = name
    return typer.Typer(
        name=name,
        help=help,
        add_completion=False,
        rich_markup_mode="rich",
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    )


# --------------------------------------------------------------------------- common options


def _version_callback(value: bool) -> None:
    if value:
        print(f"{state.prog} (photoz-tools) {__version__}")
        raise typer.Exit(0)


def _quiet_callback(value: bool) -> bool:
    state.quiet = state.quiet or bool(value)
    return value


def _debug_callback(value: bool) -> bool:
    state.debug = state.debug or bool(value)
    return value


InputArg = Annotated[
    str,
    typer.Argument(
        help="Input table: FITS (.fits, .fit, .fits.gz, .fits.bz2), Parquet (.parquet, .pq), "
        "CSV/ECSV/VOTable for tables without images. '-' or nothing reads stdin "
        "(format sniffed from its first bytes).",
        show_default=False,
    ),
]
OutputOpt = Annotated[
    str,
    typer.Option(
        "-o",
        "--output",
        help="Output path (format from its extension, written atomically); '-' is stdout.",
        show_default=False,
    ),
]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="Format of the table written to stdout: parquet (default), fits, csv, ecsv, votable.",
        show_default=False,
    ),
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        help="With a catalogue folder: only the partitions of shard I of N (I from 0, as "
        "Slurm's --array=0-<N-1>); the N shards cover every partition once.",
        show_default=False,
    ),
]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "-q",
        "--quiet",
        help="No progress bars, logs or warnings on stderr.",
        callback=_quiet_callback,
        is_eager=True,
    ),
]
DebugOpt = Annotated[
    bool,
    typer.Option(
        "--debug",
        help="Show the full traceback of an error.",
        callback=_debug_callback,
        is_eager=True,
    ),
]
VersionOpt = Annotated[
    bool,
    typer.Option(
        "--version", help="Print the version and exit.", callback=_version_callback, is_eager=True
    ),
]


# --------------------------------------------------------------------------- stderr reporting


_console = None


def console():
    """The stderr rich console (created on first use)."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True, highlight=False)
    return _console


def log(message: str) -> None:
    """A progress or summary line on stderr, silenced by -q."""
    if not state.quiet:
        console().print(f"[dim]{state.prog}:[/dim] {message}", markup=True, soft_wrap=True)


def warn(message: str) -> None:
    """A warning on stderr (counts of dropped or flagged rows go here), silenced by -q."""
    if not state.quiet:
        console().print(f"{state.prog}: [yellow]warning:[/yellow] {message}", soft_wrap=True)


class _NoProgress:
    def advance(self, n: float = 1) -> None:
        pass

    def update(self, **kwargs: Any) -> None:
        pass


class _RichTask:
    def __init__(self, progress, task_id) -> None:
        self._progress = progress
        self._task = task_id

    def advance(self, n: float = 1) -> None:
        self._progress.advance(self._task, n)

    def update(self, **kwargs: Any) -> None:
        """Set total=, completed= or fields shown by the bar (e.g. loss=)."""
        self._progress.update(self._task, **kwargs)


@contextmanager
def progress(
    description: str, total: float | None = None, unit: str = "rows", fields: tuple[str, ...] = ()
) -> Iterator[_NoProgress | _RichTask]:
    """A rich progress bar on stderr for long work, shown only when stderr is a terminal.

    `fields` names extra values shown after the bar (e.g. ("loss", "val_loss")); set them with
    ``task.update(loss=0.3)``.
    """
    if state.quiet or not sys.stderr.isatty():
        yield _NoProgress()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    columns += [TextColumn(f"{f}={{task.fields[{f}]}}") for f in fields]
    with Progress(*columns, console=console(), transient=False) as bar:
        task = bar.add_task(description, total=total, **{f: "-" for f in fields})
        yield _RichTask(bar, task)


# --------------------------------------------------------------------------- running a command


def command_line() -> str:
    """The command line as typed, for provenance metadata."""
    return " ".join(shlex.quote(a) for a in [state.prog, *sys.argv[1:]])


def fail(message: str) -> None:
    """Raise the one-line user error (exit 1)."""
    raise PzError(message)


def _quiet_broken_pipe(func: Callable) -> Callable:
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BrokenPipeError:
            _end_on_closed_pipe()

    return wrapper


def _end_on_closed_pipe() -> None:
    # The reader went away (`| head`): end quietly, as Unix tools killed by SIGPIPE do (141).
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
    sys.exit(141)


def _error(message: str, code: int) -> int:
    sys.stderr.write(f"{state.prog}: error: {message}\n")
    return code


def run(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run a command: one line on stderr and exit 1 for a PzError, 2 for a usage error."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before any lazy TensorFlow import
    for info in app.registered_commands:
        if info.callback is not None and not hasattr(info.callback, "__wrapped__"):
            info.callback = _quiet_broken_pipe(info.callback)
    if app.registered_callback is not None and app.registered_callback.callback is not None:
        cb = app.registered_callback.callback
        if not hasattr(cb, "__wrapped__"):
            app.registered_callback.callback = _quiet_broken_pipe(cb)
    command = typer.main.get_command(app)
    try:
        command.main(args=argv, prog_name=state.prog, standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except PzUsageError as exc:
        if state.debug:
            traceback.print_exc()
        return _error(f"{exc} (see {state.prog} --help)", 2)
    except PzError as exc:
        if state.debug:
            traceback.print_exc()
        return _error(str(exc), 1)
    except BrokenPipeError:
        _end_on_closed_pipe()
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    except MemoryError:
        return _error("out of memory; lower --batch-size", 1)
    except Exception as exc:  # a bug: still one line unless --debug
        if state.debug:
            traceback.print_exc()
            return 1
        return _error(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug "
            "for the traceback and report it)",
            1,
        )
    return 0


def main_for(app: typer.Typer) -> Callable[[], None]:
    """The console-script entry point of a command module."""

    def main() -> None:
        sys.exit(run(app))

    return main


def not_yet_available(name: str, issue: str) -> typer.Typer:
    """A command that another issue delivers: it says so and fails, never pretends to work."""
    app = make_app(name, f"{name}: not yet available in this version ({issue}).")

    @app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def _cmd(ctx: typer.Context, version: VersionOpt = False) -> None:
        fail(f"{name} is not yet available in photoz-tools {__version__} ({issue})")

    return app
