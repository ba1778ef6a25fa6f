"""The CNN beside photometry-only baselines on the same held-out galaxies.

Baselines, fitted on the CNN's training rows only and evaluated on the rows the CNN predicted:
- kNN: scikit-learn's KNeighborsRegressor (k=15, distance-weighted) on the catalogue's
  dereddened magnitudes and colours, standardised;
- the same with the magnitude errors as extra features (a faint, noisy galaxy then looks for
  neighbours that were as noisy);
- Beck et al. (2016)-like local linear regression: for each galaxy, a linear fit of z on the
  features of its k=100 nearest training neighbours (SDSS DR12's photo-z method, the paper's
  catalogue-based comparison at sigma_MAD 0.0135);
- a constant (the training median), the floor every estimator must beat;
- on a mock (truth columns present), "oracle" kNNs given the true sizes or noise-free
  magnitudes: the most any pixel-based estimator could gain over the catalogue.

Run: .venv/bin/python benchmarks/mock_knn.py [DEMO_OUTPUT]   (default demo-output: its
     dataset.parquet, rows not split=test, trains; its zphot.parquet names the test rows)
 or: .venv/bin/python benchmarks/mock_knn.py --train T.parquet --test S.parquet --pred Z.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from photoz_tools.metrics import bias, eta, sigma_mad

BANDS = "ugriz"


def features(
    table, errors: bool = False, prefix: str = "dered_petro_", size: bool | str = False
) -> np.ndarray:
    """Magnitudes + colours (+ errors) (+ log size: True = the truth r50_true, or a column).

    The baselines read only what a survey catalogue has (pz-mock measures dered_petro_*,
    petroMagErr_* and petroR50_r from its frames); the truth (true_mag_*, r50_true) is read
    by the oracles alone."""
    mags = np.column_stack([table[f"{prefix}{b}"].to_numpy() for b in BANDS])
    cols = [mags, -np.diff(mags, axis=1)]
    if errors:
        cols.append(np.column_stack([table[f"petroMagErr_{b}"].to_numpy() for b in BANDS]))
    if size:
        name = "r50_true" if size is True else size
        cols.append(np.log10(np.clip(table[name].to_numpy(), 0.05, None))[:, None])
    return np.column_stack(cols)


def scaled(xtrain: np.ndarray, xtest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets standardised by the training rows' mean and spread."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(xtrain)
    return scaler.transform(xtrain), scaler.transform(xtest)


def knn(xtrain: np.ndarray, ztrain: np.ndarray, xtest: np.ndarray, k: int = 15) -> np.ndarray:
    """Distance-weighted kNN regression (scikit-learn), as the baselines and oracles use it."""
    from sklearn.neighbors import KNeighborsRegressor

    model = KNeighborsRegressor(n_neighbors=k, weights="distance").fit(xtrain, ztrain)
    return model.predict(xtest)


def oracle_rows(train, test, z: np.ndarray) -> list[str]:
    """kNN given a mock's truth: how much redshift information could pixels add at most?"""
    out = []
    for prefix, size, what in (
        ("dered_petro_", True, "catalogue magnitudes + colours + true log r50"),
        ("true_mag_", False, "noise-free true magnitudes + colours"),
        ("true_mag_", True, "true magnitudes + colours + true log r50"),
    ):
        xtr, xte = scaled(
            features(train, prefix=prefix, size=size), features(test, prefix=prefix, size=size)
        )
        out.append(row(f"oracle: kNN on {what} (k=15)", knn(xtr, train["z"].to_numpy(), xte), z))
    return out


def local_linear(xtrain: np.ndarray, ztrain: np.ndarray, xtest: np.ndarray, k: int = 100):
    """Beck et al. (2016): z from a least-squares plane through the k nearest neighbours."""
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=k).fit(xtrain).kneighbors(xtest)
    out = np.empty(len(xtest))
    for i, nb in enumerate(idx):
        a = np.column_stack([np.ones(k), xtrain[nb] - xtest[i]])
        coef, *_ = np.linalg.lstsq(a, ztrain[nb], rcond=None)
        # a plane extrapolated too far is worse than the neighbours' mean (Beck et al.'s guard)
        out[i] = coef[0] if abs(coef[0] - ztrain[nb].mean()) < 0.1 else ztrain[nb].mean()
    return out


def row(name: str, zp: np.ndarray, z: np.ndarray, crps: float | None = None) -> str:
    dz = (zp - z) / (1 + z)
    c = f"{crps:.4f}" if crps is not None else "-"
    return f"| {name} | {len(z)} | {bias(dz):+.4f} | {sigma_mad(dz):.4f} | {eta(dz):.2f} | {c} |"


def main() -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", nargs="?", default="demo-output", help="demo output folder")
    ap.add_argument("--train", help="training dataset (its rows not split=test train)")
    ap.add_argument("--test", help="dataset holding the predicted rows (default: --train)")
    ap.add_argument("--pred", help="pz-predict output on the test rows (absent: baselines only)")
    args = ap.parse_args()
    demo = Path(args.demo)
    train_path = Path(args.train) if args.train else demo / "dataset.parquet"
    test_path = Path(args.test) if args.test else train_path
    pred_path = Path(args.pred) if args.pred else demo / "zphot.parquet"

    def catalog(path: Path):
        names = pq.read_schema(path).names
        return pq.read_table(path, columns=[c for c in names if c != "image"])

    ds = catalog(train_path)
    train = ds.filter(pc.not_equal(ds["split"], "test")) if "split" in ds.column_names else ds
    test_all = ds if test_path == train_path else catalog(test_path)
    pred = pq.read_table(pred_path) if pred_path.exists() else None
    if pred is None:  # baselines alone, on every test row
        test = test_all.filter(pc.equal(test_all["split"], "test")) if test_all is ds else test_all
    else:
        idcol = next(c for c in ("specObjID", "objID", "id") if c in pred.column_names)
        order = {v: i for i, v in enumerate(test_all[idcol].to_numpy())}
        test = test_all.take(np.array([order[v] for v in pred[idcol].to_numpy()]))
    z, ztrain = test["z"].to_numpy(), train["z"].to_numpy()

    lines = []
    for errors in (False, True):
        xtr, xte = scaled(features(train, errors), features(test, errors))
        what = "magnitudes + colours" + (" + errors" if errors else "")
        lines.append(row(f"kNN on {what} (sklearn, k=15)", knn(xtr, ztrain, xte), z))
        if not errors:
            zll = zll_mags = local_linear(xtr, ztrain, xte)
            lines.append(row(f"local linear regression on {what} (Beck+16, k=100)", zll, z))
    if "petroR50_r" in train.column_names and "petroR50_r" in test.column_names:
        size = "petroR50_r"
        xtr, xte = scaled(features(train, size=size), features(test, size=size))
        what = "magnitudes + colours + catalogue log petroR50_r"
        lines.append(row(f"kNN on {what} (sklearn, k=15)", knn(xtr, ztrain, xte), z))
    crps = None
    if pred is not None and "pdf" in pred.column_names:
        from photoz_tools import pdf as pzpdf

        p = np.stack(pred["pdf"].to_numpy(zero_copy_only=False)).astype(np.float64)
        crps = float(np.mean(pzpdf.crps(p, pzpdf.Bins.default(), z)))
    where = pred_path if pred is not None else test_path
    print(f"{len(train)} training rows ({train_path}), {len(z)} held-out rows ({where})")
    print("| estimator | N | bias | sigma_MAD | eta % | CRPS |")
    print("|---|---|---|---|---|---|")
    if pred is not None:
        print(row("CNN", pred["zphot"].to_numpy(), z, crps))
    print("\n".join(lines))
    if "zphot_b16" in test.column_names:
        print(row("catalogue zphot_b16 (pz-mock's kNN)", test["zphot_b16"].to_numpy(), z))
    print(row("constant (training median)", np.full_like(z, np.median(ztrain)), z))
    if {"true_mag_r", "r50_true"} <= set(train.column_names) & set(test.column_names):
        print("\n".join(oracle_rows(train, test, z)))
    if pred is not None:
        print_split(test, z, pred["zphot"].to_numpy(), zll_mags, train)


def print_split(test, z: np.ndarray, zcnn: np.ndarray, zll: np.ndarray, train) -> None:
    """Where the CNN gains or loses against the catalogue: sigma_MAD per magnitude and redshift
    bin (beside the noise-free magnitudes' kNN where the truth is there), and how alike the two
    err."""
    oracle = None
    if "true_mag_r" in train.column_names and "true_mag_r" in test.column_names:
        tr, te = features(train, prefix="true_mag_"), features(test, prefix="true_mag_")
        str_, ste = scaled(tr, te)
        oracle = knn(str_, train["z"].to_numpy(), ste)
    dcnn, dll = (zcnn - z) / (1 + z), (zll - z) / (1 + z)
    print(
        f"\nCNN and local linear residuals correlate at {np.corrcoef(dcnn, dll)[0, 1]:.2f}; "
        f"their mean reaches sigma_MAD {sigma_mad(((zcnn + zll) / 2 - z) / (1 + z)):.4f}"
    )
    print("| bin | N | CNN | local linear | oracle: noise-free magnitudes |\n|---|---|---|---|---|")
    r = test["dered_petro_r"].to_numpy()
    bins = [("r < 16", r < 16), ("16 <= r < 17", (r >= 16) & (r < 17))]
    bins += [("17 <= r < 17.5", (r >= 17) & (r < 17.5)), ("r >= 17.5", r >= 17.5)]
    for lo, hi in ((0, 0.05), (0.05, 0.1), (0.1, 0.15), (0.15, 9)):
        bins.append((f"{lo} <= z < {hi}" if hi < 9 else f"z >= {lo}", (z >= lo) & (z < hi)))
    for name, m in bins:
        o = f"{sigma_mad((oracle[m] - z[m]) / (1 + z[m])):.4f}" if oracle is not None else "-"
        print(f"| {name} | {m.sum()} | {sigma_mad(dcnn[m]):.4f} | {sigma_mad(dll[m]):.4f} | {o} |")


if __name__ == "__main__":
    main()
