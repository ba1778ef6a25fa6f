"""Small synthetic inputs for pz-pack: the authors' npz layouts and pz-cutout-like tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

LABEL_DTYPE = [
    ("specObjID", "<i8"),
    ("z", "<f8"),
    ("EBV", "<f4"),
    ("ra", "<f8"),
    ("dec", "<f8"),
    ("dered_petro_r", "<f4"),
    ("primtarget", "<i4"),
    ("zphot", "<f4"),
    ("mags", "<f4", (5,)),
]


def make_labels(n: int, seed: int = 1, dtype=LABEL_DTYPE) -> np.ndarray:
    """A record array like sdss.npz's labels (a few of its 64 columns)."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(n, dtype=dtype)
    lab["specObjID"] = 299489677444933632 + np.arange(n, dtype=np.int64) * 7919
    lab["z"] = rng.uniform(0.01, 0.45, n)
    lab["EBV"] = rng.uniform(0.0, 0.1, n)
    lab["ra"] = rng.uniform(0, 360, n)
    lab["dec"] = rng.uniform(-10, 60, n)
    lab["dered_petro_r"] = rng.uniform(14.0, 18.2, n)
    lab["primtarget"] = rng.choice([32, 64, 96, 256], n)
    lab["zphot"] = lab["z"] + rng.normal(0, 0.02, n)
    lab["mags"] = rng.uniform(14, 20, (n, 5))
    return lab


def make_cube(n: int, seed: int = 2) -> np.ndarray:
    """(n, 64, 64, 5) float32 images; image i has pixel [0, 0, 0] = i to check row order."""
    rng = np.random.default_rng(seed)
    cube = rng.normal(0, 0.05, (n, 64, 64, 5)).astype(np.float32)
    cube[:, 0, 0, 0] = np.arange(n)
    return cube


@pytest.fixture
def sdss_npz(tmp_path: Path):
    """Write an sdss.npz-like file: (path, cube, labels); compressed=True for deflated members."""

    def _make(n: int = 60, compressed: bool = False, name: str = "sdss.npz", **kw):
        cube, labels = make_cube(n), make_labels(n)
        path = tmp_path / name
        (np.savez_compressed if compressed else np.savez)(path, cube=cube, labels=labels, **kw)
        return path, cube, labels

    return _make


@pytest.fixture
def synth():
    """The generators above, for tests (importlib mode cannot import conftest by name)."""

    class Synth:
        cube = staticmethod(make_cube)
        labels = staticmethod(make_labels)

    return Synth
