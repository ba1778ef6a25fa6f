"""The in-process runner the command-line tests share."""

from __future__ import annotations

import importlib

import pytest

from photoz_tools.cli import common, manpages


@pytest.fixture
def pz(capsys):
    """`pz("pz-score", "x.parquet", "--bins", "3")` -> (exit status, stdout, stderr), run
    in-process (`common.run(app, argv)`): the parser, checks and work as `pz-score` runs them."""

    def run(command: str, *args) -> tuple[int, str, str]:
        module = importlib.import_module(manpages.module_name(command.removeprefix("pz-")))
        code = common.run(module.app, [str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run
