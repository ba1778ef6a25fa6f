"""pz-score's work as plain functions: score photo-z estimators against spectroscopic truth.

``score(...)`` reads a predictions table in bounded batches, joins the truth (a column of the
same table, or a truth table by id), and returns one row of metrics per estimator (and per
`--by` bin, `--group` value, `--drop-widest` trial) as a ``pyarrow.Table``. Memory: the PDFs
are reduced batch by batch to PIT, CRPS and width68; only O(N) float columns are kept, because
the exact median of sigma_MAD needs them.

Which PDF belongs to which estimator: ``zphot`` uses the column ``pdf`` (pz-predict's), any
other estimator ``X`` uses ``X_pdf`` if present. Without a PDF, ``width68`` (or ``X_width68``)
still serves --drop-widest and the mean width. Bin edges come from the file metadata key
``pz_bin_edges``, else the default 180 bins over [0, 0.4].

The reading lives in :mod:`photoz_tools.scoring_read`, the per-row data in
:mod:`photoz_tools.scoring_data` (which plots draws from); this module turns that data into
metric rows and the output table.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from photoz_tools import metrics as M
from photoz_tools.errors import PzUsageError
from photoz_tools.scoring_data import Estimator, ScoreData, Warn, count, default_warn
from photoz_tools.scoring_read import DEDUPE_CHOICES, collect, parse_list

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "score",
    "collect",
    "metrics_rows",
    "rows_to_table",
    "table_metadata",
    "parse_bins",
    "parse_list",
    "ScoreData",
    "Estimator",
    "DEDUPE_CHOICES",
]


# --------------------------------------------------------------------------- option parsing


def parse_bins(text: str | int | Sequence[float]) -> int | list[float]:
    """--bins: a count N (equal-width bins over the data) or comma-separated increasing edges."""
    if isinstance(text, int):
        value: Any = text
    elif isinstance(text, str) and "," not in text:
        try:
            value = int(text)
        except ValueError:
            raise PzUsageError(
                f"--bins {text!r}: give a number of bins or edges like 0,0.1,0.2"
            ) from None
    else:
        try:
            value = (
                [float(x) for x in parse_list(text)]
                if isinstance(text, str)
                else [float(x) for x in text]
            )
        except ValueError:
            raise PzUsageError(f"--bins {text!r}: edges must be numbers, e.g. 0,0.1,0.2") from None
        if len(value) < 2 or any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise PzUsageError(f"--bins {text!r}: need at least two strictly increasing edges")
        return value
    if value < 1:
        raise PzUsageError(f"--bins {text!r}: the number of bins must be >= 1")
    return value


def parse_drop_widest(text: str | Sequence[float] | None) -> list[float]:
    """--drop-widest '10,20' -> [10.0, 20.0] (percentages in [0, 100))."""
    out = []
    for item in parse_list(text) if not isinstance(text, list | tuple) else text:
        try:
            v = float(item)
        except ValueError:
            raise PzUsageError(f"--drop-widest {text!r}: give percentages like 10,20") from None
        if not 0 <= v < 100:
            raise PzUsageError(f"--drop-widest {v:g}: a percentage must be in [0, 100)")
        out.append(v)
    return out


# --------------------------------------------------------------------------- metrics


def _labels(values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Sorted unique group labels and each row's label index."""
    uniq, inv = np.unique(values, return_inverse=True)
    fmt = [
        str(int(u))
        if isinstance(u, float | np.floating) and float(u).is_integer()
        else (u.decode() if isinstance(u, bytes) else str(u))
        for u in uniq.tolist()
    ]
    return fmt, inv.reshape(-1)


def _by_edges(data: ScoreData, bins: int | Sequence[float] | None, warn: Warn) -> Any:
    """(--by edges, each row's bin) or (None, None) without --by; rows outside are said."""
    if data.by is None:
        return None, None
    spec = 10 if bins is None else bins
    edges = (
        M.equal_width_edges(data.by, spec)
        if isinstance(spec, int)
        else np.asarray(spec, dtype=np.float64)
    )
    bin_of = M.bin_index(data.by, edges)
    outside = int((bin_of < 0).sum())
    if outside:
        warn(
            f"{count(outside, 'row')} with {data.by_name} outside the --bins edges "
            f"[{edges[0]:g}, {edges[-1]:g}] left out of the binned rows"
        )
    return edges, bin_of


def _drop_widest(est: Estimator, valid: np.ndarray, level: float) -> np.ndarray:
    """The valid rows less the `level` % widest PDFs (by width68)."""
    idx = np.flatnonzero(valid)
    n_keep = int(round(idx.size * (1 - level / 100.0)))
    # NaN widths sort last, so they are dropped first
    order = np.argsort(est.width68[idx], kind="stable")
    sel = np.zeros_like(valid)
    sel[idx[order[:n_keep]]] = True
    return sel


def metrics_rows(
    data: ScoreData,
    *,
    eta_threshold: float = 0.05,
    bins: int | Sequence[float] | None = None,
    drop_widest: Sequence[float] = (),
    warn: Warn | None = None,
) -> list[dict[str, Any]]:
    """One dict per (estimator, drop-widest trial, --by bin, group) plus mean/std over groups.

    Each row's ``N_excluded`` counts the rows of its cell left out of every metric (a null
    photo-z or an unusable PDF), so that N plus it is the cell's size.
    """
    warn = warn or default_warn
    edges, bin_of = _by_edges(data, bins, warn)
    groups = _labels(data.group) if data.group is not None else None
    levels: list[float | None] = (
        [0.0, *dict.fromkeys(d for d in drop_widest if d)] if drop_widest else [None]
    )
    everything = np.ones(data.zspec.size, dtype=bool)
    rows: list[dict[str, Any]] = []
    for est in data.estimators:
        valid = est.valid
        for level in levels:
            if level and est.width68 is None:
                warn(f"--drop-widest: {est.name} has no PDF or width68; its trials skipped")
                break
            sel = _drop_widest(est, valid, level) if level else valid
            head: dict[str, Any] = {"estimator": est.name}
            if level is not None:
                head["drop_widest"] = level
            cells = [(head, everything)]
            if edges is not None:
                cells = [
                    (
                        {
                            **head,
                            "by": data.by_name,
                            "by_lo": float(edges[b]),
                            "by_hi": float(edges[b + 1]),
                        },
                        bin_of == b,
                    )
                    for b in range(edges.size - 1)
                ]
            for chead, cell in cells:
                rows.extend(_cell_rows(data, est, chead, cell, sel, groups, eta_threshold))
    return rows


def _cell_rows(
    data: ScoreData,
    est: Estimator,
    head: dict[str, Any],
    cell: np.ndarray,
    sel: np.ndarray,
    groups: tuple[list[str], np.ndarray] | None,
    eta_threshold: float,
) -> list[dict[str, Any]]:
    """The row of one cell, or its rows per group plus their mean and std."""
    excluded = cell & ~est.valid

    def one(extra: dict[str, Any], where: np.ndarray) -> dict[str, Any]:
        row = {**head, **extra, **_stats(data, est, sel & where, eta_threshold)}
        row["N_excluded"] = int((excluded & where).sum())
        return row

    if groups is None:
        return [one({}, cell)]
    labels, gidx = groups
    per = [one({"group": label}, cell & (gidx == g)) for g, label in enumerate(labels)]
    mean, std = M.group_rows([r for r in per if r["N"] > 0])
    n_excluded = sum(r["N_excluded"] for r in per)  # like N: the total over the groups
    return [
        *per,
        {**head, "group": "mean", **mean, "N_excluded": n_excluded},
        {**head, "group": "std", **std, "N_excluded": n_excluded},
    ]


def _stats(
    data: ScoreData, est: Estimator, mask: np.ndarray, eta_threshold: float
) -> dict[str, Any]:
    zp, zs = est.zphot[mask], data.zspec[mask]
    crps = pit = width = None
    if est.has_pdf:
        ok = np.isfinite(est.pit[mask])
        pit, crps = est.pit[mask][ok], est.crps[mask][ok]
    if est.width68 is not None:
        w = est.width68[mask]
        width = w[np.isfinite(w)]
    return M.statistics(zp, zs, crps=crps, pit=pit, width68=width, eta_threshold=eta_threshold)


COLUMN_DOCS = {
    "estimator": "photo-z column scored",
    "drop_widest": "percentage of the widest PDFs (by width68) removed",
    "by": "column binned by --by",
    "by_lo": "lower edge of the --by bin",
    "by_hi": "upper edge of the --by bin (the last bin closed)",
    "group": "--group value, or mean / std over groups",
    "N": "galaxies scored",
    "bias": "mean of dz = (zphot - zspec)/(1 + zspec)",
    "sigma_mad": "1.4826 median |dz - median dz|",
    "eta": "percentage of |dz| > the --eta-threshold",
    "crps": "mean CRPS of the PDFs (exact for the histogram PDF)",
    "pit_ks": "Kolmogorov-Smirnov distance of the PIT values from uniform",
    "pit_cvm": "Cramer-von Mises W^2 of the PIT values against uniform",
    "width68": "mean width of the central 68 % interval of the PDFs",
    # last, so that the columns before it keep their places for readers by position
    "N_excluded": "rows of this cell not scored: null photo-z or unusable PDF (NaN, negative, "
    "zero sum)",
}


def rows_to_table(rows: list[dict[str, Any]], metadata: dict[str, str] | None = None) -> pa.Table:
    """The metric rows as an Arrow table (string labels, int N, float64 metrics)."""
    import pyarrow as pa

    keys = [k for k in COLUMN_DOCS if any(k in r for r in rows)]
    arrays = []
    for k in keys:
        vals = [r.get(k) for r in rows]
        if k in ("estimator", "by", "group"):
            arrays.append(pa.array([None if v is None else str(v) for v in vals], pa.string()))
        elif k in ("N", "N_excluded"):
            arrays.append(pa.array([int(v) for v in vals], pa.int64()))
        else:
            arrays.append(
                pa.array([math.nan if v is None else float(v) for v in vals], pa.float64())
            )
    fields = [
        pa.field(k, a.type, metadata={"description": COLUMN_DOCS[k]})
        for k, a in zip(keys, arrays, strict=True)
    ]
    schema = pa.schema(fields, metadata=metadata)
    return pa.Table.from_arrays(arrays, schema=schema)


def score(
    source: Any = "-",
    *,
    truth: str = "z",
    zphot: str | Sequence[str] = "zphot",
    truth_table: Any = None,
    id: str | None = None,
    eta_threshold: float = 0.05,
    by: str | None = None,
    bins: int | str | Sequence[float] | None = None,
    drop_widest: str | Sequence[float] = (),
    group: str | None = None,
    dedupe: str = "error",
    drop_nan: bool = False,
    plot: str | None = None,
    batch_rows: int | None = None,
    warn: Warn | None = None,
) -> pa.Table:
    """Score photo-z estimators against spectroscopic truth; the metrics as an Arrow table.

    Parameters mirror pz-score's options. Example::

        import photoz_tools
        t = photoz_tools.score("preds.parquet", truth="z", zphot="zphot,zphot_b16")
        t.to_pandas()
    """
    if not eta_threshold > 0:
        raise PzUsageError(f"--eta-threshold {eta_threshold}: must be > 0")
    spec = None if bins is None else parse_bins(bins)
    if spec is not None and by is None:
        raise PzUsageError("--bins needs --by COLUMN")
    drops = parse_drop_widest(drop_widest)
    data = collect(
        source,
        truth=truth,
        zphot=zphot,
        truth_table=truth_table,
        id=id,
        by=by,
        group=group,
        dedupe=dedupe,
        drop_nan=drop_nan,
        batch_rows=batch_rows,
        warn=warn,
    )
    rows = metrics_rows(data, eta_threshold=eta_threshold, bins=spec, drop_widest=drops, warn=warn)
    if plot:
        from photoz_tools.plots import score_figure

        score_figure(data, plot, eta_threshold=eta_threshold)
    return rows_to_table(rows, table_metadata(data, eta_threshold))


def table_metadata(data: ScoreData, eta_threshold: float) -> dict[str, str]:
    """The output table's key-value metadata: source, truth, threshold and the rows left out
    of the whole table by reason (``pz_score_dropped``, JSON), so a file says what it lacks."""
    return {
        "pz_score_source": str(data.source),
        "pz_score_truth": data.truth,
        "pz_score_eta_threshold": repr(eta_threshold),
        "pz_score_dropped": json.dumps(data.dropped),
    }
