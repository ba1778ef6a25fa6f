"""The command layer stays light: --help answers without importing Keras or TensorFlow."""

from __future__ import annotations

import subprocess
import sys
import time


def test_cli_modules_do_not_import_keras_or_tensorflow():
    code = (
        "import sys, photoz_tools.cli.train, photoz_tools.cli.predict, "
        "photoz_tools.model.bundle; "
        "heavy = [m for m in ('keras', 'tensorflow', 'jax', 'numpy') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def test_help_is_fast_and_ends_with_an_example(cli):
    for command, example in (
        ("pz-train", "pz-train dataset.parquet -o model/"),
        ("pz-predict", "pz-predict -m model/ catalog.fits > zphot.parquet"),
    ):
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            r = cli(command, "--help", env={"COLUMNS": "200"})
            best = min(best, time.perf_counter() - t)
        assert r.returncode == 0
        text = r.stdout.decode()
        assert example in text
        assert best < 1.5, f"{command} --help took {best:.2f} s"


def test_version(cli):
    r = cli("pz-predict", "--version")
    assert r.returncode == 0 and b"pz-predict (photoz-tools)" in r.stdout
