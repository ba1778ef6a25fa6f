"""--debug on every command: an error is one line without it, and the full traceback (then the
same line) with it, as `--help` promises ("Show the full traceback of an error")."""

from __future__ import annotations

import pytest

MISSING = "/nonexistent/pz-options-test"

CASES = {
    "pz-query": ["--sql", f"{MISSING}.sql", "--url", "http://127.0.0.1:9"],
    "pz-query frames": [f"{MISSING}.parquet", "--url", "http://127.0.0.1:9"],
    "pz-cutout": [f"{MISSING}.parquet", "--frames", "/nonexistent", "-o", "x.parquet"],
    "pz-pack": [f"{MISSING}.parquet", "-o", "x.parquet"],
    "pz-train": [f"{MISSING}.parquet", "-o", "bundle", "--arch", "tiny"],
    "pz-import": [f"{MISSING}.zip", "-o", "bundle"],
    "pz-predict": ["-m", f"{MISSING}-bundle", f"{MISSING}.parquet", "-o", "x.parquet"],
    "pz-score": [f"{MISSING}.parquet"],
    "pz-mock": ["--photometry", f"{MISSING}.fits", "-n", "3", "--catalog-only", "-o", "m"],
    "pz-mock serve": [MISSING],
}


@pytest.mark.parametrize("command", list(CASES))
def test_debug_shows_the_traceback(pz, command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name, *sub = command.split()
    args = [*sub, *CASES[command]]
    plain = pz(name, *args, "-q")
    err = plain.stderr.decode()
    assert plain.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith(f"{name}: error: "), err
    assert "Traceback" not in err
    debug = pz(name, *args, "-q", "--debug")
    text = debug.stderr.decode()
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in text, text
    assert 'File "' in text and "photoz_tools" in text  # the frames of the package's code
    assert text.rstrip("\n").splitlines()[-1] == err.rstrip("\n")  # and the same one line
    assert not list(tmp_path.iterdir())  # nothing written either way
