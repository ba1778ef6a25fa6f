"""Fixtures of the model tests: generated galaxies whose colours and sizes encode z, and ONE tiny
bundle trained once per test session and shared (the suite must stay fast on 2 cores)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# SDSS-like extinction coefficients A_b / E(B-V) for u, g, r, i, z
R_BANDS = np.array([4.239, 3.303, 2.285, 1.698, 1.263], dtype=np.float32)
NOISE = np.array([0.12, 0.03, 0.04, 0.06, 0.18], dtype=np.float32)  # nanomaggies per pixel


def galaxies(n: int, seed: int = 0, colour_scatter: float = 0.03) -> dict[str, np.ndarray]:
    """n generated galaxies: a round Gaussian blob per band whose colours redden and whose size
    shrinks with z (u-r and g-r as the 4000 A break moves in), SDSS-like noise and reddening.

    The information is deliberately simple and known: with 0.03 mag colour scatter a perfect
    estimator reaches sigma_MAD ~ 0.005 in dz/(1+z); the prior alone (the median z) ~ 0.04.
    """
    rng = np.random.default_rng(seed)
    z = np.clip(rng.gamma(4.0, 0.028, n), 0.01, 0.38)
    m_r = rng.uniform(14.5, 17.8, n)
    colour = np.stack([1.4 + 6.0 * z, 0.4 + 3.0 * z, 0 * z, -0.25 - 1.0 * z, -0.4 - 1.5 * z], 1)
    colour += rng.normal(0, colour_scatter, colour.shape)
    ebv = rng.uniform(0.01, 0.1, n).astype(np.float32)
    mags = m_r[:, None] + colour + R_BANDS[None, :] * ebv[:, None]
    flux = 10 ** ((22.5 - mags) / 2.5)  # nanomaggies
    sigma = (1.0 + 0.25 / (z + 0.03)) * rng.lognormal(0, 0.08, n)  # pixels
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) - 31.5
    r2 = (xx**2 + yy**2)[None]
    s2 = sigma[:, None, None] ** 2
    profile = np.exp(-r2 / (2 * s2)) / (2 * np.pi * s2)
    images = (profile[..., None] * flux[:, None, None, :]).astype(np.float32)
    images += rng.normal(0, 1, images.shape).astype(np.float32) * NOISE
    return {"objID": np.arange(n, dtype=np.int64) + 1_000_000, "z": z, "ebv": ebv, "image": images}


def write_dataset(
    path: Path, n: int, seed: int = 0, folds: int = 0, split: bool = False, **columns: np.ndarray
) -> Path:
    """Write generated galaxies (plus optional fold/split/extra columns) as a table."""
    import pyarrow as pa

    from photoz_tools import tables

    g = galaxies(n, seed)
    cols = {"objID": g["objID"], "z": g["z"], "ebv": g["ebv"], "image": tables.to_arrow(g["image"])}
    if folds:
        cols["fold"] = (np.arange(n) % folds).astype(np.int16)
    if split:
        cols["split"] = np.where(np.arange(n) % 10 == 0, "validation", "train")
    cols.update(columns)
    tables.write_table(pa.table(cols), path)
    return path


@pytest.fixture(scope="session")
def model_env(tmp_path_factory) -> dict[str, str]:
    """Environment for subprocesses: a private data folder (no real default bundle touched)."""
    home = tmp_path_factory.mktemp("xdg")
    return {"XDG_DATA_HOME": str(home), "PZ_MODEL": "", "OMP_NUM_THREADS": "2"}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """600 generated galaxies with a fold column (the shared training set)."""
    return write_dataset(tmp_path_factory.mktemp("data") / "train.parquet", 600, seed=1, folds=5)


@pytest.fixture(scope="session")
def catalog(tmp_path_factory) -> Path:
    """40 other galaxies to predict, as FITS."""
    return write_dataset(tmp_path_factory.mktemp("cat") / "catalog.fits", 40, seed=2)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_dataset, model_env) -> Path:
    """ONE tiny 2-member bundle trained once per session through the real pz-train."""
    return _train_tiny(tmp_path_factory.mktemp("bundle") / "tiny", tiny_dataset, model_env)


def _train_tiny(out: Path, dataset: Path, env: dict[str, str]) -> Path:
    import subprocess
    import sys

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "photoz_tools.cli.train",
            str(dataset),
            "-o",
            str(out),
            "--arch",
            "tiny",
            "--members",
            "2",
            "--epochs",
            "2",
            "--batch-size",
            "32",
            "--seed",
            "3",
            "--fold",
            "0",
            "--val-size",
            "60",
            "--no-xla",
            "-q",
        ],  # XLA compiles cost more here
        capture_output=True,
        env={**os.environ, **env},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr.decode()
    return out


@pytest.fixture(scope="session")
def make_dataset():
    """`make_dataset(path, n, seed=0, folds=0, split=False, **extra_columns)` writes a table."""
    return write_dataset
