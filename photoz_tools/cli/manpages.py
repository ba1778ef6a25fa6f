"""Generate man/pz-*.md and man/pz-*.1 from the CLI definitions.

Why this route: typer 0.29 vendors its own click, so click-man silently drops every option; typer's
own documentation generator (`typer MODULE utils docs`) reads the real command objects, and
Debian's pandoc turns its Markdown into a man page. Both are maintained tools; the Markdown is
checked in beside the page so a stale page shows up as a plain diff (tests/cli/test_manpages.py).

    python -m photoz_tools.cli.manpages man/      # rewrite the pages
    python -m photoz_tools.cli.manpages --check man/
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

COMMANDS = ("query", "cutout", "pack", "train", "import", "predict", "score", "mock")
# pz-import's module cannot be named after it (`import` is a Python keyword)
_MODULES = {"import": "import_checkpoint"}


def module_name(command: str) -> str:
    """The module under photoz_tools.cli that defines pz-COMMAND."""
    return f"photoz_tools.cli.{_MODULES.get(command, command)}"


# rich console markup ([bold]...[/bold]) that typer renders on a terminal but leaves in epilogs
_RICH_TAG = re.compile(r"\[/?(?:bold|dim|italic|underline|code|red|green|yellow|blue|cyan)\]")


def markdown(command: str) -> str:
    """The Markdown page of pz-COMMAND, with a pandoc title block for the man header."""
    import typer
    from typer.cli import MARKUP_MODE_KEY, get_docs_for_click

    from photoz_tools import __version__

    app = importlib.import_module(module_name(command)).app
    click_obj = typer.main.get_command(app)
    name = f"pz-{command}"
    # plain text, not rich's HTML rendering: pandoc would keep its entities
    ctx = typer.Context(click_obj, info_name=name, obj={MARKUP_MODE_KEY: None})
    summary = click_obj.get_short_help_str(limit=300) or app.info.help or ""
    body = get_docs_for_click(obj=click_obj, ctx=ctx, name=name, title="DESCRIPTION")
    body = _RICH_TAG.sub("", body)
    # the worked examples (indented lines of the epilog) stay preformatted in the page
    body = re.sub(r"(?m)^  (?=\S)", "    ", body)
    # pandoc's man writer takes the title block for the header line: NAME(1) and the version
    header = f"% {name.upper()}(1) photoz-tools {__version__} | photoz-tools manual\n%\n%\n\n"
    header += f"# NAME\n\n{name} - {summary}\n\n"
    return (
        header
        + body.strip()
        + "\n\n# SEE ALSO\n\n"
        + ", ".join(f"**pz-{c}**(1)" for c in COMMANDS if c != command)
        + "\n"
    )


def man(markdown_text: str) -> str:
    """The man page (roff) for a Markdown page, by Debian's pandoc."""
    pandoc = shutil.which("pandoc")
    if pandoc is None:
        raise RuntimeError("pandoc not found (apt-get install pandoc)")
    return subprocess.run(
        [pandoc, "--standalone", "--from", "markdown-smart", "--to", "man"],
        input=markdown_text,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    folder = Path(args[0] if args else "man")
    folder.mkdir(parents=True, exist_ok=True)
    stale = []
    for command in COMMANDS:
        md = markdown(command)
        pages = {folder / f"pz-{command}.md": md, folder / f"pz-{command}.1": man(md)}
        for path, text in pages.items():
            if check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
            else:
                path.write_text(text)
    if stale:
        print("stale man pages (run `make man`): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
