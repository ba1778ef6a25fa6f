"""pz-train --distribute data: each batch split over two logical CPU devices (PZ_CPU_DEVICES=2,
which sets XLA_FLAGS=--xla_force_host_platform_device_count=2 for JAX and two logical devices
through tf.config.set_logical_device_configuration for TensorFlow) trains the same member as
one device, on both backends, and each device really gets half of each batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("keras")

# Trains one tiny member twice in one process (one device, then data parallel over two) and
# prints how far apart the two are, how far training moved them, and what each device was
# given. One process per backend: the devices must be split before the backend starts.
SCRIPT = r"""
import json, sys
import numpy as np
from photoz_tools.model import backend, distribute, train as tr
from photoz_tools.model import architecture  # noqa: F401  (registers InputScaling)

data, root = sys.argv[1], sys.argv[2]
def run(name, mode):
    recipe = tr.Recipe(batch_size=16, steps=6, learning_rate=1e-3, seed=5, val_size=12,
                       members=1, augment=True, distribute=mode, xla=False)
    return tr.train(data, f"{root}/{name}", "tiny", recipe)

keras = backend.import_keras()
one, two = run("one", None), run("two", "data")
w1 = [np.asarray(w) for w in keras.saving.load_model(one / "member_0.keras").get_weights()]
w2 = [np.asarray(w) for w in keras.saving.load_model(two / "member_0.keras").get_weights()]
man = json.loads((one / "manifest.json").read_text())
init = architecture.build_model(man["architecture"], seed=man["seeds"][0])
w0 = [np.asarray(w) for w in init.get_weights()]

dp = distribute.setup("data", 16)
x = {"image": np.arange(16, dtype=np.float32).reshape(16, 1), "ebv": np.zeros((16, 1), np.float32)}
y = np.arange(16)
shares = []
if backend.name() == "tensorflow":
    per = dp.shard(x, y, None)
    local = dp.strategy.experimental_local_results(per[1])
    shares = [np.asarray(t).ravel().tolist() for t in local]
else:
    from keras.src.backend.jax.trainer import _distribute_data
    arr = _distribute_data((y,))[0]
    shares = [np.asarray(s.data).ravel().tolist() for s in arr.addressable_shards]
dp.close()
try:
    distribute.setup("data", 15)
    refusal = None
except Exception as e:
    refusal = f"{type(e).__name__}: {e}"
print(json.dumps({
    "refusal": refusal,
    "devices": dp.devices,
    "diff": max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w2)),
    "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(w1, w0)),
    "distribution": json.loads((two / "manifest.json").read_text()).get("distribution"),
    "shares": shares,
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("keras_backend", ["tensorflow", "jax"])
def test_data_parallel_training_on_two_devices_equals_one_device(
    keras_backend, tmp_path, make_dataset, model_env
):
    pytest.importorskip(keras_backend)
    data = make_dataset(tmp_path / "d.parquet", 64, seed=4)
    env = {**os.environ, **model_env, "KERAS_BACKEND": keras_backend, "PZ_CPU_DEVICES": "2"}
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(data), str(tmp_path)],
        capture_output=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    got = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert len(got["devices"]) == 2 and got["distribution"].startswith("data parallel over 2")
    # each device holds its own half of the batch, in order
    assert got["shares"] == [list(range(8)), list(range(8, 16))]
    # six Adam steps at lr 1e-3 move weights by ~6e-3; summing the gradient in another order
    # changes them by float32 rounding only
    assert got["moved"] > 1e-3
    assert got["diff"] < 2e-5 * max(1.0, got["moved"] / 1e-3), got
    assert got["refusal"] == (
        "PzUsageError: --batch-size 15: not a multiple of the 2 devices of --distribute data; "
        "every device takes an equal share of each batch"
    )


def test_an_unknown_distribute_mode_is_refused_before_any_work(tmp_path, make_dataset, model_env):
    data = make_dataset(tmp_path / "d.parquet", 32, seed=4)
    out = tmp_path / "b"
    bad = subprocess.run(
        [sys.executable, "-m", "photoz_tools.cli.train", str(data), "-o", str(out)]
        + ["--distribute", "model"],
        capture_output=True,
        env={**os.environ, **model_env},
        timeout=300,
    )
    assert bad.returncode == 2 and b"--distribute model: unknown" in bad.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet"]  # nothing written
