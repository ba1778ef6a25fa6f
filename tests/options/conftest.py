"""Fixtures of the option tests (issue 13, "Promises without a test today"): an in-process
command runner, a small synthetic SkyServer catalogue, a tiny dataset and ONE tiny pz-train run
shared by the pz-train and pz-predict option tests."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MODULES = {"import": "import_checkpoint"}


def invoke(
    command: str,
    *args: str,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run `pz-NAME args...` in this process (no interpreter start, TensorFlow imported once),
    capturing stdout and stderr as bytes, as `run_cli` does in a subprocess.

    The per-process flags of the shared base (-q, --debug, the program name) are reset first
    and restored after (other folders run commands in-process too), and `env` is applied for
    the call only.
    """
    from photoz_tools.cli import common

    before = (common.state.prog, common.state.quiet, common.state.debug)  # as found
    name = command.removeprefix("pz-")
    module = importlib.import_module(f"photoz_tools.cli.{MODULES.get(name, name)}")
    common.state.quiet = common.state.debug = False
    common.state.prog = f"pz-{name}"
    out, err = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
    stdin = io.TextIOWrapper(io.BytesIO(input or b""), encoding="utf-8")
    saved_env = dict(os.environ)
    saved = sys.stdin, sys.stdout, sys.stderr, sys.argv
    os.environ.update(env or {})
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    sys.argv = [f"pz-{name}", *args]
    try:
        code = common.run(module.app, list(args))
    finally:
        with contextlib.suppress(ValueError):
            stdout.flush()
            stderr.flush()
        sys.stdin, sys.stdout, sys.stderr, sys.argv = saved
        os.environ.clear()
        os.environ.update(saved_env)
        common.state.prog, common.state.quiet, common.state.debug = before
    return subprocess.CompletedProcess(
        [f"pz-{name}", *args], code, stdout=out.getvalue(), stderr=err.getvalue()
    )


@pytest.fixture
def pz():
    """`pz("pz-score", "p.parquet", "--truth", "z")` -> CompletedProcess, run in-process."""
    return invoke


# --------------------------------------------------------------------------- a SkyServer stand-in

EXT_R = 2.751  # SDSS A_r / E(B-V), as pz-query's ebv = extinction_r / 2.751


def skyserver_catalog(n: int = 400, seed: int = 13):
    """A synthetic already-joined SkyServer catalogue in SkyServer's names, with rows on both
    sides of every cut the options move (z, dereddened r, primtarget, the sky box)."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    cols = {
        "specObjID": 299_000_000_000_000_000 + rng.permutation(n).astype(np.int64) * 4096 + 1,
        "objID": 1_237_650_000_000_000_000 + np.arange(n, dtype=np.int64),
        "ra": rng.uniform(10.0, 20.0, n),
        "dec": rng.uniform(-5.0, 5.0, n),
        "z": rng.uniform(-0.02, 0.5, n),
        "zErr": np.full(n, 1e-5),
        "class": np.array(["GALAXY"] * n),
        "zWarning": np.zeros(n, dtype=np.int64),
        "primtarget": rng.choice([16, 32, 64, 96, 128, 256], n),
        "clean": np.ones(n, dtype=np.int64),
        "ebv": rng.uniform(0.01, 0.1, n),
        "run": np.full(n, 1000, dtype=np.int64),
        "rerun": np.full(n, 301, dtype=np.int64),
        "camcol": np.full(n, 3, dtype=np.int64),
        "field": np.full(n, 42, dtype=np.int64),
        "expAB_r": rng.uniform(0.2, 1.0, n),
        "zphot_b16": rng.uniform(0.0, 0.4, n),
        "zphot_b16_err": np.full(n, 0.02),
    }
    for b in "ugriz":
        cols[f"petroMag_{b}"] = rng.uniform(13.0, 18.6, n)
        cols[f"petroMagErr_{b}"] = np.full(n, 0.01)
    return pa.table(cols)


def expected_ids(cat, r_min=None, r_max=17.8, z_min=0.0, z_max=0.4, primtarget_min=64, box=None):
    """The specObjIDs of the MGS selection with these cuts, sorted, computed with numpy."""
    from photoz_tools.sdss.queries import EXTINCTION_COEFFS

    c = {k: cat.column(k).to_numpy(zero_copy_only=False) for k in cat.column_names}
    dered_r = c["petroMag_r"] - c["ebv"] * EXTINCTION_COEFFS["r"]
    m = (c["z"] > z_min) & (c["z"] <= z_max) & (c["primtarget"] >= primtarget_min)
    m &= dered_r <= r_max
    if r_min is not None:
        m &= dered_r >= r_min
    if box is not None:
        m &= (c["ra"] >= box[0]) & (c["ra"] <= box[1]) & (c["dec"] >= box[2]) & (c["dec"] <= box[3])
    return sorted(c["specObjID"][m].tolist())


@pytest.fixture(scope="session")
def sky_catalog():
    return skyserver_catalog()


@pytest.fixture
def standin(sky_catalog):
    from photoz_tools.sdss.standin import StandIn

    with StandIn(catalog=sky_catalog) as s:
        yield s


@pytest.fixture(autouse=True)
def _private_caches(tmp_path, monkeypatch):
    """Spools, caches and the default-bundle registry go under the test's tmp_path."""
    monkeypatch.setenv("PZ_QUERY_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("PZ_CACHE", str(tmp_path / "pz-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PZ_MODEL", "")


# --------------------------------------------------------------------------- images and models


def galaxies(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n small generated galaxies: a Gaussian blob whose colour and size follow z, plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.02, 0.35, n)
    ebv = rng.uniform(0.01, 0.1, n).astype(np.float32)
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32) - 31.5
    # off-centre and elongated, so that rotations and flips change the image
    sigma = (1.0 + 0.3 / (z + 0.05))[:, None, None]
    prof = np.exp(-(((xx - 3) / (1.6 * sigma)) ** 2 + ((yy + 1) / sigma) ** 2) / 2)
    colour = np.stack([1 + 8 * z, 2 + 3 * z, 3 + 0 * z, 3.5 - z, 3.8 - 2 * z], 1)
    images = prof[..., None] * colour[:, None, None, :]
    images += rng.normal(0, 0.05, images.shape)
    return {
        "objID": np.arange(n, dtype=np.int64) + 5_000_000,
        "z": z,
        "ebv": ebv,
        "image": images.astype(np.float32),
    }


def write_table(path: Path, columns: dict) -> Path:
    import pyarrow as pa

    from photoz_tools import tables

    cols = {
        k: tables.to_arrow(v) if isinstance(v, np.ndarray) and v.ndim > 1 else v
        for k, v in columns.items()
    }
    tables.write_table(pa.table(cols), path)
    return path


@contextlib.contextmanager
def fed_images():
    """Record the images pz-train hands the network (the batches of feed.TrainingBatches), in
    this process: a list of (n, 64, 64, 5) arrays."""
    from photoz_tools.model import feed

    seen: list[np.ndarray] = []
    original = feed.TrainingBatches.iterate

    def spy(self, *args, **kwargs):
        for x, y, w in original(self, *args, **kwargs):
            seen.append(np.array(x["image"], copy=True))
            yield x, y, w

    feed.TrainingBatches.iterate = spy
    try:
        yield seen
    finally:
        feed.TrainingBatches.iterate = original


def dihedral(image: np.ndarray) -> list[np.ndarray]:
    """The 8 rotations and flips of image[y, x, band] in numpy's own terms (identity first)."""
    out = []
    for flip in (False, True):
        base = np.flip(image, axis=1) if flip else image
        for k in range(4):
            out.append(np.rot90(base, k, axes=(0, 1)))
    return out


CUSTOM_ARCH = """\
# a custom architecture: the smallest drawing with every kind of layer, no scaling key
name = "optiontest"
conv1 = 4
blocks = [[4, 4], "pool", [4, 6]]
last_without_5x5 = true
dense = [16]
"""


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """ONE tiny pz-train run with many non-default options, shared by the tests:
    a custom TOML --arch, --scaling signed_sqrt, --no-augment, --z-col zz, --ebv-col EBV (the
    dataset's z and ebv columns are decoys that would make training fail), --default.

    Returns a dict: bundle, xdg (the registry folder), result (CompletedProcess), data (the
    generated galaxies), dataset (its path)."""
    root = tmp_path_factory.mktemp("trained")
    g = galaxies(48, seed=7)
    n = len(g["z"])
    dataset = write_table(
        root / "d.parquet",
        {
            "objID": g["objID"],
            "zz": g["z"],
            "EBV": g["ebv"],
            "z": np.full(n, 7.0),  # outside the bins: refused if pz-train read it
            "ebv": np.full(n, np.nan, dtype=np.float32),  # NaN: refused if pz-train read it
            "image": g["image"],
        },
    )
    arch = root / "custom.toml"
    arch.write_text(CUSTOM_ARCH)
    bundle = root / "bundle"
    xdg = root / "xdg"
    with fed_images() as fed:
        r = invoke(
            "pz-train",
            str(dataset),
            "-o",
            str(bundle),
            "--arch",
            str(arch),
            "--scaling",
            "signed_sqrt",
            "--no-augment",
            "--z-col",
            "zz",
            "--ebv-col",
            "EBV",
            "--default",
            "--steps",
            "2",
            "--batch-size",
            "16",
            "--val-size",
            "4",
            "--no-xla",
            "--seed",
            "1",
            env={"XDG_DATA_HOME": str(xdg), "PZ_MODEL": "", "OMP_NUM_THREADS": "2"},
        )
    assert r.returncode == 0, r.stderr.decode()
    return {
        "bundle": bundle,
        "xdg": xdg,
        "result": r,
        "data": g,
        "dataset": dataset,
        "root": root,
        "fed": fed,
    }
