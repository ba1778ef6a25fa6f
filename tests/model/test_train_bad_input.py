"""pz-train's bad input (issue 14): option values and the dataset's image column refused before
any work, and a run that fails on its data leaves no BUNDLE.partial behind. In-process, so the
option checks cost milliseconds; one run reaches the network's feed to find NaN pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from photoz_tools.cli import common
from photoz_tools.cli import train as cli_train
from photoz_tools.errors import PzError
from photoz_tools.tables import to_arrow, write_table


def _dataset(path: Path, n: int = 40, image=(64, 64, 5), nan_row: int | None = None) -> str:
    rng = np.random.default_rng(0)
    im = rng.uniform(0, 1, (n, *image)).astype(np.float32)
    if nan_row is not None:
        im[nan_row].flat[7] = np.nan
    cols = {"image": im, "ebv": np.full(n, 0.02), "z": np.linspace(0.01, 0.35, n)}
    write_table(pa.table({k: to_arrow(np.asarray(v)) for k, v in cols.items()}), str(path))
    return str(path)


def _run(capsys, *args: str) -> tuple[int, str]:
    code = common.run(cli_train.app, [str(a) for a in args])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err, err
    return code, err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--lr", "-1"], "--lr -1: must be a finite number > 0"),
        (["--lr", "nan"], "--lr nan"),
        (["--batch-size", "0"], "--batch-size 0: must be an integer >= 1"),
        (["--steps", "0"], "--steps 0"),
        (["--members", "0"], "--members 0"),
        (["--seed", "-1"], "--seed -1"),
        (["--workers", "0"], "--workers 0"),
        (["--checkpoint-minutes", "0"], "--checkpoint-minutes 0"),
        (["-o", "no/such/folder/b"], "does not exist"),
        (["--distribute", "model"], "--distribute model: unknown"),
    ],
)
def test_bad_options_are_refused_before_any_work(capsys, tmp_path, args, words):
    data = _dataset(tmp_path / "d.parquet", n=4)
    argv = [data, "-o", str(tmp_path / "b"), *args] if "-o" not in args else [data, *args]
    code, err = _run(capsys, *argv)
    assert code == 2 and err.startswith("pz-train: error: ") and words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]


def test_a_wrong_image_shape_is_named_from_the_header(capsys, tmp_path):
    data = _dataset(tmp_path / "d.parquet", n=4, image=(32, 32, 5))
    code, err = _run(capsys, data, "-o", str(tmp_path / "b"))
    assert code == 1 and "column 'image'" in err and "(32, 32, 5)" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]


def test_nan_pixels_fail_the_run_and_leave_no_partial_bundle(tmp_path):
    pytest.importorskip("keras")
    from photoz_tools.model import train as tr

    data = _dataset(tmp_path / "d.parquet", nan_row=17)
    recipe = tr.Recipe(batch_size=8, steps=2, val_size=4, xla=False)
    with pytest.raises(PzError, match=r"d.parquet: row 17 .* NaN/inf pixels"):
        tr.train(data, tmp_path / "b", "tiny", recipe)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]
