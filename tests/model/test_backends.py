"""The same model code under JAX: one training step and one prediction in a subprocess with
KERAS_BACKEND=jax, and a TensorFlow-trained bundle predicting identically under JAX."""

from __future__ import annotations

import json

import numpy as np
import pytest

from photoz_tools import tables

pytest.importorskip("jax")


@pytest.mark.slow
def test_jax_trains_one_step_and_predicts(
    cli, make_dataset, tmp_path, model_env, catalog, tiny_bundle
):
    env = {**model_env, "KERAS_BACKEND": "jax"}
    data = make_dataset(tmp_path / "d.parquet", 40, seed=8)
    r = cli(
        "pz-train",
        str(data),
        "-o",
        str(tmp_path / "jb"),
        "--arch",
        "tiny",
        "--steps",
        "1",
        "--batch-size",
        "8",
        "--val-size",
        "8",
        "--balanced",
        "-q",
        env=env,
    )
    assert r.returncode == 0, r.stderr.decode()
    m = json.loads((tmp_path / "jb" / "manifest.json").read_text())
    assert m["versions"]["backend"] == "jax" and m["recipe"]["balanced"]
    r = cli(
        "pz-predict",
        "-m",
        str(tmp_path / "jb"),
        str(catalog),
        "-o",
        str(tmp_path / "j.parquet"),
        "-q",
        env=env,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert tables.read_table(tmp_path / "j.parquet").num_rows == 40
    # the TensorFlow-trained session bundle gives the same PDFs under JAX
    outs = {}
    for backend in ("jax", "tensorflow"):
        out = tmp_path / f"{backend}.parquet"
        r = cli(
            "pz-predict",
            "-m",
            str(tiny_bundle),
            str(catalog),
            "-o",
            str(out),
            "-q",
            env={**model_env, "KERAS_BACKEND": backend},
        )
        assert r.returncode == 0, r.stderr.decode()
        outs[backend] = tables.column_array(tables.read_table(out), "pdf")
    np.testing.assert_allclose(outs["jax"], outs["tensorflow"], atol=1e-6)
