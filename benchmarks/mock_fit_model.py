"""Fit the compact photometry model that pz-mock ships (photoz_tools/data/mock_model.json) to the
real MGS photometry, and measure how well samples from it match the held-out real rows.

Run: .venv/bin/python benchmarks/mock_fit_model.py [--write]
The two MLZ files are not drawn from one distribution (test is ~0.2 mag brighter and redder than
train), so both are pooled and split at random: the comparison fits one half and checks it against
the other; the shipped model is then fitted to all 10,000 rows.
"""

from __future__ import annotations

import argparse
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
    model = fit_model(train, n_components=args.components)
    sample = model.sample(len(test), np.random.default_rng(1))
    real = model_features(test)
    fake = model_features(sample)
    print(f"{'feature':8s} {'real p5/p50/p95':>26s} {'model p5/p50/p95':>26s} {'KS D':>6s}")
    for k, name in enumerate(NAMES):
        rq = np.percentile(real[:, k], [5, 50, 95])
        fq = np.percentile(fake[:, k], [5, 50, 95])
        d = stats.ks_2samp(real[:, k], fake[:, k]).statistic
        print(
            f"{name:8s} {np.array2string(rq, precision=3):>26s} "
            f"{np.array2string(fq, precision=3):>26s} {d:6.3f}"
        )
    rho_r = np.corrcoef(real[:, 0], real[:, 3])[0, 1]
    rho_f = np.corrcoef(fake[:, 0], fake[:, 3])[0, 1]
    print(f"corr(z, g-r): real {rho_r:.3f}  model {rho_f:.3f}")
    for k, b in enumerate("ugriz"):
        print(
            f"err_{b} median: real {np.median(test.err[:, k]):.4f} "
            f"model {np.median(sample.err[:, k]):.4f}"
        )
    print(
        f"kNN photo-z sigma_MAD (trained on real rows): on real {knn_sigma(train, test):.4f}, "
        f"on model samples {knn_sigma(train, sample):.4f}"
    )
    if args.write:
        model = fit_model(both, n_components=args.components)
        model.fitted_on = "SDSS_MGS.train + SDSS_MGS.test (10,000 real MGS galaxies, MLZ data)"
        out = ROOT / "photoz_tools" / "data" / "mock_model.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(model.to_json())
        print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
