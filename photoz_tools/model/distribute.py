"""Data-parallel training over the devices of one host (`pz-train --distribute data`).

Each step's batch is split evenly over the devices, each computes the gradient of its share,
and the gradients are averaged before one shared update, so a step is the same step as on one
device (the network has no batch normalisation or dropout whose statistics would differ per
share); only the order of the floating-point sums changes. On JAX this is Keras'
`keras.distribution.DataParallel`; on TensorFlow it is `tf.distribute.MirroredStrategy`
(Keras 3's own TensorFlow distribution code is a prototype).

With backend.py, the one other module that talks to a backend directly. To try it on a host
without accelerators, split the CPU into logical devices with PZ_CPU_DEVICES=N (backend.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from photoz_tools.errors import PzUsageError
from photoz_tools.model import backend

MODES = ("data",)


class DataParallel:
    """The devices a run trains on and how a batch reaches them."""

    def __init__(self, devices: list[str], strategy: Any = None) -> None:
        self.devices = devices
        self.strategy = strategy  # TensorFlow's MirroredStrategy; None on JAX

    @property
    def n(self) -> int:
        return len(self.devices)

    def describe(self) -> str:
        return f"data parallel over {self.n} devices ({', '.join(self.devices)})"

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Where models and optimizers must be built (TensorFlow mirrors their variables there;
        under JAX the global distribution already places them)."""
        if self.strategy is None:
            yield
        else:
            with self.strategy.scope():
                yield

    def shard(self, x: dict[str, np.ndarray], y: np.ndarray, w: np.ndarray | None):
        """One batch as the compiled step takes it: on TensorFlow, per-replica slices (a plain
        tensor would be copied whole to every replica); on JAX unchanged (Keras shards it
        along the batch axis by the global distribution)."""
        if self.strategy is None:
            return x, y, w
        import tensorflow as tf

        k = len(y) // self.n

        def part(ctx):
            s = slice(ctx.replica_id_in_sync_group * k, (ctx.replica_id_in_sync_group + 1) * k)
            return (
                {key: tf.constant(v[s]) for key, v in x.items()},
                tf.constant(y[s]),
                None if w is None else tf.constant(w[s]),
            )

        return self.strategy.experimental_distribute_values_from_function(part)

    def close(self) -> None:
        if self.strategy is None:
            backend.import_keras().distribution.set_distribution(None)


def check_mode(mode: str | None) -> None:
    """Refuse an unknown --distribute before any work."""
    if mode is not None and mode not in MODES:
        raise PzUsageError(f"--distribute {mode}: unknown; the choice is: {', '.join(MODES)}")


def setup(mode: str | None, batch_size: int) -> DataParallel | None:
    """Spread training over every accelerator of the host (or every logical CPU device when
    there is none); None without --distribute. Refuses a batch that does not split evenly."""
    check_mode(mode)
    if mode is None:
        return None
    keras = backend.import_keras()
    name = backend.name()
    if name == "jax":
        dp = DataParallel(list(keras.distribution.list_devices()))  # accelerators, else CPUs
    elif name == "tensorflow":
        import tensorflow as tf

        logical = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        names = [d.name for d in logical]
        dp = DataParallel(names, tf.distribute.MirroredStrategy(names))
    else:  # pragma: no cover - other backends
        raise PzUsageError(f"--distribute data: not available on the {name} backend")
    if batch_size % dp.n:
        raise PzUsageError(
            f"--batch-size {batch_size}: not a multiple of the {dp.n} devices of "
            "--distribute data; every device takes an equal share of each batch"
        )
    if name == "jax":
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=dp.devices))
    return dp
