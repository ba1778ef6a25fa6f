"""With distribute.py, the one module that may talk to a backend directly (tf.*, jax.*): seeds,
determinism, device queries, log silencing and the matmul peak the benchmarks compare against.

Everything else in photoz_tools.model uses keras.layers/keras.ops/keras.utils only, so the same
code runs with KERAS_BACKEND=jax on hosts without TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from types import ModuleType

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# What TensorFlow's C++ runtime prints on file descriptor 2 while it starts, whatever
# TF_CPP_MIN_LOG_LEVEL says (absl logs before InitializeLog, oneDNN's port.cc notice on CPUs with
# its custom ops, the CPU-feature guard): informational and warning lines only. Errors (E/F) and
# anything unrecognised are passed on.
_CHATTER = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] "
    r"|To enable the following instructions: .* rebuild TensorFlow"
    r"|\s*$)"
)


@contextlib.contextmanager
def quiet_fd2() -> Iterator[None]:
    """Route file descriptor 2 to a temporary file (C++ libraries write there directly, past
    Python's sys.stderr) and afterwards pass on every line that is not known start-up chatter;
    when the block raises, pass on everything, so a real import error is never hidden."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as spool:
        os.dup2(spool.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            spool.seek(0)
            text = spool.read().decode("utf-8", "replace")
            keep = (
                text
                if failed
                else "".join(
                    line for line in text.splitlines(keepends=True) if not _CHATTER.match(line)
                )
            )
            if keep:
                sys.stderr.write(keep)
                sys.stderr.flush()


def import_keras() -> ModuleType:
    """Keras with its backend imported quietly: the one way photoz_tools imports Keras, so that
    no pz-* command prints TensorFlow's start-up lines (design brief, issue 9)."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    silence()
    cpus = _cpu_devices()
    if cpus > 1 and os.environ.get("KERAS_BACKEND") == "jax":
        flag = f"--xla_force_host_platform_device_count={cpus}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    with quiet_fd2():
        import keras

        if keras.backend.backend() == "tensorflow":  # device set-up logs too: do it now
            import tensorflow as tf

            if cpus > 1:
                cpu = tf.config.list_physical_devices("CPU")[0]
                tf.config.set_logical_device_configuration(
                    cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpus)]
                )
            tf.config.list_logical_devices()
    return keras


def _cpu_devices() -> int:
    """PZ_CPU_DEVICES=N splits the CPU into N logical devices, so that --distribute data can be
    tried (and tested) on a host without accelerators; read once, before the backend starts."""
    raw = os.environ.get("PZ_CPU_DEVICES", "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or not 1 <= int(raw) <= 64:
        from photoz_tools.errors import PzUsageError

        raise PzUsageError(f"PZ_CPU_DEVICES={raw}: expected a whole number of devices, 1 to 64")
    return int(raw)


def name() -> str:
    """The Keras backend in use ('tensorflow', 'jax', ...)."""
    return import_keras().backend.backend()


def silence() -> None:
    """Quiet TensorFlow/absl/JAX start-up chatter (pz-* stderr is for our own messages)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for logger in ("absl", "tensorflow", "jax._src.xla_bridge", "h5py"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="keras")
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


def configure(seed: int | None = None, deterministic: bool = False) -> None:
    """Seed Python, numpy and the backend; optionally make TensorFlow's ops deterministic."""
    keras = import_keras()
    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    if deterministic and name() == "tensorflow":
        import tensorflow as tf

        try:
            tf.config.experimental.enable_op_determinism()
        except Exception:  # pragma: no cover - older TF
            pass


def has_gpu() -> bool:
    """True when the backend sees an accelerator (mixed precision only pays off there)."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform != "cpu" for d in jax.devices())
    return False


def device_description() -> str:
    """A short human description of the compute device, for manifests and benchmarks."""
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"tensorflow {tf.__version__} on " + (
            ", ".join(g.name for g in gpus) if gpus else f"CPU ({os.cpu_count()} cores)"
        )
    if backend == "jax":
        import jax

        return f"jax {jax.__version__} on " + ", ".join(str(d) for d in jax.devices())
    return backend


def versions() -> dict[str, str]:
    """Library versions recorded in a bundle's manifest."""
    import numpy as np

    keras = import_keras()
    out = {"keras": keras.__version__, "numpy": np.__version__, "backend": name()}
    try:
        if name() == "tensorflow":
            import tensorflow as tf

            out["tensorflow"] = tf.__version__
        elif name() == "jax":
            import jax

            out["jax"] = jax.__version__
    except ImportError:  # pragma: no cover
        pass
    return out


def matmul_peak_gflops(n: int = 2048, seconds: float = 3.0, dtype: str = "float32") -> float:
    """Measured matmul throughput of this device through the backend (GFLOP/s, best of repeated
    n x n products in `dtype`): the denominator of model FLOPs utilisation."""
    import numpy as np
    from keras import ops

    rng = np.random.default_rng(0)
    a = ops.cast(ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32)), dtype)
    b = ops.cast(ops.convert_to_tensor(rng.standard_normal((n, n), dtype=np.float32)), dtype)
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        mm = tf.function(lambda x, y: tf.linalg.matmul(x, y))

        def run() -> None:
            mm(a, b).numpy()
    elif backend == "jax":
        import jax

        mm = jax.jit(lambda x, y: x @ y)

        def run() -> None:
            mm(a, b).block_until_ready()
    else:  # pragma: no cover

        def run() -> None:
            ops.convert_to_numpy(ops.matmul(a, b))

    run()
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best / 1e9


class TrainStep:
    """One optimiser step of a compiled Keras model without a host round trip per step.

    `Model.train_on_batch` converts the loss to a Python float every step, which makes the host
    wait for the device (and, under JAX, writes the whole state back into the variables). Here the
    loss stays on the device until `mean_loss()` reads it (every N steps), and under JAX the
    state tuple is threaded through the jit-compiled step and written back only by `sync()`,
    before evaluating or saving. The first step goes through train_on_batch, which builds the
    optimizer and the compiled function.
    """

    def __init__(self, model, distribution=None) -> None:
        self.model = model
        self.distribution = distribution  # distribute.DataParallel or None
        self.backend = name()
        self._state = None
        self._built = False
        self._pending = None

    def __call__(self, x, y, w=None) -> None:
        m = self.model
        if not self._built:
            m.train_on_batch(x, y, sample_weight=w)
            self._built = True
            self._pending = "first"
            return
        if self.backend == "jax":
            from keras.src.backend.jax.trainer import _distribute_data

            if self._state is None:
                self._state = m._get_jax_state(
                    trainable_variables=True,
                    non_trainable_variables=True,
                    optimizer_variables=True,
                    metrics_variables=True,
                    purge_model_variables=False,
                )
                m._jax_state_synced = False
            logs, self._state = m.train_function(self._state, iter([_distribute_data((x, y, w))]))
        elif self.backend == "tensorflow":
            data = (x, y, w) if self.distribution is None else self.distribution.shard(x, y, w)
            logs = m.train_function(iter([data]))
        else:  # pragma: no cover - other backends: the plain call
            logs = m.train_on_batch(x, y, sample_weight=w, return_dict=True)
        self._pending = logs

    def sync(self) -> None:
        """Write the JAX state back into the model's variables (a no-op elsewhere)."""
        if self.backend == "jax" and self._state is not None:
            tv, ntv, ov, mv = self._state
            self.model._jax_state = {
                "trainable_variables": tv,
                "non_trainable_variables": ntv,
                "optimizer_variables": ov,
                "metrics_variables": mv,
            }
            self.model.jax_state_sync()
            self._state = None

    def mean_loss(self) -> float:
        """The mean training loss since the last call (a host synchronisation: call it rarely),
        then a fresh start of the running mean."""
        if self._pending is None:
            return float("nan")
        if self._pending == "first":
            value = float(self.model.get_metrics_result()["loss"])
        else:
            value = float(np_value(self._pending["loss"]))
        self.sync()
        self.model.reset_metrics()
        self._pending = None
        return value


def np_value(x):
    """A device value as numpy (a host synchronisation)."""
    from keras import ops

    return ops.convert_to_numpy(x)
