"""Reduced-precision compute for training and prediction, where the device has it.

bfloat16 pays on GPUs and on CPUs with AVX512-BF16 or AMX (the Intel Xeon kind here: 391 against
178 galaxies/s for the paper network's inference); elsewhere it is emulated (no faster for
prediction, 7x slower for training), so it is refused with one line rather than run. float16
needs loss scaling and is for GPUs only.
Keras's dtype policy is global: `policy()` sets it for one block and always restores it, so
saved members and later models in the process stay float32.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Iterator

from photoz_tools.errors import PzUsageError
from photoz_tools.model import backend

PRECISIONS = ("float32", "bfloat16", "float16")
_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    """The CPU's model name, for messages and benchmark records."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_has_bfloat16(flags: set[str] | None = None) -> bool:
    """AVX512-BF16 or AMX-BF16: bfloat16 matrix arithmetic in hardware."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def check(precision: str, option: str = "--precision") -> str:
    """The Keras dtype policy for `precision`, or a one-line refusal where the device cannot."""
    if precision not in PRECISIONS:
        raise PzUsageError(f"{option} {precision}: choose one of {', '.join(PRECISIONS)}")
    if precision == "float32":
        return _POLICY[precision]
    gpu = backend.has_gpu()
    if precision == "float16" and not gpu:
        raise PzUsageError(
            f"{option} float16: needs a GPU (no GPU is visible to "
            f"{backend.name()} on this CPU, {cpu_model()}); use float32, or bfloat16 on a CPU "
            "with AMX/AVX512-BF16"
        )
    if precision == "bfloat16" and not gpu and not cpu_has_bfloat16():
        raise PzUsageError(
            f"{option} bfloat16: this CPU ({cpu_model()}) has neither AVX512-BF16 nor AMX "
            "and no GPU is visible, so bfloat16 would be emulated: no faster for prediction, "
            "7x slower for training, and less accurate; use float32"
        )
    return _POLICY[precision]


@contextlib.contextmanager
def policy(precision: str) -> Iterator[str]:
    """Set Keras's global dtype policy for the block and restore the previous one after it."""
    keras = backend.import_keras()
    name = check(precision)
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.config.set_dtype_policy(before)
