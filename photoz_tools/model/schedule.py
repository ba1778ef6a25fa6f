"""The learning-rate schedule of pz-train: an optional linear warm-up, then the paper's drop
(divide by `drop` at `drop_step`, halfway by default). Registered with Keras so that a checkpoint
holding the optimizer reloads in safe mode."""

from __future__ import annotations

from typing import Any

from photoz_tools.model.backend import import_keras

keras = import_keras()
ops = keras.ops


@keras.saving.register_keras_serializable(package="photoz_tools")
class WarmupDrop(keras.optimizers.schedules.LearningRateSchedule):
    """lr * min(1, (t + 1) / warmup) for update t < drop_step, then lr / drop."""

    def __init__(self, lr: float, drop_step: int, drop: float = 5.0, warmup: int = 0) -> None:
        self.lr, self.drop_step, self.drop, self.warmup = (
            float(lr),
            int(drop_step),
            float(drop),
            int(warmup),
        )

    def __call__(self, step):
        t = ops.cast(step, "float32")
        lr = ops.where(t < self.drop_step, self.lr, self.lr / self.drop)
        if self.warmup > 0:
            lr = lr * ops.minimum(1.0, (t + 1.0) / self.warmup)
        return lr

    def get_config(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "drop_step": self.drop_step,
            "drop": self.drop,
            "warmup": self.warmup,
        }
