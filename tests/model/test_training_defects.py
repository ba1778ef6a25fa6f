"""The defects of issue 9, each pinned by a test that failed before its fix: the authors' inception
branch order, the loss computed from logits on every backend, a feed whose batches sample the
whole training set, the dtype policy never leaking, independent member seeds, the layers' data
format pinned, and the learning-rate schedule."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from photoz_tools.errors import PzUsageError

keras = pytest.importorskip("keras")

from photoz_tools.model import architecture, precision  # noqa: E402
from photoz_tools.model.train import Recipe, member_seed  # noqa: E402


def _outputs(model, names):
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    rng = np.random.default_rng(0)
    x = {
        "image": rng.normal(0, 1, (2, 64, 64, 5)).astype(np.float32),
        "ebv": np.full((2, 1), 0.05, np.float32),
    }
    return [keras.ops.convert_to_numpy(o) for o in probe(x)]


def test_inception_concatenates_in_the_authors_order():
    """[1x1, 5x5, 3x3, pool] ([s2_2, s2_1, s2_0, pool0] in network.py); the last block
    [1x1, 3x3, pool]. The parameter count cannot see the order: the activations can."""
    model = architecture.build_model(architecture.load_config("tiny"), seed=1)
    n2 = 8
    cat, a, c, b, d = _outputs(
        model,
        ["inc1_concat", "inc1_a1x1_prelu", "inc1_c5x5_prelu", "inc1_b3x3_prelu", "inc1_dpool"],
    )
    np.testing.assert_array_equal(cat, np.concatenate([a, c, b, d], axis=-1))
    assert not np.allclose(c, b)  # the two orders differ
    cat, a, b, d = _outputs(
        model, ["inc3_concat", "inc3_a1x1_prelu", "inc3_b3x3_prelu", "inc3_dpool"]
    )
    assert a.shape[-1] == b.shape[-1] == 12 and n2 == 8
    np.testing.assert_array_equal(cat, np.concatenate([a, b, d], axis=-1))


def test_weights_are_copied_by_layer_name_never_by_position():
    cfg = architecture.load_config("tiny")
    src = architecture.build_model(cfg, seed=1)
    dst = architecture.build_model(cfg, seed=2)
    # a model whose weighted layers are listed in another order than src's
    shuffled = keras.Model(dst.input, dst.output)
    architecture.copy_weights(architecture.logits_model(src), shuffled)
    for layer in dst.layers:
        for w, v in zip(layer.get_weights(), src.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(w, v)
    other = architecture.build_model(architecture.load_config("small"), seed=1)
    with pytest.raises(ValueError, match="shape"):
        architecture.copy_weights(other, dst)


_LOSS_SCRIPT = textwrap.dedent(
    """
    import json, numpy as np
    from photoz_tools.model import architecture
    from photoz_tools.model.train import Recipe, compile_for_training
    import keras
    # the smallest model with the members' inputs and a "logits" layer: the loss is the point
    image = keras.Input((64, 64, 5), name="image")
    ebv = keras.Input((1,), name="ebv")
    x = keras.layers.Flatten()(keras.layers.AveragePooling2D(64)(image))
    x = keras.layers.Concatenate()([x, ebv])
    model = keras.Model({"image": image, "ebv": ebv}, keras.layers.Dense(180, name="logits")(x))
    p = {"recipe": Recipe(learning_rate=1e-3, warmup_steps=0, xla=False), "total_steps": 10}
    compile_for_training(model, p)
    dense = model.get_layer("logits")
    kernel, bias = dense.get_weights()
    bias = np.full_like(bias, -100.0)
    bias[0], bias[7] = 0.0, -30.0   # true class 7: probability ~ e^-30
    dense.set_weights([np.zeros_like(kernel), bias])
    x = {"image": np.ones((1, 64, 64, 5), np.float32), "ebv": np.zeros((1, 1), np.float32)}
    loss = model.train_on_batch(x, np.array([7]), return_dict=True)["loss"]
    after = dense.get_weights()[1]
    print(json.dumps({"loss": float(loss), "update": float(after[7] - bias[7])}))
    """
)


@pytest.mark.parametrize("backend_name", ["tensorflow", "jax"])
def test_an_outlier_gets_its_full_loss_and_a_gradient(backend_name):
    """A galaxy whose true class has probability e^-30: loss 30 and a real update on every
    backend (on probabilities, JAX clipped it to -log(1e-7) = 16.1 with zero gradient)."""
    pytest.importorskip(backend_name)
    if backend_name == keras.backend.backend():  # this process's backend: no new process
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(_LOSS_SCRIPT, {})
        lines = out.getvalue()
    else:
        env = {**os.environ, "KERAS_BACKEND": backend_name, "OMP_NUM_THREADS": "2"}
        r = subprocess.run(
            [sys.executable, "-c", _LOSS_SCRIPT],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        lines = r.stdout
    got = json.loads(lines.strip().splitlines()[-1])
    assert got["loss"] == pytest.approx(30.0, abs=1e-3)
    assert got["update"] > 1e-4  # Adam's first step moves the true class's bias up by ~lr


def test_dtype_policy_never_leaks(monkeypatch, make_dataset, tmp_path):
    """Members are saved float32 and the global policy is restored, even after a reduced-
    precision run (simulated here with bfloat16 compute, which every CPU can emulate)."""
    from photoz_tools.model import bundle, train

    monkeypatch.setattr(precision, "check", lambda p, option="--precision": "mixed_bfloat16")
    data = make_dataset(tmp_path / "d.parquet", 40, seed=4)
    out = train.train(
        str(data),
        tmp_path / "b",
        "tiny",
        Recipe(steps=2, batch_size=8, val_size=8, precision="bfloat16", xla=False),
    )
    assert keras.config.dtype_policy().name == "float32"
    member = bundle.load_bundle(out).members[0]
    assert {layer.dtype_policy.name for layer in member.layers} == {"float32"}
    assert json.loads((out / "manifest.json").read_text())["recipe"]["precision"] == "bfloat16"
    with pytest.raises(RuntimeError), precision.policy("float32"):
        keras.config.set_dtype_policy("mixed_float16")
        raise RuntimeError("boom")
    assert keras.config.dtype_policy().name == "float32"


def test_reduced_precision_refused_where_the_device_cannot():
    from photoz_tools.model import backend

    if backend.has_gpu():
        pytest.skip("a GPU is visible: every precision is allowed")
    with pytest.raises(PzUsageError, match="float16: needs a GPU"):
        precision.check("float16")
    if precision.cpu_has_bfloat16():
        assert precision.check("bfloat16") == "mixed_bfloat16"
    else:
        with pytest.raises(PzUsageError, match="neither AVX512-BF16 nor AMX"):
            precision.check("bfloat16")
    assert precision.cpu_has_bfloat16({"avx512f", "amx_bf16", "amx_tile"})
    assert not precision.cpu_has_bfloat16({"avx512f", "avx2"})
    with pytest.raises(PzUsageError, match="float64"):
        precision.check("float64")


def test_member_seeds_are_independent_streams():
    seeds = {(s, m): member_seed(s, m) for s in (0, 1, 1000) for m in range(4)}
    assert len(set(seeds.values())) == len(seeds)  # `--seed 1000` member 0 != `--seed 0` member 1
    assert all(0 <= v < 2**31 for v in seeds.values())
    assert member_seed(7, 3) == member_seed(7, 3)


def test_layers_ignore_the_users_data_format():
    before = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        model = architecture.build_model(architecture.load_config("tiny"), seed=0)
    finally:
        keras.config.set_image_data_format(before)
    formats = {la.data_format for la in model.layers if hasattr(la, "data_format")}
    assert formats == {"channels_last"}
    assert tuple(model.get_layer("inc3_concat").output.shape[1:]) == (8, 8, 32)


def test_learning_rate_warms_up_then_drops_at_the_halfway_step():
    from photoz_tools.model.schedule import WarmupDrop
    from photoz_tools.model.train import compile_for_training

    def lr(s, t):
        return float(keras.ops.convert_to_numpy(s(t)))

    s = WarmupDrop(1e-3, drop_step=50, drop=5.0)
    assert lr(s, 0) == pytest.approx(1e-3) and lr(s, 49) == pytest.approx(1e-3)
    assert lr(s, 50) == pytest.approx(2e-4) and lr(s, 99) == pytest.approx(2e-4)
    w = WarmupDrop(1e-3, drop_step=50, warmup=10)
    assert [round(lr(w, t) / 1e-4, 6) for t in (0, 4, 9, 20)] == [1, 5, 10, 10]
    assert WarmupDrop.from_config(w.get_config()).get_config() == w.get_config()
    # through the compiled optimizer: 100 steps drop after 50 updates
    model = architecture.logits_model(architecture.build_model(architecture.load_config("tiny")))
    compile_for_training(
        model, {"recipe": Recipe(learning_rate=1e-3, warmup_steps=0), "total_steps": 100}
    )
    sched = model.optimizer._learning_rate
    assert lr(sched, 49) == pytest.approx(1e-3) and lr(sched, 50) == pytest.approx(2e-4)


def test_architecture_defaults_fill_the_recipe(tiny_dataset):
    from photoz_tools.model.train import plan

    p = plan(str(tiny_dataset), "paper", Recipe(steps=1))
    assert p["recipe"].learning_rate == 1e-4 and p["recipe"].warmup_steps == 0
    p = plan(str(tiny_dataset), "paper", Recipe(steps=1, learning_rate=3e-4, warmup_steps=5))
    assert p["recipe"].learning_rate == 3e-4 and p["recipe"].warmup_steps == 5
    for bad in (Recipe(steps=1, learning_rate=-1.0), Recipe(steps=1, seed=-1)):
        with pytest.raises(PzUsageError):
            plan(str(tiny_dataset), "tiny", bad)
