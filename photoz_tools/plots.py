"""Diagnostic figures (matplotlib, imported here only, with the Agg backend: no display needed).

``score_figure`` draws pz-score's one-page summary: zphot vs zspec density, the dz histogram with
the Gaussian of sigma_MAD and bias, the PIT histogram, and mean dz in bins of zspec and zphot
(the paper's Figures 5, 6 and 8 in miniature).
"""

from __future__ import annotations

from os import PathLike
from typing import TYPE_CHECKING, Any

import numpy as np

from photoz_tools import metrics as M
from photoz_tools.errors import PzError

if TYPE_CHECKING:
    from photoz_tools.scoring_data import ScoreData

COLORS = ("#1f5fa8", "#d6604d", "#4d9221", "#8e44ad", "#e08214", "#555555")


def _binned_mean(
    x: np.ndarray, y: np.ndarray, edges: np.ndarray, min_n: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres, mean y and its standard error per x bin (bins with < min_n rows are NaN)."""
    k = M.bin_index(x, edges)
    nb = edges.size - 1
    ok = k >= 0
    n = np.bincount(k[ok], minlength=nb).astype(float)
    s = np.bincount(k[ok], weights=y[ok], minlength=nb)
    s2 = np.bincount(k[ok], weights=y[ok] ** 2, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        err = np.sqrt(np.maximum(s2 / n - mean**2, 0) / np.maximum(n - 1, 1))
    mean[n < min_n] = np.nan
    err[n < min_n] = np.nan
    return 0.5 * (edges[:-1] + edges[1:]), mean, err


def _limits(data: ScoreData, ok0: np.ndarray) -> tuple[float, float]:
    """Axis range for the z panels: the data's, held to the bins unless the truth goes beyond."""
    zs, main = data.zspec, data.estimators[0]
    lo = float(min(np.nanmin(zs), np.nanmin(main.zphot[ok0]), data.bins.lo))
    hi = float(max(np.nanmax(zs), np.nanmax(main.zphot[ok0])))
    hi = min(hi, max(data.bins.hi, float(np.nanpercentile(zs, 99.9))))
    return lo, hi


def _panel_density(
    fig: Any, ax: Any, data: ScoreData, ok0: np.ndarray, lims: tuple[float, float], eta: float
) -> None:
    """zphot vs zspec density of the first estimator, with the |dz| = eta lines."""
    from matplotlib.colors import LogNorm

    zs, main = data.zspec, data.estimators[0]
    lo, hi = lims
    h = ax.hist2d(
        zs[ok0],
        main.zphot[ok0],
        bins=150,
        range=[[lo, hi], [lo, hi]],
        norm=LogNorm(),
        cmap="viridis",
        cmin=1,
    )
    fig.colorbar(h[3], ax=ax, label="galaxies per cell")
    grid = np.linspace(lo, hi, 50)
    ax.plot(grid, grid, "-", color="0.15", lw=0.7)
    for sgn in (-1, 1):
        ax.plot(grid, grid + sgn * eta * (1 + grid), "--", color="#c0392b", lw=0.9)
    ax.set(
        xlabel="zspec",
        ylabel=f"{main.name}",
        title=f"{main.name} vs zspec (dashed: |dz| = {eta:g})",
        xlim=(lo, hi),
        ylim=(lo, hi),
    )
    ax.set_facecolor("#f7f7f7")


def _panel_residuals(ax: Any, data: ScoreData, eta: float) -> None:
    """dz histogram per estimator with the Gaussian of its bias and sigma_MAD."""
    zs, ests = data.zspec, data.estimators
    sig0 = None
    span = 1.0
    for i, est in enumerate(ests):
        ok = est.valid
        dz = M.residuals(est.zphot[ok], zs[ok])
        b, s, e = M.bias(dz), M.sigma_mad(dz), M.eta(dz, eta)
        sig0 = sig0 or s
        span = 6 * sig0
        edges = np.linspace(-span, span, 121)
        c = COLORS[i % len(COLORS)]
        ax.hist(
            dz,
            bins=edges,
            density=True,
            histtype="step",
            color=c,
            lw=1.4,
            label=f"{est.name}: bias {b:.2e}, $\\sigma_{{MAD}}$ {s:.5f}, $\\eta$ {e:.3g} %",
        )
        x = np.linspace(-span, span, 400)
        ax.plot(
            x, np.exp(-0.5 * ((x - b) / s) ** 2) / (s * np.sqrt(2 * np.pi)), color=c, ls="--", lw=1
        )
    ax.set(
        xlabel="dz = (zphot - zspec) / (1 + zspec)",
        ylabel="density",
        title="residuals (dashed: Gaussian of bias, $\\sigma_{MAD}$)",
        xlim=(-span, span),
    )
    ax.set_ylim(0, ax.get_ylim()[1] * (1.15 + 0.1 * len(ests)))
    ax.legend(fontsize=8, loc="upper left")


def _panel_pit(ax: Any, data: ScoreData) -> None:
    """PIT histogram of every estimator with PDFs (flat = calibrated)."""
    with_pdf = [(i, e) for i, e in enumerate(data.estimators) if e.has_pdf]
    if with_pdf:
        for i, est in with_pdf:
            p = est.pit[est.valid & np.isfinite(est.pit)]
            ks, _ = M.ks_uniform(p)
            ax.hist(
                p,
                bins=40,
                range=(0, 1),
                density=True,
                histtype="step",
                lw=1.4,
                color=COLORS[i % len(COLORS)],
                label=f"{est.name}: KS {ks:.4f}, CvM {M.cvm_uniform(p):.3g}",
            )
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.legend(fontsize=8, loc="lower center")
        ax.set_ylim(bottom=0)
    else:
        ax.text(
            0.5,
            0.5,
            "no PDF column: no PIT",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="0.4",
        )
    ax.set(
        xlabel="PIT = CDF(zspec)",
        ylabel="density",
        title="PIT (flat = calibrated PDFs)",
        xlim=(0, 1),
    )


def _panel_binned(ax: Any, data: ScoreData, against: str, edges: np.ndarray) -> None:
    """Mean dz in bins of zspec or of each estimator's own zphot."""
    zs = data.zspec
    for i, est in enumerate(data.estimators):
        ok = est.valid
        dz = M.residuals(est.zphot[ok], zs[ok])
        x = zs[ok] if against == "zspec" else est.zphot[ok]
        cx, mean, err = _binned_mean(x, dz, edges)
        ax.errorbar(
            cx,
            mean,
            yerr=err,
            marker="o",
            ms=3,
            lw=1,
            capsize=2,
            color=COLORS[i % len(COLORS)],
            label=est.name,
        )
    ax.axhline(0, color="k", lw=0.8, ls=":")
    ax.set(
        xlabel=against if against == "zspec" else "zphot (each estimator's own)",
        ylabel="mean dz",
        title=f"mean dz in bins of {against}",
    )
    ax.legend(fontsize=8)


def score_figure(
    data: ScoreData, path: str | PathLike, eta_threshold: float = 0.05, dpi: int = 110
) -> None:
    """Write the six-panel summary of `data` (all its estimators) to a PNG/PDF/SVG file.

    Rows an estimator is not scored on (null photo-z, unusable PDF) are not drawn either, so
    the figure shows the galaxies the metrics table counts.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main = data.estimators[0]
    ok0 = main.valid
    if not ok0.any():
        raise PzError(f"--plot: {main.name} has no non-null values to plot")
    fig, axes = plt.subplots(2, 3, figsize=(15, 9.2))
    try:
        fig.suptitle(
            f"pz-score: {data.source}  (truth: {data.truth}, N = {int(ok0.sum()):,})",
            fontsize=12,
        )
        lims = _limits(data, ok0)
        _panel_density(fig, axes[0, 0], data, ok0, lims, eta_threshold)
        _panel_residuals(axes[0, 1], data, eta_threshold)
        _panel_pit(axes[0, 2], data)
        edges = np.linspace(lims[0], lims[1], 26)
        _panel_binned(axes[1, 0], data, "zspec", edges)
        _panel_binned(axes[1, 1], data, "zphot", edges)
        # counts per zspec bin (context for the binned means)
        ax = axes[1, 2]
        ax.hist(data.zspec, bins=edges, color="0.6")
        ax.set(xlabel="zspec", ylabel="galaxies", title="zspec distribution")
        fig.tight_layout()
        _save_atomically(fig, path, dpi)
    finally:
        plt.close(fig)


def _save_atomically(fig: Any, path: str | PathLike, dpi: int) -> None:
    """Save beside the target, then rename: a failed or killed run leaves no half figure."""
    import os
    import tempfile

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower().lstrip(".") or "png"
    fd, tmp = tempfile.mkstemp(
        prefix=".pz-plot-", suffix=f".{ext}", dir=os.path.dirname(os.path.abspath(path))
    )
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, format=ext)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
