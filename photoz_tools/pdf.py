"""The redshift-PDF core: binning and everything computed from a binned PDF (plain numpy, no I/O).

A PDF row is the network's softmax over `Bins` (180 equal bins over [0, 0.4] by default). Every
function here reads it as the *piecewise-constant density* that puts probability ``p_k``
uniformly over bin k. That one reading makes all the summaries consistent with each other:

- ``zphot``  = sum_k p_k z_k over bin MIDPOINTS z_k (Pasquet et al. 2019, Eq. 2), which is also
  the exact mean of the piecewise-constant density;
- ``zstd``   = its exact standard deviation: the spread of the midpoints *plus* the within-bin
  uniform variance sum_k p_k w_k^2 / 12. A delta PDF (one bin) therefore has zstd = w/sqrt(12)
  (6.4e-4 for the default bins), not 0: the PDF cannot claim more precision than its binning;
- the CDF is piecewise linear (exact integral of the density), and ``quantile``, ``interval``,
  ``pit`` and ``crps`` (Eq. 5) are exact for it, not evaluated on a grid.

Outside [lo, hi] the CDF is 0 below and 1 above. The last bin is closed (z == hi belongs to it),
since the MGS sample is cut at z <= 0.4.

Inputs are arrays of shape (n, nbins) (a single row of shape (nbins,) also works and gives
scalars) of any float dtype; work is done in float64, in chunks of rows so memory stays bounded.
Rows are renormalised to sum to 1 on the fly (float32 softmax rows sum to 1 only to ~1e-7); a
row that sums to 0 or holds NaN gives NaN.

Flag bits of ``pz_flags`` (uint16):

=================  =====  =================================================================
FLAG_BAD_INPUT       1    NaN pixels or missing E(B-V): no prediction (set by pz-predict)
FLAG_EDGE_LOW        2    the PDF is piled at the lower range edge: density in the first bin
                          >= EDGE_FRACTION of the peak density (the range truncates it)
FLAG_EDGE_HIGH       4    the same at the upper edge (last bin)
FLAG_MULTIMODAL      8    a significant secondary peak: after 3-bin smoothing, two or more
                          separate runs of bins stand above MODE_FRACTION of the peak
FLAG_BROAD          16    width68 > BROAD_WIDTH (the central 68 % interval is wide)
=================  =====  =================================================================
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Bins",
    "normalize",
    "zphot",
    "zstd",
    "zmode",
    "cdf_at",
    "quantile",
    "interval",
    "pit",
    "crps",
    "pit_crps",
    "pit_crps_width",
    "usable",
    "summarize",
    "pdf_flags",
    "SUMMARY_COLUMNS",
    "FLAG_BAD_INPUT",
    "FLAG_EDGE_LOW",
    "FLAG_EDGE_HIGH",
    "FLAG_MULTIMODAL",
    "FLAG_BROAD",
    "FLAG_NAMES",
    "EDGE_FRACTION",
    "MODE_FRACTION",
    "BROAD_WIDTH",
    "PDF_PACKINGS",
    "PDF_PACKING_KEY",
    "LOG_FLOOR",
    "pack_pdf",
    "unpack_pdf",
    "packing_metadata",
    "read_packing",
]

FLAG_BAD_INPUT = 1
FLAG_EDGE_LOW = 2
FLAG_EDGE_HIGH = 4
FLAG_MULTIMODAL = 8
FLAG_BROAD = 16
FLAG_NAMES = {
    FLAG_BAD_INPUT: "bad_input",
    FLAG_EDGE_LOW: "edge_low",
    FLAG_EDGE_HIGH: "edge_high",
    FLAG_MULTIMODAL: "multimodal",
    FLAG_BROAD: "broad",
}

EDGE_FRACTION = 0.5  # edge-bin density / peak density that flags a PDF piled at an edge
MODE_FRACTION = 0.25  # level (fraction of the peak) a secondary peak must reach
BROAD_WIDTH = 0.05  # width68 above which FLAG_BROAD is set (eta's |dz| threshold, in z)

# the columns summarize() returns, in the order pz-predict writes them
SUMMARY_COLUMNS = ("zphot", "zphot_err", "zmode", "z_lo68", "z_hi68", "width68", "pz_flags")

_CHUNK_CELLS = 1 << 21  # ~2M float64 cells (16 MB) per work array


# --------------------------------------------------------------------------- binning


@dataclass(frozen=True, eq=False)
class Bins:
    """Redshift bin edges (float64, n+1, strictly increasing). The last bin is closed."""

    edges: np.ndarray

    def __post_init__(self) -> None:
        edges = np.array(self.edges, dtype=np.float64).reshape(-1)
        if edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
            raise ValueError("bin edges must be >= 2 finite, strictly increasing values")
        edges.flags.writeable = False
        object.__setattr__(self, "edges", edges)

    @classmethod
    def default(cls) -> Bins:
        """Pasquet et al. 2019: 180 bins of width 0.4/180 over 0 <= z <= 0.4."""
        return cls.linear(0.0, 0.4, 180)

    @classmethod
    def linear(cls, lo: float, hi: float, n: int) -> Bins:
        """`n` equal bins over [lo, hi]."""
        return cls(np.linspace(float(lo), float(hi), int(n) + 1))

    @property
    def n(self) -> int:
        return self.edges.size - 1

    @property
    def lo(self) -> float:
        return float(self.edges[0])

    @property
    def hi(self) -> float:
        return float(self.edges[-1])

    @property
    def midpoints(self) -> np.ndarray:
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    @property
    def widths(self) -> np.ndarray:
        return np.diff(self.edges)

    def index(self, z: Any) -> Any:
        """Bin index of z (int, or int64 array); the last bin is closed; -1 outside or NaN."""
        za = np.asarray(z, dtype=np.float64)
        k = np.searchsorted(self.edges, za, side="right") - 1
        k = np.where(za == self.edges[-1], self.n - 1, k)
        k = np.where((k < 0) | (k >= self.n) | ~np.isfinite(za), -1, k).astype(np.int64)
        return int(k) if k.ndim == 0 else k

    def to_json(self) -> str:
        """JSON list of the edges (the value of the metadata key "pz_bin_edges")."""
        return json.dumps([float(e) for e in self.edges])

    @classmethod
    def from_json(cls, text: str | bytes) -> Bins:
        """Bins from a JSON list of edges (as written by to_json)."""
        try:
            edges = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bin edges are not a JSON list of numbers: {exc}") from None
        if not isinstance(edges, list):
            raise ValueError("bin edges are not a JSON list of numbers")
        return cls(np.asarray(edges, dtype=np.float64))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bins):
            return NotImplemented
        return self.edges.shape == other.edges.shape and bool(
            np.allclose(self.edges, other.edges, rtol=1e-9, atol=1e-12)
        )

    def __hash__(self) -> int:
        return hash((self.n, round(self.lo, 9), round(self.hi, 9)))

    def __repr__(self) -> str:
        return f"Bins(n={self.n}, lo={self.lo:g}, hi={self.hi:g})"


# --------------------------------------------------------------------------- helpers


def _as_rows(pdf: Any, bins: Bins | None = None) -> tuple[np.ndarray, bool]:
    a = np.asarray(pdf)
    single = a.ndim == 1
    if single:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"pdf must have shape (n, nbins), got {np.shape(pdf)}")
    if bins is not None and a.shape[1] != bins.n:
        raise ValueError(f"pdf has {a.shape[1]} bins but the bin edges define {bins.n}")
    return a, single


def _chunks(n: int, nbins: int) -> tuple[range, int]:
    step = max(1, _CHUNK_CELLS // max(nbins, 1))
    return range(0, n, step), step


def _norm64(block: np.ndarray) -> np.ndarray:
    p = block.astype(np.float64, copy=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p /= p.sum(axis=1, keepdims=True)
    return p


def _per_row(value: Any, n: int, single: bool) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64)
    if v.ndim == 0:
        return np.full(n, float(v))
    v = v.reshape(-1)
    if v.size != n:
        raise ValueError(f"expected one value per PDF row ({n}), got {v.size}")
    return v


def _rowwise(
    pdf: Any,
    bins: Bins,
    fn: Callable[..., np.ndarray],
    *per_row: Any,
    out_shape: tuple[int, ...] = (),
) -> Any:
    """Apply fn(p_normalised_chunk, *per_row_chunks) chunk by chunk; gather (n, *out_shape)."""
    a, single = _as_rows(pdf, bins)
    n = a.shape[0]
    extras = [_per_row(v, n, single) for v in per_row]
    out = np.empty((n, *out_shape), dtype=np.float64)
    starts, step = _chunks(n, a.shape[1])
    for s in starts:
        out[s : s + step] = fn(_norm64(a[s : s + step]), *(e[s : s + step] for e in extras))
    return out[0] if single else out


def _dot(p: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row-wise p @ v. einsum, not BLAS: a threaded gemv is ~10x slower on a busy machine."""
    return np.einsum("ij,j->i", p, v)


def _cum(p: np.ndarray) -> np.ndarray:
    """CDF at the edges, shape (m, nbins+1), starting at 0."""
    c = np.zeros((p.shape[0], p.shape[1] + 1))
    np.cumsum(p, axis=1, out=c[:, 1:])
    return c


# --------------------------------------------------------------------------- summaries


def normalize(pdf: Any) -> np.ndarray:
    """Rows scaled to sum to 1 (float64); rows summing to 0 become NaN."""
    a, single = _as_rows(pdf)
    out = np.empty(a.shape, dtype=np.float64)
    starts, step = _chunks(a.shape[0], a.shape[1])
    for s in starts:
        out[s : s + step] = _norm64(a[s : s + step])
    return out[0] if single else out


def zphot(pdf: Any, bins: Bins) -> Any:
    """Expectation over the bin midpoints (Eq. 2 of Pasquet et al. 2019)."""
    mid = bins.midpoints
    return _rowwise(pdf, bins, lambda p: _dot(p, mid))


def zstd(pdf: Any, bins: Bins) -> Any:
    """Standard deviation of the piecewise-constant PDF (midpoint spread + within-bin w^2/12)."""
    mid, w2 = bins.midpoints, bins.widths**2 / 12.0

    def fn(p: np.ndarray) -> np.ndarray:
        mean = _dot(p, mid)
        var = _dot(p, mid * mid) - mean * mean + _dot(p, w2)
        return np.sqrt(np.maximum(var, 0.0))

    return _rowwise(pdf, bins, fn)


def zmode(pdf: Any, bins: Bins) -> Any:
    """Midpoint of the most probable bin (the first one on ties)."""
    a, single = _as_rows(pdf, bins)
    with np.errstate(invalid="ignore"):
        k = np.argmax(a, axis=1)
    out = bins.midpoints[k]
    bad = ~np.isfinite(a).all(axis=1) | (a.sum(axis=1) <= 0)
    out = np.where(bad, np.nan, out)
    return out[0] if single else out


def _cdf_block(p: np.ndarray, edges: np.ndarray, z: np.ndarray) -> np.ndarray:
    c = _cum(p)
    nb = p.shape[1]
    k = np.clip(np.searchsorted(edges, z, side="right") - 1, 0, nb - 1)
    rows = np.arange(p.shape[0])
    w = edges[k + 1] - edges[k]
    frac = np.clip((z - edges[k]) / w, 0.0, 1.0)
    # clipped: a cumulative sum of a normalised row can end at 1 + 2e-16 (one 1e308 cell)
    out = np.clip(c[rows, k] + p[rows, k] * frac, 0.0, 1.0)
    out = np.where(z < edges[0], 0.0, np.where(z >= edges[-1], 1.0, out))
    return np.where(np.isnan(z) | np.isnan(c[:, -1]), np.nan, out)


def cdf_at(pdf: Any, bins: Bins, z: Any) -> Any:
    """CDF of each row at z (scalar or one value per row): piecewise linear, 0 below, 1 above."""
    edges = bins.edges
    return _rowwise(pdf, bins, lambda p, zz: _cdf_block(p, edges, zz), z)


def _quantile_block(
    p: np.ndarray, edges: np.ndarray, q: np.ndarray, c: np.ndarray | None = None
) -> np.ndarray:
    """Smallest z with CDF(z) >= q, for a (m,) q per row (c: the edge CDF, if already known)."""
    c = _cum(p) if c is None else c
    nb = p.shape[1]
    rows = np.arange(p.shape[0])
    t = q[:, None]
    # first bin j whose right-edge CDF reaches q (its left-edge CDF is below q, so p_j > 0)
    j = np.minimum((c[:, 1:] < t).sum(axis=1), nb - 1)
    pj = p[rows, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(pj > 0, (q - c[rows, j]) / pj, 0.0)
    z = edges[j] + np.clip(frac, 0.0, 1.0) * (edges[j + 1] - edges[j])
    return np.where(np.isnan(c[:, -1]) | np.isnan(q), np.nan, z)


def quantile(pdf: Any, bins: Bins, q: Any) -> Any:
    """Inverse of the piecewise-linear CDF. Scalar q -> (n,); a sequence of m q's -> (n, m)."""
    edges = bins.edges
    qa = np.asarray(q, dtype=np.float64)
    if qa.ndim == 0:
        return _rowwise(pdf, bins, lambda p: _quantile_block(p, edges, np.full(len(p), qa)))
    qs = qa.reshape(-1)

    def fn(p: np.ndarray) -> np.ndarray:
        return np.stack([_quantile_block(p, edges, np.full(len(p), v)) for v in qs], axis=1)

    return _rowwise(pdf, bins, fn, out_shape=(qs.size,))


def interval(pdf: Any, bins: Bins, mass: float = 0.68) -> tuple[Any, Any]:
    """Central interval holding `mass`: (quantile((1 - mass)/2), quantile((1 + mass)/2))."""
    if not 0.0 < mass < 1.0:
        raise ValueError(f"interval mass must be in (0, 1), got {mass}")
    both = quantile(pdf, bins, [(1.0 - mass) / 2.0, (1.0 + mass) / 2.0])
    return both[..., 0], both[..., 1]


def pit(pdf: Any, bins: Bins, z: Any) -> Any:
    """Probability integral transform: each row's CDF at its true redshift."""
    return cdf_at(pdf, bins, z)


def _crps_block(
    p: np.ndarray, edges: np.ndarray, z: np.ndarray, c: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(pit, crps) of each row at z, exact for the piecewise-constant PDF."""
    nb = p.shape[1]
    c = _cum(p) if c is None else c
    a, b = c[:, :-1], c[:, 1:]
    w = np.diff(edges)
    # per bin j, with F linear from a to b: int F^2 = w (a^2 + ab + b^2) / 3 = f_j and
    # int (1 - F)^2 = f_j + h_j, h_j = w (1 - a - b). Bins below k add f_j, above f_j + h_j.
    f_all = (
        np.einsum("ij,ij,j->i", a, a, w)
        + np.einsum("ij,ij,j->i", a, b, w)
        + np.einsum("ij,ij,j->i", b, b, w)
    ) / 3.0
    h = a + b
    np.subtract(1.0, h, out=h)
    h *= w
    np.cumsum(h, axis=1, out=h)
    zc = np.clip(z, edges[0], edges[-1])
    k = np.clip(np.searchsorted(edges, zc, side="right") - 1, 0, nb - 1)
    rows = np.arange(p.shape[0])
    ak, bk = c[rows, k], c[rows, k + 1]
    total = f_all - (ak * ak + ak * bk + bk * bk) * (w[k] / 3.0) + (h[:, -1] - h[rows, k])
    # the bin holding z, split at z: F goes a -> fz on the left, fz -> b on the right
    ek = edges[k]
    wk = edges[k + 1] - ek
    left = zc - ek
    fz = ak + (bk - ak) * (left / wk)
    right = wk - left
    total += left * (ak * ak + ak * fz + fz * fz) / 3.0
    uf, ubk = 1.0 - fz, 1.0 - bk
    total += right * (uf * uf + uf * ubk + ubk * ubk) / 3.0
    # beyond the range the CDF is 0 (below lo) or 1 (above hi): add |z - edge| * 1
    total += np.maximum(edges[0] - z, 0.0) + np.maximum(z - edges[-1], 0.0)
    pit_ = np.where(z < edges[0], 0.0, np.where(z >= edges[-1], 1.0, np.clip(fz, 0.0, 1.0)))
    bad = np.isnan(z) | np.isnan(c[:, -1])
    return np.where(bad, np.nan, pit_), np.where(bad, np.nan, total)


def crps(pdf: Any, bins: Bins, z: Any) -> Any:
    """Continuous ranked probability score at the true z (Eq. 5), exact for the histogram PDF."""
    edges = bins.edges
    return _rowwise(pdf, bins, lambda p, zz: _crps_block(p, edges, zz)[1], z)


def pit_crps(pdf: Any, bins: Bins, z: Any) -> tuple[Any, Any]:
    """(pit, crps) in one pass over the PDFs: what scoring needs, at half the cost of two calls."""
    edges = bins.edges
    both = _rowwise(
        pdf, bins, lambda p, zz: np.stack(_crps_block(p, edges, zz), axis=1), z, out_shape=(2,)
    )
    return both[..., 0], both[..., 1]


def _score_block(p: np.ndarray, edges: np.ndarray, z: np.ndarray) -> np.ndarray:
    c = _cum(p)
    pit_, crps_ = _crps_block(p, edges, z, c)
    m = len(p)
    lo = _quantile_block(p, edges, np.full(m, 0.16), c)
    hi = _quantile_block(p, edges, np.full(m, 0.84), c)
    return np.stack([pit_, crps_, hi - lo], axis=1)


def usable(pdf: Any) -> np.ndarray:
    """True for PDF rows that can be scored: every bin finite and >= 0, and a positive sum.

    A null cell (all NaN), a NaN or negative bin, or an all-zero row has no CDF; scoring it
    would give NaN (or a wrong) PIT and CRPS, so callers leave such rows out with a count.
    """
    a = np.asarray(pdf)
    if a.ndim == 1:
        a = a[None, :]
    ok = np.empty(a.shape[0], dtype=bool)
    step = max(1, (1 << 22) // max(a.shape[1], 1))
    for s in range(0, a.shape[0], step):
        b = a[s : s + step]
        with np.errstate(invalid="ignore", over="ignore"):
            total = b.sum(axis=1, dtype=np.float64)
            ok[s : s + step] = np.isfinite(b).all(axis=1) & (b >= 0).all(axis=1) & (total > 0)
            ok[s : s + step] &= np.isfinite(total)
    return ok


def pit_crps_width(pdf: Any, bins: Bins, z: Any) -> tuple[Any, Any, Any]:
    """(pit, crps, width68) in one pass over the PDFs (one CDF per row): what pz-score needs."""
    edges = bins.edges
    out = _rowwise(pdf, bins, lambda p, zz: _score_block(p, edges, zz), z, out_shape=(3,))
    return out[..., 0], out[..., 1], out[..., 2]


# --------------------------------------------------------------------------- flags and summary


def _flags_block(p: np.ndarray, widths: np.ndarray, width68: np.ndarray) -> np.ndarray:
    flags = np.zeros(p.shape[0], dtype=np.uint16)
    dens = p / widths
    peak = dens.max(axis=1)
    with np.errstate(invalid="ignore"):
        flags[dens[:, 0] >= EDGE_FRACTION * peak] |= FLAG_EDGE_LOW
        flags[dens[:, -1] >= EDGE_FRACTION * peak] |= FLAG_EDGE_HIGH
        flags[width68 > BROAD_WIDTH] |= FLAG_BROAD
        # secondary peak: >= 2 separate runs above MODE_FRACTION of the (smoothed) peak
        sm = dens.copy()
        if p.shape[1] >= 3:
            sm[:, 1:-1] = (dens[:, :-2] + dens[:, 1:-1] + dens[:, 2:]) / 3.0
        up = sm >= MODE_FRACTION * sm.max(axis=1, keepdims=True)
        starts = up[:, 0].astype(np.int64) + (up[:, 1:] & ~up[:, :-1]).sum(axis=1)
    flags[starts >= 2] |= FLAG_MULTIMODAL
    flags[np.isnan(peak)] = 0
    return flags


def pdf_flags(pdf: Any, bins: Bins, width68: Any = None) -> Any:
    """The PDF-shape bits of pz_flags (edge_low, edge_high, multimodal, broad) as uint16."""
    a, single = _as_rows(pdf, bins)
    if width68 is None:
        lo, hi = interval(a, bins, 0.68)
        width68 = hi - lo
    w68 = _per_row(width68, a.shape[0], single)
    out = np.empty(a.shape[0], dtype=np.uint16)
    starts, step = _chunks(a.shape[0], a.shape[1])
    for s in starts:
        out[s : s + step] = _flags_block(_norm64(a[s : s + step]), bins.widths, w68[s : s + step])
    return out[0] if single else out


def summarize(pdf: Any, bins: Bins) -> dict[str, np.ndarray]:
    """The per-row summary columns pz-predict writes (float32, pz_flags uint16), in one pass.

    Keys: zphot, zphot_err, zmode, z_lo68, z_hi68, width68, pz_flags (see SUMMARY_COLUMNS).
    """
    a, _ = _as_rows(pdf, bins)
    n = a.shape[0]
    out = {k: np.empty(n, dtype=np.float32) for k in SUMMARY_COLUMNS[:-1]}
    out["pz_flags"] = np.empty(n, dtype=np.uint16)
    mid, widths, edges = bins.midpoints, bins.widths, bins.edges
    w2 = widths**2 / 12.0
    starts, step = _chunks(n, a.shape[1])
    for s in starts:
        block = a[s : s + step]
        p = _norm64(block)
        m = len(p)
        mean = _dot(p, mid)
        var = _dot(p, mid * mid) - mean * mean + _dot(p, w2)
        c = _cum(p)
        lo = _quantile_block(p, edges, np.full(m, 0.16), c)
        hi = _quantile_block(p, edges, np.full(m, 0.84), c)
        bad = np.isnan(mean)
        k = np.argmax(np.where(np.isnan(p), -1.0, p), axis=1)
        sl = slice(s, s + m)
        out["zphot"][sl] = mean
        out["zphot_err"][sl] = np.sqrt(np.maximum(var, 0.0))
        out["zmode"][sl] = np.where(bad, np.nan, mid[k])
        out["z_lo68"][sl] = lo
        out["z_hi68"][sl] = hi
        out["width68"][sl] = hi - lo
        out["pz_flags"][sl] = _flags_block(p, widths, hi - lo)
    return out


# --------------------------------------------------------------------------- compact PDFs

# A float32 PDF costs 720 bytes a galaxy (720 GB for 10^9). The packings below keep one byte a
# bin plus the row's maximum (a float32 `pdf_max` column), the idea of qp's packed_interp:
#
# - "uint8":    code = round(255 p / max). Restored p = code / 255 * max, exact to max/510 per
#               bin; bins below max/510 become 0 (the far tails, where an outlier's truth lies).
# - "uint8log": code 0 for p < LOG_FLOOR * max, else 1 + round(254 (1 - ln(p/max) / ln(floor))):
#               a relative error of at most floor^(-1/508) - 1 per bin (1.8 % for 1e-4) down to
#               floor * max, so the tails survive; bins below the floor become 0.
#
# Either way the restored row is renormalised to sum to 1. The packing is named in the file's
# metadata under PDF_PACKING_KEY (see packing_metadata), so readers need no convention.
# pz-predict writes "uint8" only: uint8log measured worse on PIT and CRPS at every floor (its
# coarser steps at the peak cost more than the tails it keeps; benchmarks/pdf_packing.md) and, on
# sharp PDFs, compresses worse. Readers restore both.

PDF_PACKINGS = ("uint8", "uint8log")
PDF_PACKING_KEY = "pz_pdf_packing"
LOG_FLOOR = 1e-4  # uint8log: the smallest p/max kept (below it a bin restores to 0)


def pack_pdf(
    pdf: Any, packing: str = "uint8", floor: float = LOG_FLOOR
) -> tuple[np.ndarray, np.ndarray]:
    """(codes uint8 (n, nbins), pdf_max float32 (n,)): each row scaled to its own maximum.

    Scaling per row (not to a global 1) spends the 256 levels where each PDF has its mass.
    Rows that hold NaN/inf, or sum to <= 0, get codes 0 and pdf_max NaN (the writer nulls them).
    `floor` is used by "uint8log" only.
    """
    if packing not in PDF_PACKINGS:
        raise ValueError(f"unknown PDF packing {packing!r}: choose one of {PDF_PACKINGS}")
    a, single = _as_rows(pdf)
    n, nb = a.shape
    codes = np.zeros((n, nb), dtype=np.uint8)
    pmax = np.empty(n, dtype=np.float32)
    starts, step = _chunks(n, nb)
    for s in starts:
        blk = np.maximum(a[s : s + step].astype(np.float64), 0.0)
        m = blk.max(axis=1) if nb else np.zeros(len(blk))
        good = np.isfinite(blk).all(axis=1) & (m > 0)
        scale = np.where(good, m, 1.0)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(good[:, None], blk / scale, 0.0)
            if packing == "uint8":
                c = np.rint(255.0 * r)
            else:
                lf = np.log(float(floor))
                c = 1.0 + np.rint(254.0 * (1.0 - np.log(np.maximum(r, floor)) / lf))
                c = np.where(r >= floor, c, 0.0)
        codes[s : s + step] = np.clip(c, 0, 255).astype(np.uint8)
        pmax[s : s + step] = np.where(good, m, np.nan)
    return (codes[0], pmax[0]) if single else (codes, pmax)


def unpack_pdf(
    codes: Any,
    pdf_max: Any,
    packing: str = "uint8",
    floor: float = LOG_FLOOR,
    normalise: bool = True,
) -> np.ndarray:
    """PDFs (float64) back from pack_pdf's codes and per-row maxima.

    p = code / 255 * pdf_max ("uint8") or pdf_max * floor^(1 - (code - 1)/254) ("uint8log", code
    0 -> 0), then each row renormalised to sum to 1 (the rounding moves the sum by up to
    nbins * max / 510). A NaN pdf_max or NaN code (a null row) gives a row of NaN.
    """
    if packing not in PDF_PACKINGS:
        raise ValueError(f"unknown PDF packing {packing!r}: choose one of {PDF_PACKINGS}")
    c, single = _as_rows(codes)
    m = _per_row(pdf_max, c.shape[0], single)
    cf = c.astype(np.float64)
    if packing == "uint8":
        r = cf / 255.0
    else:
        with np.errstate(invalid="ignore"):
            r = np.where(cf > 0, np.power(float(floor), 1.0 - (cf - 1.0) / 254.0), 0.0)
            r = np.where(np.isnan(cf), np.nan, r)
    out = r * m[:, None]
    if normalise:
        out = normalize(out)
    return out[0] if single else out


def packing_metadata(packing: str, column: str = "pdf", floor: float = LOG_FLOOR) -> str:
    """The value of the PDF_PACKING_KEY metadata: JSON {column: {packing, max_column[, floor]}}."""
    if packing not in PDF_PACKINGS:
        raise ValueError(f"unknown PDF packing {packing!r}: choose one of {PDF_PACKINGS}")
    spec: dict[str, Any] = {"packing": packing, "max_column": f"{column}_max"}
    if packing == "uint8log":
        spec["floor"] = float(floor)
    return json.dumps({column: spec})


def read_packing(text: str | bytes | None) -> dict[str, dict[str, Any]]:
    """packing_metadata's JSON back as {column: spec} ({} for None/empty); ValueError if bad."""
    if not text:
        return {}
    try:
        specs = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(specs, dict):
        raise ValueError("not a JSON object of column: packing")
    for col, spec in specs.items():
        if (
            not isinstance(spec, dict)
            or spec.get("packing") not in PDF_PACKINGS
            or not isinstance(spec.get("max_column"), str)
        ):
            raise ValueError(f"column {col!r}: expected a packing among {PDF_PACKINGS}")
    return specs
