"""pz-score's reading half: stream a predictions table (and join a truth table) into ScoreData.

The PDFs are reduced batch by batch to PIT, CRPS and width68; only O(N) float columns are kept.
Every row left out is counted: duplicate ids, ids without truth, NaN or impossible truth (a
refusal unless --drop-nan), null photo-z and unusable PDFs (per estimator, on stderr and in the
metrics table's ``N_excluded``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from photoz_tools import metrics as M
from photoz_tools import pdf as P
from photoz_tools.errors import PzError, PzUsageError
from photoz_tools.scoring_data import Estimator, ScoreData, Warn, count, default_warn, has

__all__ = ["collect", "parse_list", "DEDUPE_CHOICES"]

DEDUPE_CHOICES = ("error", "first", "last", "all")
TRUTH_RANGE = f"[{M.Z_TRUTH_MIN:g}, {M.Z_TRUTH_MAX:g}]"


def parse_list(text: str | Sequence[str] | None) -> list[str]:
    """'a,b' or ['a', 'b,c'] -> ['a', 'b', 'c'] (empty items dropped)."""
    if text is None:
        return []
    items = [text] if isinstance(text, str) else list(text)
    return [s.strip() for item in items for s in str(item).split(",") if s.strip()]


# --------------------------------------------------------------------------- column helpers


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


def _truth_values(values: np.ndarray, name: str, src: str) -> np.ndarray:
    """The truth as float64; integers or booleans are an id, a flag or a count, not a redshift."""
    if values.ndim != 1:
        raise PzError(
            f"{src}: column '{name}' (--truth) must hold one redshift per row, "
            f"got cells of shape {values.shape[1:]}"
        )
    if values.dtype.kind not in "fiub":
        kind = "text" if values.dtype.kind in "USO" else str(values.dtype)
        raise PzError(
            f"{src}: column '{name}' (--truth) holds {kind} values, not redshifts; "
            "name the spectroscopic-redshift column with --truth (or convert it to numbers)"
        )
    if values.dtype.kind in "iub":
        raise PzError(
            f"{src}: column '{name}' (--truth) holds {values.dtype} values, not redshifts; "
            "name the spectroscopic-redshift column with --truth"
        )
    return values.astype(np.float64)


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


# --------------------------------------------------------------------------- the plan


@dataclass
class _Plan:
    """What to read from the predictions table, decided from its names before any row."""

    src: str
    names: list[str]
    bins: P.Bins
    packings: dict[str, dict[str, Any]]
    estimators: list[Estimator]
    truth: str
    by: str | None
    group: str | None
    truth_col: str | None = None  # the truth in this table, or
    lookup: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None  # joined
    tsrc: str | None = None  # the truth table's name
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # --by/--group from it
    pid: str | None = None
    by_col: str | None = None
    group_col: str | None = None

    def columns(self) -> list[str]:
        """The columns a batch needs, each once."""
        wanted: list[str] = []
        for c in [
            self.truth_col,
            self.pid,
            self.by_col,
            self.group_col,
            *[e.name for e in self.estimators if not e.from_pdf],
            *[e.pdf_column for e in self.estimators],
            *[e.width_column for e in self.estimators],
            *[
                self.packings[e.pdf_column]["max_column"]
                for e in self.estimators
                if e.pdf_column in self.packings
            ],
        ]:
            if c and c not in wanted:
                wanted.append(c)
        return wanted


def _estimators(
    src: str, names: list[str], requested: list[str], packings: dict[str, Any]
) -> list[Estimator]:
    """Each --zphot name with its PDF (``pdf`` / ``X_pdf``) or width68 column."""
    estimators: list[Estimator] = []
    for raw in requested:
        col = _find(names, raw)
        pdf_col = _find(names, "pdf") if raw == "zphot" else _find(names, f"{raw}_pdf")
        width_col = _find(names, "width68") if raw == "zphot" else _find(names, f"{raw}_width68")
        if col is None and pdf_col is None:
            raise _missing(src, "photo-z", raw, names, "name the estimators with --zphot")
        estimators.append(
            Estimator(col or raw, pdf_col, None if pdf_col else width_col, from_pdf=col is None)
        )
    for e in estimators:
        spec = packings.get(e.pdf_column or "")
        if spec and spec["max_column"] not in names:
            raise _missing(src, "packed-PDF maximum", spec["max_column"], names, "rerun pz-predict")
    return estimators


def _plan(
    reader: Any,
    *,
    truth: str,
    zphot: str | Sequence[str],
    truth_table: Any,
    id: str | None,
    by: str | None,
    group: str | None,
    dedupe: str,
) -> _Plan:
    """Find the estimators, the truth (here or in a truth table), the id, --by and --group."""
    from photoz_tools.tables import find_id_column

    src = reader.name
    names = list(reader.column_names)
    try:
        packings = P.read_packing((reader.metadata or {}).get(P.PDF_PACKING_KEY))
    except ValueError as exc:
        raise PzError(f"{src}: bad metadata '{P.PDF_PACKING_KEY}': {exc}") from None
    plan = _Plan(
        src,
        names,
        _bins_from_metadata(reader.metadata, src),
        packings,
        _estimators(src, names, parse_list(zphot) or ["zphot"], packings),
        truth,
        by,
        group,
    )
    if truth_table is None:
        plan.truth_col = _find(names, truth)
        if plan.truth_col is None:
            raise _missing(
                src,
                "truth",
                truth,
                names,
                "name it with --truth, or join a catalogue with --truth-table",
            )
    else:
        plan.pid = find_id_column(names, id)
        if plan.pid is None:
            raise PzError(
                f"{src}: no id column to join on (looked for "
                f"{id or 'objID, specObjID, id'}); name it with --id"
            )
        plan.lookup, plan.tsrc, plan.extra = _truth_lookup(
            truth_table, id, plan.pid, truth, [c for c in (by, group) if c], names
        )
    if plan.pid is None and dedupe != "all":
        plan.pid = find_id_column(names, id)
        if id is not None and plan.pid is None:
            raise _missing(src, "id", id, names, "check --id")

    def locate(col: str | None, option: str) -> str | None:
        if col is None:
            return None
        found = _find(names, col)
        if found is None and col not in plan.extra and col not in ("zspec", truth):
            raise _missing(src, option, col, names, f"name an existing column with {option}")
        return found

    plan.by_col = locate(by, "--by")
    plan.group_col = locate(group, "--group")
    return plan


# --------------------------------------------------------------------------- the batches


@dataclass
class _Parts:
    """Per-batch chunks of every O(N) column, concatenated once at the end."""

    zspec: list[np.ndarray] = field(default_factory=list)
    id: list[np.ndarray] = field(default_factory=list)
    by: list[np.ndarray] = field(default_factory=list)
    group: list[np.ndarray] = field(default_factory=list)
    matched: list[np.ndarray] = field(default_factory=list)
    est: list[dict[str, list[np.ndarray]]] = field(default_factory=list)


def _cat(chunks: list[np.ndarray], dtype: Any = None) -> np.ndarray:
    if not chunks:
        return np.empty(0, dtype=dtype or np.float64)
    return np.concatenate(chunks)


def _estimator_batch(
    batch: Any, plan: _Plan, est: Estimator, ep: dict[str, list[np.ndarray]], zs: np.ndarray
) -> None:
    """One batch of one estimator: zphot, and PIT, CRPS, width68 (or width68 alone)."""
    src, zp = plan.src, None
    if est.pdf_column:
        pdf = _pdf_array(batch, est.pdf_column, plan.packings.get(est.pdf_column), src)
        if pdf.ndim != 2 or pdf.shape[1] != plan.bins.n:
            raise PzError(
                f"{src}: column '{est.pdf_column}' has cells of shape "
                f"{pdf.shape[1:]} but the bin edges define {plan.bins.n} bins"
            )
        good = P.usable(pdf)
        # a row with NaN truth is dropped later (or refused); 0 keeps the arithmetic quiet
        zs_safe = np.where(np.isfinite(zs), zs, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            pit, crps, width = P.pit_crps_width(pdf, plan.bins, zs_safe)
            if est.from_pdf:
                zp = np.asarray(P.zphot(pdf, plan.bins), dtype=np.float64)
        bad = ~good | ~np.isfinite(zs)
        for arr in (pit, crps):
            arr[bad] = np.nan
        width[~good] = np.nan
        ep["pit"].append(pit.astype(np.float32))
        ep["crps"].append(crps.astype(np.float32))
        ep["width68"].append(width.astype(np.float32))
        ep["pdf_bad"].append(~good)
        if zp is not None:
            zp[~good] = np.nan
    elif est.width_column:
        ep["width68"].append(
            _float_column(batch, est.width_column, src, "width68").astype(np.float32)
        )
    if zp is None:
        zp = _float_column(batch, est.name, src, "--zphot")
    ep["zphot"].append(zp)


def _read(
    reader: Any, plan: _Plan, batch_rows: int | None, progress: Callable[..., None] | None
) -> _Parts:
    """Stream the batches, keeping only the O(N) columns."""
    from photoz_tools.tables import column_array

    parts = _Parts(
        est=[
            {"zphot": [], "pit": [], "crps": [], "width68": [], "pdf_bad": []}
            for _ in plan.estimators
        ]
    )
    for batch in reader.iter_batches(batch_rows, columns=plan.columns()):
        n = batch.num_rows
        if n == 0:
            continue
        ids = column_array(batch, plan.pid) if plan.pid else None
        if ids is not None:
            parts.id.append(np.asarray(ids))
        rows = None
        if plan.lookup is not None:
            zs, matched, rows = plan.lookup(ids)
            parts.matched.append(matched)
        else:
            zs = _truth_values(column_array(batch, plan.truth_col), plan.truth_col, plan.src)
        parts.zspec.append(zs)
        for col, name, chunks in (
            (plan.by_col, plan.by, parts.by),
            (plan.group_col, plan.group, parts.group),
        ):
            if name is None:
                continue
            if col is not None:
                v = column_array(batch, col)
            elif name in plan.extra:
                v = plan.extra[name][np.maximum(rows, 0)]
            else:  # the truth itself ("zspec" or the --truth name)
                v = zs
            chunks.append(np.asarray(v))
        for est, ep in zip(plan.estimators, parts.est, strict=True):
            _estimator_batch(batch, plan, est, ep, zs)
        if progress:
            progress(n)
    return parts


def _assemble(plan: _Plan, parts: _Parts) -> ScoreData:
    """Concatenate the chunks into ScoreData (no rows dropped yet)."""
    zspec = _cat(parts.zspec)
    empty = zspec.size == 0  # a zero-row table: one row of N = 0 per cell, all columns
    for est, ep in zip(plan.estimators, parts.est, strict=True):
        est.zphot = _cat(ep["zphot"])
        if ep["pit"] or empty and est.pdf_column:
            est.pit, est.crps = _cat(ep["pit"]), _cat(ep["crps"])
            est.pdf_bad = _cat(ep["pdf_bad"], bool)
        if ep["width68"] or empty and (est.pdf_column or est.width_column):
            est.width68 = _cat(ep["width68"])
    data = ScoreData(
        plan.src,
        plan.truth,
        zspec,
        plan.estimators,
        plan.bins,
        by=_cat(parts.by) if plan.by else None,
        by_name=plan.by,
        group=_cat(parts.group) if plan.group else None,
        group_name=plan.group,
    )
    if data.by is not None and data.by.dtype.kind not in "fiub":
        raise PzError(
            f"{plan.src}: --by {plan.by}: column holds {data.by.dtype} values; "
            "--by needs a numeric column (use --group for labels)"
        )
    return data


# --------------------------------------------------------------------------- rows left out


def _check_truth(
    data: ScoreData, keep: np.ndarray, drop_nan: bool, warn: Warn, where: str
) -> np.ndarray:
    """Rows whose truth cannot be scored: refused, or (--drop-nan) dropped with a count.

    A column most of whose values are not redshifts is refused outright: it is the wrong
    column (an id, a magnitude, ra), and --drop-nan would silently score the few left.
    """
    zspec, truth = data.zspec, data.truth
    nonfinite = keep & ~np.isfinite(zspec)
    odd = keep & M.impossible_redshift(zspec)
    n_odd, n_finite = int(odd.sum()), int((keep & np.isfinite(zspec)).sum())
    if n_odd and 2 * n_odd > n_finite:
        r = int(np.argmax(odd))
        raise PzError(
            f"{where}: column '{truth}' (--truth) does not hold redshifts: {n_odd} of "
            f"{n_finite} values lie outside {TRUTH_RANGE} (row {r}: {zspec[r]:g}); "
            "name the spectroscopic-redshift column with --truth"
        )
    for bad, what, key in (
        (nonfinite, "NaN/inf truth", "NaN/inf truth"),
        (odd, f"truth outside {TRUTH_RANGE}", "impossible truth"),
    ):
        nbad = int(bad.sum())
        if not nbad:
            continue
        r = int(np.argmax(bad))
        first = f"row {r}" if np.isnan(zspec[r]) else f"row {r}, {zspec[r]:g}"
        if not drop_nan:
            raise PzError(
                f"{where}: {count(nbad, 'row')} {has(nbad)} {what} in column '{truth}' "
                f"(first: {first}); pass --drop-nan to drop them"
            )
        warn(f"{where}: {count(nbad, 'row')} with {what} '{truth}' dropped (--drop-nan)")
        data.dropped[key] = nbad
        keep &= ~bad
    return keep


def _drop_rows(
    data: ScoreData, plan: _Plan, parts: _Parts, dedupe: str, drop_nan: bool, warn: Warn
) -> None:
    """Leave out duplicate ids, ids without truth and unusable truth, each with a count."""
    src, pid = plan.src, plan.pid
    keep = np.ones(data.zspec.size, dtype=bool)
    # duplicate ids (the reference CSV repeats 139 specObjIDs)
    if pid is not None and dedupe != "all" and parts.id:
        first = _dedupe_keep(_cat(parts.id), dedupe, src, pid)
        if first is not None:
            keep &= first
            data.dropped["repeated id"] = int((~first).sum())
            warn(
                f"{src}: {count((~first).sum(), 'row')} with a repeated {pid} dropped "
                f"(--dedupe {dedupe})"
            )
    where = src
    if plan.lookup is not None:
        matched = _cat(parts.matched, bool)
        unmatched = int((~matched & keep).sum())
        if keep.size and unmatched == int(keep.sum()):
            raise PzError(f"{src}: no {pid} matches a row of {plan.tsrc}; check --id")
        if unmatched:
            data.dropped["no truth"] = unmatched
            warn(
                f"{src}: {count(unmatched, 'row')} {has(unmatched)} no {pid} in {plan.tsrc}; "
                "scored without them"
            )
        keep &= matched
        where = f"{plan.tsrc} (joined to {src})"
    keep = _check_truth(data, keep, drop_nan, warn, where)
    if not keep.size:
        warn(f"{src}: the table has no rows: every metric is NaN with N = 0")
    elif not keep.any():
        why = ", ".join(f"{n} {reason}" for reason, n in data.dropped.items())
        raise PzError(f"{src}: no rows left to score ({why})")
    if not keep.all():
        data.subset(keep)


def _say_excluded(data: ScoreData, warn: Warn) -> None:
    """Per estimator: rows with a null photo-z, then rows whose PDF is unusable.

    An estimator none of whose rows can be scored is a failure, not a row of NaN with exit 0.
    """
    src = data.source
    for est in data.estimators:
        if data.zspec.size and not est.valid.any():
            raise PzError(
                f"{src}: no row of {est.name} can be scored: all {data.zspec.size} have a "
                f"null {est.name} or an unusable PDF (NaN, inf or negative bins, or a zero "
                "sum); check the predictions (pz-predict's pz_flags say why)"
            )
        null = ~np.isfinite(est.zphot)
        if est.pdf_bad is not None and est.from_pdf:
            null &= ~est.pdf_bad  # zphot of an unusable PDF is said below, once
        if null.any():
            warn(
                f"{src}: {count(null.sum(), 'row')} with null {est.name} (flagged predictions) "
                "excluded from its scores"
            )
        if est.pdf_bad is not None:
            bad = est.pdf_bad & (np.isfinite(est.zphot) | est.from_pdf)
            if bad.any():
                r = int(np.argmax(bad))
                warn(
                    f"{src}: {count(bad.sum(), 'row')} whose '{est.pdf_column}' is unusable "
                    f"(NaN, inf or negative bins, or a zero sum; first: row {r}) excluded "
                    f"from {est.name}'s scores"
                )


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
) -> tuple[Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]], str, dict[str, np.ndarray]]:
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
    tz = _truth_values(np.asarray(column_array(table, tcol)), tcol, tsrc)
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


# --------------------------------------------------------------------------- collect


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
    Rows left out of the whole table are counted in ``ScoreData.dropped`` and said with `warn`.
    """
    from photoz_tools.tables import open_table

    warn = warn or default_warn
    if dedupe not in DEDUPE_CHOICES:
        raise PzUsageError(f"--dedupe {dedupe!r}: choose one of {', '.join(DEDUPE_CHOICES)}")
    with open_table(source) as reader:
        plan = _plan(
            reader,
            truth=truth,
            zphot=zphot,
            truth_table=truth_table,
            id=id,
            by=by,
            group=group,
            dedupe=dedupe,
        )
        if progress:
            progress(0, total=reader.num_rows)
        parts = _read(reader, plan, batch_rows, progress)
    data = _assemble(plan, parts)
    _drop_rows(data, plan, parts, dedupe, drop_nan, warn)
    _say_excluded(data, warn)
    return data
