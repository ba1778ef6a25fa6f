"""Fit the compact photometry model that pz-mock ships (photoz_tools/data/mock_model.json) to the
real MGS photometry by extreme deconvolution of its listed errors, and measure how well samples
from it, with the real error law added back, match the held-out real rows.

Run: .venv/bin/python benchmarks/mock_fit_model.py [--write]
The two MLZ files are not drawn from one distribution (test is ~0.2 mag brighter and redder than
train), so both are pooled and split at random: the comparison fits one half and checks it against
the other; the shipped model is then fitted to all 10,000 rows.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy import stats

from photoz_tools.mock.photometry import Photometry, fit_model, model_features, read_mgs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "mgs-photometry"
NAMES = ["z", "r", "u-g", "g-r", "r-i", "i-z"]


def knn_sigma(train: Photometry, test: Photometry) -> float:
    """sigma_MAD of a kNN photo-z (magnitudes + colours) trained on real rows: a tightness check
    of the colour-redshift relation that the mixture must keep."""
    from sklearn.neighbors import KNeighborsRegressor

    def feats(p: Photometry) -> np.ndarray:
        f = model_features(p)
        return np.column_stack([p.mag, f[:, 2:]])

    knn = KNeighborsRegressor(n_neighbors=20, weights="distance").fit(feats(train), train.z)
    dz = (knn.predict(feats(test)) - test.z) / (1 + test.z)
    return float(1.4826 * np.median(np.abs(dz - np.median(dz))))


def _rsd(x: np.ndarray) -> float:
    """A robust spread (1.4826 MAD)."""
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _scatter_at_z(f: np.ndarray, k: int) -> float:
    """Robust spread of feature k about its median in 40 redshift quantile bins."""
    edges = np.quantile(f[:, 0], np.linspace(0, 1, 41))
    b = np.clip(np.searchsorted(edges, f[:, 0]) - 1, 0, 39)
    res = np.concatenate([f[b == j, k] - np.median(f[b == j, k]) for j in range(40)])
    return _rsd(res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--write", action="store_true", help="write photoz_tools/data/mock_model.json")
    ap.add_argument("--components", type=int, default=16)
    args = ap.parse_args()
    a, b = read_mgs(DATA / "SDSS_MGS.train"), read_mgs(DATA / "SDSS_MGS.test")
    both = Photometry(
        np.concatenate([a.z, b.z]),
        np.concatenate([a.mag, b.mag]),
        np.concatenate([a.err, b.err]),
        np.arange(len(a) + len(b)),
    )
    perm = np.random.default_rng(0).permutation(len(both))
    train, test = both.take(perm[: len(both) // 2]), both.take(perm[len(both) // 2 :])
    t0 = time.perf_counter()
    model = fit_model(train, n_components=args.components)
    print(
        f"XD fit of {len(train)} rows, {args.components} components: "
        f"{time.perf_counter() - t0:.0f} s"
    )
    rng = np.random.default_rng(1)
    intrinsic = model.sample(len(test), rng)
    # the intrinsic sample observed with the real rows' own errors (row by row, sorted by r)
    sample = Photometry(intrinsic.z, intrinsic.mag.copy(), intrinsic.err, intrinsic.source_row)
    err = test.err[np.argsort(test.mag[:, 2])][np.argsort(np.argsort(intrinsic.mag[:, 2]))]
    sample.mag += err * rng.standard_normal(err.shape)
    sample.err = err
    real = model_features(test)
    fake = model_features(sample)
    bare = model_features(intrinsic)
    print(
        f"{'feature':8s} {'real p5/p50/p95':>26s} {'model+noise p5/p50/p95':>26s} {'KS D':>6s}"
        f" {'sd real':>8s} {'sd model+noise':>14s} {'sd intrinsic':>12s}"
    )
    for k, name in enumerate(NAMES):
        rq = np.percentile(real[:, k], [5, 50, 95])
        fq = np.percentile(fake[:, k], [5, 50, 95])
        d = stats.ks_2samp(real[:, k], fake[:, k]).statistic
        print(
            f"{name:8s} {np.array2string(rq, precision=3):>26s} "
            f"{np.array2string(fq, precision=3):>26s} {d:6.3f} {_rsd(real[:, k]):8.4f}"
            f" {_rsd(fake[:, k]):14.4f} {_rsd(bare[:, k]):12.4f}"
        )
    for name, k in (("u-g", 2), ("g-r", 3)):  # scatter about the colour-redshift relation
        print(
            f"{name} scatter about its running median in z: real {_scatter_at_z(real, k):.4f}, "
            f"model+noise {_scatter_at_z(fake, k):.4f}, intrinsic {_scatter_at_z(bare, k):.4f}"
        )
    rho_r = np.corrcoef(real[:, 0], real[:, 3])[0, 1]
    rho_f = np.corrcoef(fake[:, 0], fake[:, 3])[0, 1]
    print(f"corr(z, g-r): real {rho_r:.3f}  model {rho_f:.3f}")
    for k, b in enumerate("ugriz"):
        print(
            f"err_{b} median: real {np.median(test.err[:, k]):.4f} "
            f"model {np.median(intrinsic.err[:, k]):.4f}"
        )
    print(
        f"kNN photo-z sigma_MAD (trained on real rows): on real {knn_sigma(train, test):.4f}, "
        f"on model samples + real errors {knn_sigma(train, sample):.4f}, "
        f"on intrinsic model samples {knn_sigma(train, intrinsic):.4f}"
    )
    if args.write:
        model = fit_model(both, n_components=args.components)
        model.fitted_on = (
            "SDSS_MGS.train + SDSS_MGS.test (10,000 real MGS galaxies, MLZ data), "
            "extreme deconvolution of petroMagErr "
            "(Bovy et al. 2011 EM, as astroML XDGMM, vectorised)"
        )
        out = ROOT / "photoz_tools" / "data" / "mock_model.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(model.to_json())
        print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
