"""Photo-z quality metrics (plain numpy, no I/O), as Pasquet et al. 2019 define them.

- residual   dz = (zphot - zspec) / (1 + zspec)
- bias       mean(dz)
- sigma_MAD  1.4826 * median(|dz - median(dz)|)   (exact median: needs the O(N) column)
- eta        percentage of |dz| > threshold (0.05)
- PIT flatness: the Kolmogorov-Smirnov and Cramer-von Mises statistics of the PIT values against
  the uniform distribution, computed here in numpy (scipy.stats costs ~1 s to import).

Plus helpers to evaluate them in bins of any column and per group (folds), with mean and standard
deviation over groups (the paper's Table 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "residuals",
    "bias",
    "sigma_mad",
    "eta",
    "point_metrics",
    "ks_uniform",
    "cvm_uniform",
    "pit_flatness",
    "bin_index",
    "equal_width_edges",
    "statistics",
    "group_rows",
    "impossible_redshift",
    "METRIC_NAMES",
    "Z_TRUTH_MIN",
    "Z_TRUTH_MAX",
]

MAD_SCALE = 1.4826
# the metric columns statistics() returns, in display order
METRIC_NAMES = ("N", "bias", "sigma_mad", "eta", "crps", "pit_ks", "pit_cvm", "width68")
# The range a spectroscopic redshift can take: SDSS spectra of stars and very nearby galaxies
# give z a little below 0 (peculiar velocities, ~-0.005 at worst), and no object is beyond
# z ~ 10. Outside it the value is a sentinel (-9999), another column, or a corrupted cell, and
# scoring it would be wrong (a truth of 1e30 gives a CRPS of 1e28).
Z_TRUTH_MIN = -0.01
Z_TRUTH_MAX = 10.0


def impossible_redshift(z: Any) -> np.ndarray:
    """True where a finite redshift lies outside [Z_TRUTH_MIN, Z_TRUTH_MAX] (NaN is not tested)."""
    za = np.asarray(z, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(za) & ((za < Z_TRUTH_MIN) | (za > Z_TRUTH_MAX))


def residuals(zphot: Any, zspec: Any) -> np.ndarray:
    """dz = (zphot - zspec) / (1 + zspec): the error scaled to the (1 + z) stretch of spectra."""
    zp = np.asarray(zphot, dtype=np.float64)
    zs = np.asarray(zspec, dtype=np.float64)
    return (zp - zs) / (1.0 + zs)


def bias(dz: Any) -> float:
    """Mean residual; NaN for an empty sample."""
    d = np.asarray(dz, dtype=np.float64)
    return float(d.mean()) if d.size else float("nan")


def sigma_mad(dz: Any) -> float:
    """1.4826 * median(|dz - median(dz)|): a Gaussian-equivalent scatter blind to outliers."""
    d = np.asarray(dz, dtype=np.float64)
    if d.size == 0:
        return float("nan")
    med = np.median(d)
    return float(MAD_SCALE * np.median(np.abs(d - med)))


def eta(dz: Any, threshold: float = 0.05) -> float:
    """Outlier fraction in percent: |dz| > threshold."""
    d = np.asarray(dz, dtype=np.float64)
    if d.size == 0:
        return float("nan")
    return float(100.0 * np.count_nonzero(np.abs(d) > threshold) / d.size)


def point_metrics(zphot: Any, zspec: Any, eta_threshold: float = 0.05) -> dict[str, float]:
    """{N, bias, sigma_mad, eta} of one estimator."""
    dz = residuals(zphot, zspec)
    return {
        "N": int(dz.size),
        "bias": bias(dz),
        "sigma_mad": sigma_mad(dz),
        "eta": eta(dz, eta_threshold),
    }


# --------------------------------------------------------------------------- PIT flatness


def _kolmogorov_sf(x: float) -> float:
    """P(sqrt(n) D > x) for large n (Kolmogorov's series)."""
    if x <= 0.0:
        return 1.0
    if x < 0.2:  # the series converges slowly here and the answer is 1 to 1e-15
        return 1.0
    k = np.arange(1, 101)
    return float(np.clip(2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * (k * x) ** 2)), 0, 1))


def ks_uniform(u: Any) -> tuple[float, float]:
    """KS statistic D of u against U(0, 1) and its asymptotic p-value (Stephens' correction)."""
    x = np.sort(np.asarray(u, dtype=np.float64).reshape(-1))
    n = x.size
    if n == 0:
        return float("nan"), float("nan")
    i = np.arange(1, n + 1)
    d = float(max(np.max(i / n - x), np.max(x - (i - 1) / n)))
    sn = np.sqrt(n)
    return d, _kolmogorov_sf((sn + 0.12 + 0.11 / sn) * d)


def cvm_uniform(u: Any) -> float:
    """Cramer-von Mises statistic W^2 = 1/(12n) + sum((2i-1)/(2n) - u_(i))^2 against U(0, 1).

    Unlike KS it weighs the whole PIT histogram; ~0.46 is the 5 % critical value for any n.
    """
    x = np.sort(np.asarray(u, dtype=np.float64).reshape(-1))
    n = x.size
    if n == 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(1.0 / (12 * n) + np.sum(((2 * i - 1) / (2.0 * n) - x) ** 2))


def pit_flatness(pit: Any) -> dict[str, float]:
    """{pit_ks, pit_ks_p, pit_cvm}: how far the PIT values are from uniform (0 is perfect)."""
    d, p = ks_uniform(pit)
    return {"pit_ks": d, "pit_ks_p": p, "pit_cvm": cvm_uniform(pit)}


# --------------------------------------------------------------------------- bins and groups


def bin_index(x: Any, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Bin of each x for the given edges (last bin closed); -1 outside or NaN.

    ValueError when `edges` is not a 1-D list of at least 2 edges (no bin to put x in)."""
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2:
        got = f"{e.size} edge(s)" if e.ndim == 1 else f"an array of shape {e.shape}"
        raise ValueError(f"bin_index needs a 1-D list of at least 2 bin edges, got {got}")
    xa = np.asarray(x, dtype=np.float64)
    k = np.searchsorted(e, xa, side="right") - 1
    k = np.where(xa == e[-1], e.size - 2, k)
    return np.where((k < 0) | (k >= e.size - 1) | ~np.isfinite(xa), -1, k).astype(np.int64)


def equal_width_edges(x: Any, n: int) -> np.ndarray:
    """`n` equal-width bins spanning the finite values of x."""
    xa = np.asarray(x, dtype=np.float64)
    xa = xa[np.isfinite(xa)]
    if xa.size == 0:
        return np.linspace(0.0, 1.0, n + 1)
    lo, hi = float(xa.min()), float(xa.max())
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n + 1)


def statistics(
    zphot: Any,
    zspec: Any,
    *,
    crps: Any = None,
    pit: Any = None,
    width68: Any = None,
    eta_threshold: float = 0.05,
) -> dict[str, float]:
    """All metrics of one sample: N, bias, sigma_mad, eta, and where PDFs exist mean CRPS,
    PIT flatness (KS, CvM) and mean width68 (NaN where they do not)."""
    row: dict[str, float] = dict(point_metrics(zphot, zspec, eta_threshold))
    nan = float("nan")
    row["crps"] = float(np.mean(crps)) if crps is not None and np.size(crps) else nan
    if pit is not None and np.size(pit):
        flat = pit_flatness(pit)
        row["pit_ks"], row["pit_cvm"] = flat["pit_ks"], flat["pit_cvm"]
    else:
        row["pit_ks"] = row["pit_cvm"] = nan
    row["width68"] = float(np.mean(width68)) if width68 is not None and np.size(width68) else nan
    return row


def group_rows(
    rows: Sequence[dict[str, Any]], keys: Sequence[str] = METRIC_NAMES
) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and standard deviation (ddof=1, as for k folds) over per-group metric rows.

    N on both rows is the total number of galaxies over the groups.
    """
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for k in keys:
        vals = np.array([r[k] for r in rows], dtype=np.float64)
        if k == "N":
            mean[k] = std[k] = int(vals.sum())
            continue
        ok = vals[np.isfinite(vals)]
        mean[k] = float(ok.mean()) if ok.size else float("nan")
        std[k] = float(ok.std(ddof=1)) if ok.size > 1 else float("nan")
    return mean, std
