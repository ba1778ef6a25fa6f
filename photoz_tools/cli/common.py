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
import re
import shlex
import sys
import textwrap
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


def prose(text: str) -> str:
    r"""Help text written as paragraphs, for rich to wrap to the terminal.

    Write help in the source as paragraphs separated by blank lines, wrapped at any width: the
    lines of a paragraph are joined into one, so rich wraps it once at the terminal's width (a
    line break kept in the string is a second, hand-made wrap, and leaves a fragment alone on a
    line at 80 columns). Indented lines (a worked example, a table) are kept as written, one a
    line, as is a paragraph that starts with typer's ``\b``. Rich markup (``[bold]``, ``\[``
    for a literal bracket) passes through.

    >>> prose("One paragraph\nwrapped by hand.\n\nExample:\n  pz-x -o y\n")
    'One paragraph wrapped by hand.\n\nExample:\n  pz-x -o y'
    """
    out = []
    for paragraph in re.split(r"\n[ \t]*\n", textwrap.dedent(text).strip("\n")):
        if paragraph.startswith("\b"):
            out.append(paragraph)
            continue
        lines: list[str] = []
        joining = False
        for line in paragraph.splitlines():
            if line[:1].isspace():  # preformatted: an example, a table
                lines.append(line.rstrip())
                joining = False
            elif joining:
                lines[-1] += " " + line.strip()
            else:
                lines.append(line.strip())
                joining = True
        out.append("\n".join(lines))
    return "\n\n".join(p for p in out if p.strip())


def make_app(name: str, help: str) -> typer.Typer:
    """A Typer app with the conventions every command shares; `help` ends with a worked example
    and is written as paragraphs (see `prose`)."""
    state.prog = name
    return typer.Typer(
        name=name,
        help=prose(help),
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
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="ADDRESS|local[:N]",
        help="With a catalogue folder: one dask.distributed task per partition, on the "
        "scheduler at ADDRESS (tcp://host:8786) or on N local worker processes (local: one per "
        "core). Each task runs in one single-threaded worker process (-j does not apply), which "
        "keeps what it loaded, such as a model bundle, for its next partitions.",
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


def rich_console(**kwargs: Any):
    """A rich Console whose closed pipe raises BrokenPipeError, so that the command ends
    quietly as Unix tools do (rich's own answer is a silent exit status 1)."""
    from rich.console import Console

    class PipeConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    return PipeConsole(**kwargs)


def console():
    """The stderr rich console (created on first use)."""
    global _console
    if _console is None:
        _console = rich_console(stderr=True, highlight=False)
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


# pydantic's words for a value typer could not convert, and the Unix tools' words for them
_VALUE_WORDS = (
    (r"Input should be a valid integer.*", "expected an integer"),
    (r"Input should be a valid number.*", "expected a number"),
    (r"Input should be a valid boolean.*", "expected true or false"),
    (r"Input should be greater than or equal to (\S+)", r"must be >= \1"),
    (r"Input should be greater than (\S+)", r"must be > \1"),
    (r"Input should be less than or equal to (\S+)", r"must be <= \1"),
    (r"Input should be less than (\S+)", r"must be < \1"),
    (r"Input should be (.*)", r"expected \1"),
)


_NOT_FINITE = ("nan", "inf", "infinity")


def _given_value(args: list[str], opts: list[str]) -> tuple[str, str] | None:
    """The option as typed and its text (`--steps abc`, `--steps=abc`, `-nabc`)."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                return opt, args[i + 1]
            if arg.startswith(opt + "=") or (len(opt) == 2 and arg.startswith(opt) and arg != opt):
                return opt, arg[len(opt) + (arg[len(opt)] == "=") :]
    return None


def _value_words(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "invalid value"
    for pattern, words in _VALUE_WORDS:
        if re.fullmatch(pattern, first):
            return re.sub(pattern, words, first)
    return first[:1].lower() + first[1:]


def _bad_value(exc: Any, args: list[str]) -> str:
    """`--steps abc: expected an integer`, with the option as typed and the text it got."""
    opts = list(getattr(exc.param, "opts", []) or [])
    name = opts[-1] if opts else str(exc.param.name).upper()
    given = _given_value(args, opts) if opts else None
    words = _value_words(exc.message)
    not_finite = given is not None and given[1].strip().lower().lstrip("+-") in _NOT_FINITE
    if not_finite and "finite" not in words:
        words = f"must be a finite number, {words.removeprefix('must be ')}"
    return f"{' '.join(given) if given else name}: {words}"


def _usage_message(exc: Exception, args: list[str]) -> str:
    """One line for a command-line error the parser found (typer/click's box otherwise)."""
    from typer._click import exceptions as cx

    see = f"(see {state.prog} --help)"
    if isinstance(exc, cx.NoSuchOption):
        near = f"; did you mean {exc.possibilities[0]}?" if exc.possibilities else ""
        return f"no such option {exc.option_name}{near} ({state.prog} --help lists them)"
    if isinstance(exc, cx.MissingParameter) and exc.param is not None:
        if exc.param.param_type_name == "argument":
            return f"missing argument {str(exc.param.name).upper()} {see}"
        return f"missing option {'/'.join(exc.param.opts)} {see}"
    if isinstance(exc, cx.BadParameter) and exc.param is not None:
        return f"{_bad_value(exc, args)} {see}"
    message = exc.format_message() if isinstance(exc, cx.ClickException) else str(exc)
    text = " ".join(message.split()).rstrip(".")
    extra = re.fullmatch(r"Got unexpected extra argument(?:s|\(s\))? \((.*)\)", text)
    if extra:
        return f"unexpected argument {extra.group(1)} {see}"
    if text.startswith("Option '") and "requires an argument" in text:
        return f"{text.split(chr(39))[1]} needs a value {see}"
    return f"{text[:1].lower() + text[1:]} {see}"


def _finite(original: Callable | None) -> Callable:
    """An option callback that refuses NaN/inf for every float option, then runs `original`."""
    import math

    def callback(ctx: Any, param: Any, value: Any) -> Any:
        values = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            from typer._click.exceptions import BadParameter

            raise BadParameter("must be a finite number", ctx=ctx, param=param)
        return original(ctx, param, value) if original is not None else value

    return callback


def _guard_params(command: Any) -> None:
    """Every option of the command (and its subcommands) refuses NaN/inf at parse time."""
    for param in getattr(command, "params", []):
        param.callback = _finite(param.callback)
    for sub in (getattr(command, "commands", None) or {}).values():
        _guard_params(sub)


def _option_names(command: Any) -> set[str]:
    names = {o for p in getattr(command, "params", []) for o in getattr(p, "opts", [])}
    for sub in (getattr(command, "commands", None) or {}).values():
        names |= _option_names(sub)
    return names


_MEMORY_HINTS: dict[str, str] = {}


def memory_hint(prog: str, hint: str) -> None:
    """Say what bounds a command's memory, for its out-of-memory line (default: its batch size)."""
    _MEMORY_HINTS[prog] = hint


def _out_of_memory(command: Any) -> str:
    hint = _MEMORY_HINTS.get(state.prog)
    if hint is None:
        batch = sorted(_option_names(command) & {"--batch-size", "--batch-rows"})
        hint = f"lower {batch[0]}" if batch else "give it a smaller input"
    return f"out of memory; {hint}"


def _wrap_callbacks(app: typer.Typer) -> None:
    for info in app.registered_commands:
        if info.callback is not None and not hasattr(info.callback, "__wrapped__"):
            info.callback = _quiet_broken_pipe(info.callback)
    if app.registered_callback is not None and app.registered_callback.callback is not None:
        cb = app.registered_callback.callback
        if not hasattr(cb, "__wrapped__"):
            app.registered_callback.callback = _quiet_broken_pipe(cb)


def run(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run a command: one line on stderr and exit 1 for a PzError, 2 for a usage error."""
    from typer._click import exceptions as cx

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before any lazy TensorFlow import
    state.prog = app.info.name or state.prog
    state.quiet = state.debug = False
    args = list(sys.argv[1:] if argv is None else argv)
    _wrap_callbacks(app)
    command = typer.main.get_command(app)
    _guard_params(command)
    try:
        code = command.main(args=args, prog_name=state.prog, standalone_mode=False)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except cx.UsageError as exc:
        return _error(_usage_message(exc, args), 2)
    except cx.ClickException as exc:
        return _error(" ".join(exc.format_message().split()), exc.exit_code)
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
    except (KeyboardInterrupt, typer.Abort):
        return _error("interrupted", 130)
    except MemoryError:
        return _error(_out_of_memory(command), 1)
    except Exception as exc:  # a bug: still one line unless --debug
        if state.debug:
            traceback.print_exc()
            return 1
        return _error(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug "
            "for the traceback and report it)",
            1,
        )
    return code if isinstance(code, int) else 0


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
