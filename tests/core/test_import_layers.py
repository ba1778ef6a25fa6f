"""Imports point downwards (design brief, issue 13): the numpy core imports nothing else of the
package, and plots never imports scoring, which draws with it. Read from the source (every import
statement, lazy and TYPE_CHECKING ones included), so a circle cannot hide inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import photoz_tools

ROOT = Path(photoz_tools.__file__).parent


def imports_of(module: str) -> set[str]:
    """photoz_tools modules named by the import statements of `module` (e.g. 'scoring')."""
    tree = ast.parse((ROOT / f"{module.replace('.', '/')}.py").read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "photoz_tools":  # from photoz_tools import pdf as P
                out |= {a.name for a in node.names}
            elif node.module.startswith("photoz_tools."):
                out.add(node.module.removeprefix("photoz_tools."))
        elif isinstance(node, ast.Import):
            out |= {
                a.name.removeprefix("photoz_tools.")
                for a in node.names
                if a.name.startswith("photoz_tools.")
            }
    return out


@pytest.mark.parametrize("module", ["pdf", "metrics"])
def test_numpy_core_imports_nothing_of_the_package(module):
    assert imports_of(module) == set()


@pytest.mark.parametrize("module", ["plots", "scoring_data"])
def test_lower_modules_do_not_import_scoring(module):
    assert not imports_of(module) & {"scoring", "scoring_read"}


def test_the_npz_reader_does_not_import_the_packer():
    assert imports_of("npz") <= {"errors"}


def test_no_circle_among_the_scoring_and_dataset_modules():
    mods = ["scoring", "scoring_read", "scoring_data", "plots", "metrics", "pdf", "dataset", "npz"]
    edges = {m: {d for d in imports_of(m) if d in mods} for m in mods}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for d in edges[start]:
            if d == goal or (d not in seen and reaches(d, goal, seen | {d})):
                return True
        return False

    assert [m for m in mods if reaches(m, m, {m})] == []
