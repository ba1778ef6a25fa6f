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
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from photoz_tools import metrics as M
from photoz_tools import pdf as P
from photoz_tools.errors import PzError, PzUsageError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "score",
    "collect",
    "metrics_rows",
    "rows_to_table",
    "parse_bins",
    "parse_list",
    "ScoreData",
    "Estimator",
    "DEDUPE_CHOICES",
]

DEDUPE_CHOICES = ("error", "first", "last", "all")
Warn = Callable[[str], None]


def _default_warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


@dataclass
class Estimator:
    """One photo-z estimator's per-row results, aligned with ScoreData.zspec."""

    name: str
    pdf_column: str | None = None
    width_column: str | None = None
    from_pdf: bool = False  # zphot computed from the PDF (no zphot column)
    zphot: np.ndarray = field(default_factory=lambda: np.empty(0))
    pit: np.ndarray | None = None
    crps: np.ndarray | None = None
    width68: np.ndarray | None = None

    @property
    def has_pdf(self) -> bool:
        return self.pit is not None


@dataclass
class ScoreData:
    """Everything scoring needs, O(N) floats: truth, estimators, --by values, --group labels."""

    source: str
    truth: str
    zspec: np.ndarray
    estimators: list[Estimator]
    bins: P.Bins
    by: np.ndarray | None = None
    by_name: str | None = None
    group: np.ndarray | None = None
    group_name: str | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- option parsing


def parse_list(text: str | Sequence[str] | None) -> list[str]:
    """'a,b' or ['a', 'b,c'] -> ['a', 'b', 'c'] (empty items dropped)."""
    if text is None:
        return []
    items = [text] if isinstance(text, str) else list(text)
    return [s.strip() for item in items for s in str(item).split(",") if s.strip()]


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


# --------------------------------------------------------------------------- reading


def _missing(src: str, what: str, col: str, names: Sequence[str], hint: str) -> PzError:
    shown = ", ".join(names[:40]) + (", ..." if len(names) > 40 else "")
    return PzError(f"{src}: no {what} column '{col}' (columns: {shown}); {hint}")


def _find(names: Sequence[str], col: str) -> str | None:
    """Exact name, else a unique case-insensitive match."""
    if col in names:
        return col
    low = [n for n in names if n.lower() == col.lower()]
    return low[0] if len(low) == 1 else None


def _float_column(batch: Any, name: str, src: str, option: str) -> np.ndarray:
    from photoz_tools.tables import column_array

    arr = column_array(batch, name)
    if arr.ndim != 1 or arr.dtype.kind not in "fiub":
        raise PzError(
            f"{src}: column '{name}' ({option}) must hold one number per row, "
            f"got {arr.dtype} of shape {arr.shape[1:]}"
        )
    return arr.astype(np.float64)


def _pdf_array(
    batch: Any, name: str, packing: dict[str, Any] | None = None, src: str = ""
) -> np.ndarray:
    """The PDF column as (n, nbins); null cells (flagged predictions) become rows of NaN.

    A packed column (pz-predict --pdf uint8/uint8log; `packing`: its spec from the file's
    pz_pdf_packing metadata) is restored with photoz_tools.pdf.unpack_pdf from its codes and
    the spec's max column, so PIT and CRPS see a PDF summing to 1, not codes."""
    from photoz_tools.tables import column_array

    raw = _pdf_cells(batch, name)
    if packing is None:
        if raw.dtype.kind in "iu":
            raise PzError(
                f"{src}: column '{name}' holds integer codes but the file's metadata has no "
                f"'{P.PDF_PACKING_KEY}' entry for it; cannot restore the PDFs"
            )
        return raw
    pmax = column_array(batch, packing["max_column"]).astype(np.float64)
    return P.unpack_pdf(
        raw, pmax, packing["packing"], floor=float(packing.get("floor", P.LOG_FLOOR))
    )


def _pdf_cells(batch: Any, name: str) -> np.ndarray:
    import pyarrow as pa

    from photoz_tools.tables import column_array

    col = batch.column(batch.schema.get_field_index(name))
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not col.null_count:
        return column_array(batch, name)
    storage = col.storage if isinstance(col.type, pa.ExtensionType) else col
    if not pa.types.is_fixed_size_list(storage.type):
        return column_array(batch, name)
    k = storage.type.list_size
    # .values ignores the parent's offset and keeps the slots of null cells (flatten drops them)
    values = storage.values.slice(storage.offset * k, len(storage) * k)
    out = values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(storage), k)
    out[~storage.is_valid().to_numpy(zero_copy_only=False)] = np.nan
    return out


def _bins_from_metadata(meta: dict[str, str], src: str) -> P.Bins:
    from photoz_tools.tables import BIN_EDGES_KEY

    text = (meta or {}).get(BIN_EDGES_KEY)
    if not text:
        return P.Bins.default()
    try:
        return P.Bins.from_json(text)
    except ValueError as exc:
        raise PzError(f"{src}: bad bin edges in metadata '{BIN_EDGES_KEY}': {exc}") from None


def _ids_compatible(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if (a.dtype.kind in "iu") == (b.dtype.kind in "iu"):
        return a, b
    return a.astype(str), b.astype(str)


def collect(
    source: Any = "-",
    *,
    truth: str = "z",
    zphot: str | Sequence[str] = "zphot",
    truth_table: Any = None,
    id: str | None = None,
    by: str | None = None,
    group: str | None = None,
    dedupe: str = "error",
    drop_nan: bool = False,
    batch_rows: int | None = None,
    warn: Warn | None = None,
    progress: Callable[..., None] | None = None,
) -> ScoreData:
    """Stream the predictions (and join the truth) into the O(N) columns scoring needs.

    `progress(n_rows, total=None)` is called once with the table's row count, then per batch.
    """
    from photoz_tools.tables import column_array, find_id_column, open_table

    warn = warn or _default_warn
    if dedupe not in DEDUPE_CHOICES:
        raise PzUsageError(f"--dedupe {dedupe!r}: choose one of {', '.join(DEDUPE_CHOICES)}")
    names_req = parse_list(zphot) or ["zphot"]
    reader = open_table(source)
    with reader:
        src = reader.name
        names = list(reader.column_names)
        bins = _bins_from_metadata(reader.metadata, src)
        if progress:
            progress(0, total=reader.num_rows)

        # estimators and their PDFs (packed ones restored with the metadata's packing)
        try:
            packings = P.read_packing((reader.metadata or {}).get(P.PDF_PACKING_KEY))
        except ValueError as exc:
            raise PzError(f"{src}: bad metadata '{P.PDF_PACKING_KEY}': {exc}") from None
        estimators: list[Estimator] = []
        for raw in names_req:
            col = _find(names, raw)
            pdf_col = _find(names, "pdf") if raw == "zphot" else _find(names, f"{raw}_pdf")
            width_col = (
                _find(names, "width68") if raw == "zphot" else _find(names, f"{raw}_width68")
            )
            if col is None and pdf_col is None:
                raise _missing(src, "photo-z", raw, names, "name the estimators with --zphot")
            estimators.append(
                Estimator(col or raw, pdf_col, None if pdf_col else width_col, from_pdf=col is None)
            )

        for e in estimators:
            spec = packings.get(e.pdf_column or "")
            if spec and spec["max_column"] not in names:
                raise _missing(
                    src, "packed-PDF maximum", spec["max_column"], names, "rerun pz-predict"
                )
        # truth: a column here, or a truth table joined by id
        truth_col = None
        lookup = None
        pid = None
        extra: dict[str, np.ndarray] = {}
        if truth_table is None:
            truth_col = _find(names, truth)
            if truth_col is None:
                raise _missing(
                    src,
                    "truth",
                    truth,
                    names,
                    "name it with --truth, or join a catalogue with --truth-table",
                )
        else:
            pid = find_id_column(names, id)
            if pid is None:
                raise PzError(
                    f"{src}: no id column to join on (looked for "
                    f"{id or 'objID, specObjID, id'}); name it with --id"
                )
            lookup, tsrc, extra = _truth_lookup(
                truth_table, id, pid, truth, [c for c in (by, group) if c], names
            )
        if pid is None and dedupe != "all":
            pid = find_id_column(names, id)
            if id is not None and pid is None:
                raise _missing(src, "id", id, names, "check --id")

        def locate(col: str | None, option: str) -> str | None:
            if col is None:
                return None
            found = _find(names, col)
            if found is None and col not in extra and col not in ("zspec", truth):
                raise _missing(
                    src, f"{option}", col, names, f"name an existing column with {option}"
                )
            return found

        by_col = locate(by, "--by")
        group_col = locate(group, "--group")

        wanted: list[str] = []
        for c in [
            truth_col,
            pid,
            by_col,
            group_col,
            *[e.name for e in estimators if not e.from_pdf],
            *[e.pdf_column for e in estimators],
            *[e.width_column for e in estimators],
            *[packings[e.pdf_column]["max_column"] for e in estimators if e.pdf_column in packings],
        ]:
            if c and c not in wanted:
                wanted.append(c)

        parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("zspec", "id", "by", "group", "matched")
        }
        est_parts: list[dict[str, list[np.ndarray]]] = [
            {"zphot": [], "pit": [], "crps": [], "width68": []} for _ in estimators
        ]
        for batch in reader.iter_batches(batch_rows, columns=wanted):
            n = batch.num_rows
            if n == 0:
                continue
            ids = column_array(batch, pid) if pid else None
            if ids is not None:
                parts["id"].append(np.asarray(ids))
            if lookup is not None:
                zs, matched, rows = lookup(ids)
                parts["matched"].append(matched)
            else:
                zs = _float_column(batch, truth_col, src, "--truth")
                rows = None
            parts["zspec"].append(zs)
            for col, key in ((by_col, "by"), (group_col, "group")):
                name = by if key == "by" else group
                if name is None:
                    continue
                if col is not None:
                    v = column_array(batch, col)
                elif name in extra:
                    v = extra[name][np.maximum(rows, 0)]
                else:  # the truth itself ("zspec" or the --truth name)
                    v = zs
                parts[key].append(np.asarray(v))
            for est, ep in zip(estimators, est_parts, strict=True):
                if est.pdf_column:
                    pdf = _pdf_array(batch, est.pdf_column, packings.get(est.pdf_column), src)
                    if pdf.ndim != 2 or pdf.shape[1] != bins.n:
                        raise PzError(
                            f"{src}: column '{est.pdf_column}' has cells of shape "
                            f"{pdf.shape[1:]} but the bin edges define {bins.n} bins"
                        )
                    pit, crps, width = P.pit_crps_width(pdf, bins, zs)
                    ep["pit"].append(pit.astype(np.float32))
                    ep["crps"].append(crps.astype(np.float32))
                    ep["width68"].append(width.astype(np.float32))
                    zp = P.zphot(pdf, bins) if est.from_pdf else None
                elif est.width_column:
                    ep["width68"].append(
                        _float_column(batch, est.width_column, src, "width68").astype(np.float32)
                    )
                    zp = None
                else:
                    zp = None
                if zp is None:
                    zp = _float_column(batch, est.name, src, "--zphot")
                ep["zphot"].append(zp)
            if progress:
                progress(n)

    def cat(chunks: list[np.ndarray], dtype: Any = None) -> np.ndarray:
        if not chunks:
            return np.empty(0, dtype=dtype or np.float64)
        return np.concatenate(chunks)

    zspec = cat(parts["zspec"])
    n_rows = zspec.size
    if n_rows == 0:
        raise PzError(f"{src}: the table has no rows to score")
    for est, ep in zip(estimators, est_parts, strict=True):
        est.zphot = cat(ep["zphot"])
        if ep["pit"]:
            est.pit, est.crps = cat(ep["pit"]), cat(ep["crps"])
        if ep["width68"]:
            est.width68 = cat(ep["width68"])
    data = ScoreData(
        src,
        truth,
        zspec,
        estimators,
        bins,
        by=cat(parts["by"]) if by else None,
        by_name=by,
        group=cat(parts["group"]) if group else None,
        group_name=group,
    )
    if data.by is not None and data.by.dtype.kind not in "fiub":
        raise PzError(
            f"{src}: --by {by}: column holds {data.by.dtype} values; "
            "--by needs a numeric column (use --group for labels)"
        )

    keep = np.ones(n_rows, dtype=bool)
    # duplicate ids (the reference CSV repeats 139 specObjIDs)
    if pid is not None and dedupe != "all" and parts["id"]:
        ids = cat(parts["id"])
        first = _dedupe_keep(ids, dedupe, src, pid)
        if first is not None:
            keep &= first
            warn(
                f"{src}: {_n((~first).sum(), 'row')} with a repeated {pid} dropped "
                f"(--dedupe {dedupe})"
            )
    if lookup is not None:
        matched = cat(parts["matched"])
        unmatched = int((~matched & keep).sum())
        if unmatched == int(keep.sum()):
            raise PzError(f"{src}: no {pid} matches a row of {tsrc}; check --id")
        if unmatched:
            warn(
                f"{src}: {_n(unmatched, 'row')} {_has(unmatched)} no {pid} in {tsrc}; "
                "scored without them"
            )
        keep &= matched
    bad = keep & ~np.isfinite(zspec)
    if bad.any():
        if not drop_nan:
            raise PzError(
                f"{src}: {_n(bad.sum(), 'row')} {_has(bad.sum())} NaN/inf truth in "
                f"column '{truth}'; pass --drop-nan to drop them"
            )
        warn(f"{src}: {_n(bad.sum(), 'row')} with NaN/inf truth '{truth}' dropped (--drop-nan)")
        keep &= ~bad
    if not keep.all():
        _subset(data, keep)
    for est in data.estimators:
        null = int((~np.isfinite(est.zphot)).sum())
        if null:
            warn(
                f"{src}: {_n(null, 'row')} with null {est.name} (flagged predictions) "
                "excluded from its scores"
            )
    return data


def _n(count: Any, noun: str) -> str:
    count = int(count)
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _has(count: Any) -> str:
    return "has" if int(count) == 1 else "have"


def _subset(data: ScoreData, keep: np.ndarray) -> None:
    data.zspec = data.zspec[keep]
    if data.by is not None:
        data.by = data.by[keep]
    if data.group is not None:
        data.group = data.group[keep]
    for est in data.estimators:
        est.zphot = est.zphot[keep]
        for attr in ("pit", "crps", "width68"):
            v = getattr(est, attr)
            if v is not None:
                setattr(est, attr, v[keep])


def _dedupe_keep(ids: np.ndarray, how: str, src: str, col: str) -> np.ndarray | None:
    """Mask keeping one row per id (None when ids are unique); error for how='error'."""
    order = np.argsort(ids, kind="stable")
    s = ids[order]
    same = s[1:] == s[:-1]
    if not same.any():
        return None
    ndup = int(np.unique(s[1:][same]).size)
    if how == "error":
        example = s[1:][same][0]
        raise PzError(
            f"{src}: {ndup} values of {col} occur more than once (e.g. {example}); "
            "pass --dedupe first (or last) to keep one row of each, or --dedupe all "
            "to score every row"
        )
    keep = np.ones(ids.size, dtype=bool)
    if how == "first":  # drop every sorted element equal to its predecessor (stable: later rows)
        keep[order[1:][same]] = False
    else:  # last: drop every element equal to its successor
        keep[order[:-1][same]] = False
    return keep


def _truth_lookup(
    truth_table: Any,
    id: str | None,
    pred_id: str,
    truth: str,
    extras: list[str],
    pred_names: list[str],
):
    """Read the truth table (id, truth and --by/--group columns the predictions lack)."""
    from photoz_tools.tables import column_array, find_id_column, open_table

    with open_table(truth_table) as tr:
        tsrc = tr.name
        tnames = list(tr.column_names)
        tid = find_id_column(tnames, id or pred_id)
        if tid is None:
            raise PzError(
                f"{tsrc}: no id column '{id or pred_id}' to join on "
                f"(columns: {', '.join(tnames[:40])}); name it with --id"
            )
        tcol = _find(tnames, truth)
        if tcol is None:
            raise _missing(tsrc, "truth", truth, tnames, "name it with --truth")
        more = [c for c in extras if _find(pred_names, c) is None and _find(tnames, c)]
        cols = list(dict.fromkeys([tid, tcol, *[_find(tnames, c) for c in more]]))
        table = tr.read(cols)
    tids = np.asarray(column_array(table, tid))
    tz = np.asarray(column_array(table, tcol), dtype=np.float64)
    extra = {c: np.asarray(column_array(table, _find(tnames, c))) for c in more}
    order = np.argsort(tids, kind="stable")
    sorted_ids = tids[order]
    dup = sorted_ids[1:] == sorted_ids[:-1]
    if dup.any():
        raise PzError(
            f"{tsrc}: {int(np.unique(sorted_ids[1:][dup]).size)} values of {tid} "
            f"occur more than once (e.g. {sorted_ids[1:][dup][0]}); a truth table "
            "needs unique ids"
        )

    def lookup(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = _ids_compatible(np.asarray(ids), sorted_ids)
        pos = np.searchsorted(b, a)
        posc = np.minimum(pos, b.size - 1)
        matched = (pos < b.size) & (b[posc] == a)
        rows = np.where(matched, order[posc], -1)
        zs = np.where(matched, tz[np.maximum(rows, 0)], np.nan)
        return zs, matched, rows

    return lookup, tsrc, extra


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


def metrics_rows(
    data: ScoreData,
    *,
    eta_threshold: float = 0.05,
    bins: int | Sequence[float] | None = None,
    drop_widest: Sequence[float] = (),
    warn: Warn | None = None,
) -> list[dict[str, Any]]:
    """One dict per (estimator, drop-widest trial, --by bin, group) plus mean/std over groups."""
    warn = warn or _default_warn
    edges = None
    if data.by is not None:
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
                f"{_n(outside, 'row')} with {data.by_name} outside the --bins edges "
                f"[{edges[0]:g}, {edges[-1]:g}] left out of the binned rows"
            )
    if data.group is not None:
        glabels, gidx = _labels(data.group)
    levels: list[float | None] = (
        [0.0, *dict.fromkeys(d for d in drop_widest if d)] if drop_widest else [None]
    )
    rows: list[dict[str, Any]] = []
    for est in data.estimators:
        valid = np.isfinite(est.zphot)
        for level in levels:
            sel = valid.copy()
            if level:
                if est.width68 is None:
                    warn(f"--drop-widest: {est.name} has no PDF or width68; its trials skipped")
                    break
                idx = np.flatnonzero(sel)
                n_keep = int(round(idx.size * (1 - level / 100.0)))
                # NaN widths sort last, so they are dropped first
                order = np.argsort(est.width68[idx], kind="stable")
                sel = np.zeros_like(sel)
                sel[idx[order[:n_keep]]] = True
            head: dict[str, Any] = {"estimator": est.name}
            if level is not None:
                head["drop_widest"] = level
            cells = [(head, sel)]
            if edges is not None:
                cells = [
                    (
                        {
                            **head,
                            "by": data.by_name,
                            "by_lo": float(edges[b]),
                            "by_hi": float(edges[b + 1]),
                        },
                        sel & (bin_of == b),
                    )
                    for b in range(edges.size - 1)
                ]
            for chead, mask in cells:
                if data.group is None:
                    rows.append({**chead, **_stats(data, est, mask, eta_threshold)})
                    continue
                per = []
                for g, label in enumerate(glabels):
                    r = {
                        **chead,
                        "group": label,
                        **_stats(data, est, mask & (gidx == g), eta_threshold),
                    }
                    per.append(r)
                rows.extend(per)
                mean, std = M.group_rows([r for r in per if r["N"] > 0])
                rows.append({**chead, "group": "mean", **mean})
                rows.append({**chead, "group": "std", **std})
    return rows


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
        elif k == "N":
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
    meta = {
        "pz_score_source": str(data.source),
        "pz_score_truth": truth,
        "pz_score_eta_threshold": repr(eta_threshold),
    }
    return rows_to_table(rows, meta)
