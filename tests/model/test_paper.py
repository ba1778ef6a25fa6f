"""The full paper network trains one step and predicts on CPU (float32)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("keras")


@pytest.mark.slow
def test_paper_model_one_step_and_one_prediction(make_dataset, tmp_path):
    from photoz_tools import tables
    from photoz_tools.model import bundle
    from photoz_tools.model.predict import predict_arrays
    from photoz_tools.model.train import Recipe, train

    data = make_dataset(tmp_path / "d.parquet", 20, seed=9)
    out = train(
        str(data),
        tmp_path / "paper",
        "paper",
        Recipe(steps=1, batch_size=4, val_size=2, xla=False, seed=1),
    )
    m = json.loads((out / "manifest.json").read_text())
    assert m["architecture"]["name"] == "paper" and m["scaling"] == "none"
    assert np.isfinite(m["members"][0]["validation"]["loss"])
    b = bundle.load_bundle(out)
    t = tables.read_table(data)
    p = predict_arrays(
        b, tables.column_array(t, "image")[:3], tables.column_array(t, "ebv")[:3], batch_size=3
    )
    assert p.shape == (3, 180) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
