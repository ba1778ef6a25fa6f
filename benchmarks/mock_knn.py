"""The demo's CNN beside a photometry-only baseline on the same held-out galaxies.

The baseline is Beck et al. (2016)-like: scikit-learn's KNeighborsRegressor on the catalogue's
dereddened magnitudes and colours (standardised), trained on the dataset's train+validation
rows (the CNN's training rows), evaluated on the test rows (fold 0) the CNN predicted.
A constant predictor (the training median) sets the floor every estimator must beat.

Run: .venv/bin/python benchmarks/mock_knn.py [DEMO_OUTPUT]   (default demo-output)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from photoz_tools.metrics import bias, eta, sigma_mad

BANDS = "ugriz"


def features(table) -> np.ndarray:
    mags = np.column_stack([table[f"dered_petro_{b}"].to_numpy() for b in BANDS])
    return np.column_stack([mags, -np.diff(mags, axis=1)])


def row(name: str, zp: np.ndarray, z: np.ndarray, crps: float | None = None) -> str:
    dz = (zp - z) / (1 + z)
    c = f"{crps:.4f}" if crps is not None else "-"
    return f"| {name} | {len(z)} | {bias(dz):+.4f} | {sigma_mad(dz):.4f} | {eta(dz):.1f} | {c} |"


def main() -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.preprocessing import StandardScaler

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-output")
    ds = pq.read_table(out / "dataset.parquet", columns=None).drop(["image"])
    pred = pq.read_table(out / "zphot.parquet")
    train = ds.filter(pc.not_equal(ds["split"], "test"))
    test_ids = pred["specObjID"].to_numpy()
    order = {v: i for i, v in enumerate(ds["specObjID"].to_numpy())}
    test = ds.take(np.array([order[v] for v in test_ids]))
    z = test["z"].to_numpy()
    scaler = StandardScaler().fit(features(train))
    knn = KNeighborsRegressor(n_neighbors=15, weights="distance")
    knn.fit(scaler.transform(features(train)), train["z"].to_numpy())
    zk = knn.predict(scaler.transform(features(test)))
    const = np.full_like(z, np.median(train["z"].to_numpy()))
    crps = None
    if "pdf" in pred.column_names:
        from photoz_tools import pdf as pzpdf

        p = np.stack(pred["pdf"].to_numpy(zero_copy_only=False)).astype(np.float64)
        crps = float(np.mean(pzpdf.crps(p, pzpdf.Bins.default(), z)))
    print(f"{len(train)} training rows, {len(z)} held-out rows ({out})")
    print("| estimator | N | bias | sigma_MAD | eta % | CRPS |")
    print("|---|---|---|---|---|---|")
    print(row("CNN (small, demo)", pred["zphot"].to_numpy(), z, crps))
    print(row("kNN on magnitudes + colours (sklearn, k=15)", zk, z))
    if "zphot_b16" in test.column_names:
        print(
            row(
                "catalogue zphot_b16 (pz-mock's leave-one-out kNN)", test["zphot_b16"].to_numpy(), z
            )
        )
    print(row("constant (training median)", const, z))


if __name__ == "__main__":
    main()
