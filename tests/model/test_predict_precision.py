"""pz-predict --precision: float32 by default, bfloat16/float16 refused with one line (exit 2)
before any work where the device lacks them, and the bfloat16 path itself (forced in-process)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from photoz_tools import tables
from photoz_tools.errors import PzUsageError

pytest.importorskip("keras")


def _bf16_refused_here() -> bool:
    from photoz_tools.model import backend, precision

    return not (backend.has_gpu() or precision.cpu_has_bfloat16())


def _gpu_here() -> bool:
    from photoz_tools.model import backend

    return backend.has_gpu()


@pytest.mark.parametrize("prec", ["bfloat16", "float16"])
def test_reduced_precision_refused_by_the_command_before_any_work(
    prec, cli, tiny_bundle, catalog, model_env, tmp_path
):
    from photoz_tools.model.precision import cpu_model

    if prec == "bfloat16" and not _bf16_refused_here():
        pytest.skip("this machine has bfloat16 hardware (AMX/AVX512-BF16 or a GPU)")
    if prec == "float16" and _gpu_here():
        pytest.skip("a GPU is visible: float16 is allowed")
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "zphot.parquet"
    r = cli(
        "pz-predict",
        "-m",
        str(tiny_bundle),
        "--precision",
        prec,
        "-o",
        str(out),
        input=catalog.read_bytes(),  # stdin: must not be read
        env=model_env,
    )
    assert r.returncode == 2, r.stderr.decode()
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"pz-predict: error: --precision {prec}")
    assert cpu_model() in lines[0] and "float32" in lines[0]
    assert b"Traceback" not in r.stderr and r.stdout == b""
    assert list(outdir.iterdir()) == []  # nothing at -o, no temporary file either


def test_bad_precision_value_is_one_usage_line(cli, catalog, model_env, tmp_path):
    out = tmp_path / "zphot.parquet"
    r = cli(
        "pz-predict",
        "-m",
        str(tmp_path / "nowhere"),  # checked first: the missing bundle is never looked at
        str(catalog),
        "--precision",
        "float64",
        "-o",
        str(out),
        env=model_env,
    )
    assert r.returncode == 2
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "--precision float64" in lines[0]
    assert "float32, bfloat16, float16" in lines[0]
    assert not out.exists()


def test_refusal_comes_before_the_input_and_the_bundle(monkeypatch, tmp_path):
    """predict(), predict_arrays() and Ensemble refuse before they open anything."""
    from photoz_tools.model import backend, precision
    from photoz_tools.model.predict import predict, predict_arrays

    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda flags=None: False)
    monkeypatch.setattr(backend, "has_gpu", lambda: False)
    for prec in ("bfloat16", "float16", "float64"):
        with pytest.raises(PzUsageError, match=f"--precision {prec}"):
            predict(
                tmp_path / "missing.parquet",
                tmp_path / "o.parquet",
                tmp_path / "nowhere",
                precision=prec,
            )
        with pytest.raises(PzUsageError, match=f"--precision {prec}"):
            predict_arrays(
                tmp_path / "nowhere", np.zeros((1, 64, 64, 5)), np.zeros(1), precision=prec
            )
    assert not (tmp_path / "o.parquet").exists()


def test_explicit_float32_equals_the_default_bit_for_bit(tiny_bundle, catalog, tmp_path):
    from photoz_tools.model import bundle
    from photoz_tools.model.predict import predict

    b = bundle.load_bundle(tiny_bundle)
    default, explicit = tmp_path / "default.parquet", tmp_path / "f32.parquet"
    predict(catalog, default, b, batch_size=16)
    predict(catalog, explicit, b, batch_size=16, precision="float32")
    t0, t1 = pq.read_table(default), pq.read_table(explicit)
    for c in ("zphot", "zphot_err", "zmode", "z_lo68", "z_hi68", "width68", "pz_flags"):
        assert t0[c].equals(t1[c]), c
    p0, p1 = tables.column_array(t0, "pdf"), tables.column_array(t1, "pdf")
    assert p0.tobytes() == p1.tobytes()
    assert t0.schema.metadata[b"pz_precision"] == b"float32"
    assert t1.schema.metadata[b"pz_precision"] == b"float32"


def test_bfloat16_path_forced_on_this_cpu(monkeypatch, tiny_bundle, catalog, tmp_path):
    """bfloat16 compute really runs (PDFs differ from float32's, a little), the softmax stays
    float32 (PDFs sum to 1), the provenance says bfloat16, and Keras's policy is restored."""
    import keras

    from photoz_tools.model import bundle, precision
    from photoz_tools.model.predict import Ensemble, predict, predict_arrays

    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda flags=None: True)  # CPU feature
    b = bundle.load_bundle(tiny_bundle)
    src = tables.read_table(catalog)
    images, ebv = tables.column_array(src, "image"), tables.column_array(src, "ebv")
    p32 = predict_arrays(b, images, ebv, batch_size=16)
    p16 = predict_arrays(b, images, ebv, batch_size=16, precision="bfloat16")
    assert keras.config.dtype_policy().name == "float32"
    assert p16.dtype == np.float32 and p16.shape == p32.shape
    np.testing.assert_allclose(p16.sum(axis=1), 1, atol=1e-5)
    assert np.abs(p16 - p32).max() < 0.05
    assert not np.array_equal(p16, p32)  # bfloat16 arithmetic happened

    ens = Ensemble(b, batch_size=16, precision="bfloat16")
    assert keras.config.dtype_policy().name == "float32"
    members = [la for la in ens.model.layers if la.name.startswith("member_")]
    assert len(members) == len(b.members) == 2
    for m in members:
        assert m.get_layer("c1").compute_dtype == "bfloat16"
        assert m.get_layer("c1").variable_dtype == "float32"
        assert m.get_layer("pdf").compute_dtype == "float32"
    assert all(m.get_layer("c1").compute_dtype == "float32" for m in b.members)  # untouched

    out = tmp_path / "bf16.parquet"
    res = predict(catalog, out, b, batch_size=16, precision="bfloat16")
    assert res.precision == "bfloat16" and res.rows == 40
    t = pq.read_table(out)
    assert t.schema.metadata[b"pz_precision"] == b"bfloat16"
    np.testing.assert_allclose(tables.column_array(t, "pdf"), p16, atol=1e-6)
    assert keras.config.dtype_policy().name == "float32"
