"""The same model code under JAX: one training step and one prediction in a subprocess with
KERAS_BACKEND=jax, and bundles that move between the backends with the same predictions."""

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
    # a TensorFlow-trained bundle predicts under JAX (pz-predict end to end) what it predicts
    # under TensorFlow here, and the JAX-trained bundle loads and predicts under TensorFlow
    from photoz_tools.model.predict import predict_arrays

    out = tmp_path / "jax.parquet"
    r = cli("pz-predict", "-m", str(tiny_bundle), str(catalog), "-o", str(out), "-q", env=env)
    assert r.returncode == 0, r.stderr.decode()
    t = tables.read_table(out)
    assert t.num_rows == 40
    src = tables.read_table(catalog)
    images, ebv = tables.column_array(src, "image"), tables.column_array(src, "ebv")
    tf_pdf = predict_arrays(tiny_bundle, images, ebv, batch_size=40)
    np.testing.assert_allclose(tables.column_array(t, "pdf"), tf_pdf, atol=1e-6)
    p = predict_arrays(tmp_path / "jb", images[:4], ebv[:4], batch_size=4)
    assert p.shape == (4, 180) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
