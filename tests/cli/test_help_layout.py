"""Every --help reads well at 80 columns: prose is written as paragraphs and wrapped by rich, never
broken by hand (which rich then wraps again, leaving fragments such as "pz-query output)" alone on a
line), and the worked examples stay verbatim, one command a line.

The check is exact rather than a length heuristic: rich wraps greedily, so within a paragraph a line
is never followed by a word that would have fit on it. A line that is followed by a continuation
whose first word would have fit was broken by hand.
"""

from __future__ import annotations

import re

import pytest
import typer

from photoz_tools.cli import manpages

WIDTH = 80
BOX_SIDE = "│"


def _helps() -> list[tuple[str, tuple[str, ...]]]:
    """(command, subcommand path) of every --help the toolkit has."""
    import importlib

    out = []
    for command in manpages.COMMANDS:
        app = importlib.import_module(manpages.module_name(command)).app
        out.append((command, ()))
        click_obj = typer.main.get_command(app)
        for sub in sorted(getattr(click_obj, "commands", None) or {}):
            out.append((command, (sub,)))
    return out


HELPS = _helps()


def _first_word(line: str) -> str:
    return line.split()[0] if line.split() else ""


def _orphans(lines: list[str], width: int | None = None) -> list[str]:
    """Lines of one paragraph (already stripped of padding) that were broken by hand."""
    if width is None:
        width = max((len(line) for line in lines), default=0)
    return [
        f"{a!r} then {b!r}"
        for a, b in zip(lines, lines[1:], strict=False)
        if not b.startswith("[") and len(a) + 1 + len(_first_word(b)) <= width
    ]


def _panel_orphans(panel: list[str]) -> list[str]:
    """Hand breaks in the help cells of one rich panel (options, arguments, commands)."""
    rows = [line.strip()[1:-1] for line in panel if line.strip().startswith(BOX_SIDE)]
    rows = [r for r in rows if r.strip()]
    # continuation lines of a cell start in the help column, with nothing to their left
    starts = [len(r) - len(r.lstrip()) for r in rows]
    continued = [s for s in starts if s > 2]
    if not continued:
        return []
    col = max(set(continued), key=continued.count)
    cells: list[list[str]] = []
    for r in rows:
        if r[:col].strip() or not cells:
            cells.append([])
        cells[-1].append(r[col:].strip())
    width = max(len(t) for cell in cells for t in cell)
    found = []
    for cell in cells:
        found += _orphans([t for t in cell if t], width)
    return found


def _layout_problems(text: str) -> list[str]:
    """Hand breaks anywhere in a rendered --help but its epilog (the worked examples, after the
    last panel: preformatted, checked by test_examples_stay_verbatim)."""
    lines = text.splitlines()
    ends = [i for i, line in enumerate(lines) if line.strip().startswith("╰")]
    if ends:
        lines = lines[: ends[-1] + 1]
    problems: list[str] = []
    panel: list[str] | None = None
    block: list[str] = []

    def close_block() -> None:
        problems.extend(_orphans(block, WIDTH - 2))
        block.clear()

    for line in lines:
        stripped = line.strip()
        if stripped.startswith("╭"):
            close_block()
            panel = []
        elif stripped.startswith("╰"):
            problems.extend(_panel_orphans(panel or []))
            panel = None
        elif panel is not None:
            panel.append(line)
        elif not stripped or stripped.startswith("Usage:") or line.startswith("   "):
            close_block()  # a blank line, the usage line or an indented (preformatted) line
        else:
            block.append(stripped)
    close_block()
    return problems


_RENDERED: dict[tuple[str, tuple[str, ...]], str] = {}


def _render(cli, command: str, sub: tuple[str, ...]) -> str:
    """The --help of pz-COMMAND [SUB] at 80 columns (rendered once per session)."""
    if (command, sub) in _RENDERED:
        return _RENDERED[command, sub]
    env = {"COLUMNS": str(WIDTH), "TERMINAL_WIDTH": str(WIDTH)}
    out = cli(f"pz-{command}", *sub, "--help", env=env)
    assert out.returncode == 0, out.stderr.decode()
    # CI forces colour (GITHUB_ACTIONS): the layout is in the text, not the escapes
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout.decode())
    _RENDERED[command, sub] = text
    return text


def _ids(item: tuple[str, tuple[str, ...]]) -> str:
    return " ".join((f"pz-{item[0]}", *item[1]))


@pytest.mark.parametrize("item", HELPS, ids=_ids)
def test_help_has_no_hand_broken_lines(cli, item):
    command, sub = item
    text = _render(cli, command, sub)
    if "not yet available" in text:
        pytest.skip(f"pz-{command} is not delivered yet")
    problems = _layout_problems(text)
    assert not problems, "hand-broken help lines at 80 columns:\n" + "\n".join(problems)
    assert max(len(line) for line in text.splitlines()) <= WIDTH


@pytest.mark.parametrize("item", HELPS, ids=_ids)
def test_examples_stay_verbatim(cli, item):
    """Each example line of the epilog appears whole on one line of the rendered help."""
    import importlib

    command, sub = item
    click_obj = typer.main.get_command(importlib.import_module(manpages.module_name(command)).app)
    for name in sub:
        click_obj = click_obj.commands[name]
    from rich.text import Text

    examples = [
        Text.from_markup(line).plain.strip()
        for line in (click_obj.epilog or "").splitlines()
        if line.startswith(" ") and line.strip()
    ]
    if not examples:
        pytest.skip("no examples")
    text = _render(cli, command, sub)
    shown = {re.sub(r"\s+", " ", line.strip()) for line in text.splitlines()}
    missing = [e for e in examples if re.sub(r"\s+", " ", e) not in shown]
    assert not missing, f"examples wrapped or changed at {WIDTH} columns: {missing}"


def test_the_check_finds_a_hand_break():
    text = (
        " Galaxies take z and ugriz from --photometry (the real MGS photometry, or any\n"
        " pz-query output)\n"
        " or from a colour-magnitude-redshift model the package ships.\n"
    )
    assert _layout_problems(text)
    wrapped = (
        " Galaxies take z and ugriz from --photometry (the real MGS photometry, or any\n"
        " pz-query output) or from a colour-magnitude-redshift model the package ships.\n"
    )
    assert not _layout_problems(wrapped)
    panel = (
        "╭─ Commands ──────────────────────────────────────────────────────────────────╮\n"
        "│ serve  Serve a pz-mock survey folder as SkyServer (SQL over its catalogue    │\n"
        "│        and frame index) and as the                                           │\n"
        "│        SAS (its frames) on 127.0.0.1 until Ctrl-C, so pz-query and pz-cutout │\n"
        "│        run against it unchanged.                                             │\n"
        "╰─────────────────────────────────────────────────────────────────────────────╯\n"
    )
    assert _layout_problems(panel) == [
        "'and frame index) and as the' then 'SAS (its frames) "
        "on 127.0.0.1 until Ctrl-C, so pz-query and pz-cutout'"
    ]


def test_prose_joins_paragraphs_and_keeps_examples():
    from photoz_tools.cli.common import prose

    text = """\
        First paragraph,
        wrapped by hand.

        Second, then an example:
          pz-cutout survey/ --frames ~/sdss \\
              -o cutouts/

        \b
        kept
        as is
    """
    assert prose(text) == (
        "First paragraph, wrapped by hand.\n\n"
        "Second, then an example:\n  pz-cutout survey/ --frames ~/sdss \\\n      -o cutouts/\n\n"
        "\b\nkept\nas is"
    )
    assert prose(prose(text)) == prose(text)


def _help_texts() -> list[tuple[str, str]]:
    """(where, text) of every help string: commands' descriptions and every parameter's help."""
    import importlib

    out = []
    for command in manpages.COMMANDS:
        module = importlib.import_module(manpages.module_name(command))
        click_obj = typer.main.get_command(module.app)
        objs = [("", click_obj)] + sorted((getattr(click_obj, "commands", None) or {}).items())
        for sub, obj in objs:
            where = f"pz-{command.removeprefix('pz-')} {sub}".strip()
            out.append((where, obj.help or ""))
            out += [(f"{where} {p.name}", getattr(p, "help", None) or "") for p in obj.params]
    return out


@pytest.mark.parametrize("where,text", _help_texts(), ids=lambda v: str(v)[:40])
def test_no_help_text_is_eaten_as_rich_markup(where: str, text: str) -> None:
    """rich reads "[default: ...]" as a markup tag and drops it without a word, leaving
    "halfway ." in the help; such brackets are written "\\[" (the help's only markup is bold)."""
    from rich.text import Text

    unstyled = re.sub(r"\[/?(bold|dim|italic)\]", "", text)
    assert Text.from_markup(unstyled).plain == unstyled.replace("\\[", "["), (
        f"{where}: rich drops part of its help: {text!r}"
    )
