"""Prediction for one pandas DataFrame: the function to give dask or LSDB per partition.

``lsdb.open_catalog(path).map_partitions(predict_frame, bundle, meta=frame_meta(...))`` runs the
ensemble on every HEALPix partition of a HATS catalogue; LSDB's own ``write_catalog`` then writes
the result as a HATS catalogue. The bundle is loaded and the ensemble built once per process
(photoz_tools.model.predict_partitions keeps it), not once per partition. The semantics follow
``predict.predict``: rows with NaN/inf pixels or a missing E(B-V) get null summaries, a null PDF
and pz_flags = FLAG_BAD_INPUT.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from photoz_tools import pdf as pdfcore
from photoz_tools.errors import PzError
from photoz_tools.model.data import IMAGE_SHAPE, IMAGE_SIZE
from photoz_tools.model.predict import bad_rows, overflowed

# (bundle path, manifest mtime, batch size, precision) -> PredictWork: hashing the bundle's files
# once per process, not once per partition (PredictWork.ensemble caches the loaded ensemble)
_WORK: dict[tuple, Any] = {}


def _work(model: str | Path, batch_size: int, precision: str) -> Any:
    from photoz_tools.model import bundle as bundlemod
    from photoz_tools.model.predict_partitions import PredictWork

    path = str(Path(model).resolve())
    try:
        stamp = os.stat(Path(path) / "manifest.json").st_mtime_ns
    except OSError:
        stamp = None  # load_bundle below says what is wrong
    key = (path, stamp, int(batch_size), precision)
    if key not in _WORK:
        b = bundlemod.load_bundle(path, load_members=False)
        _WORK.clear()
        _WORK[key] = PredictWork(
            bundle_path=path,
            bundle_hash=b.hash,
            batch_size=int(batch_size),
            pdf_dtype="float32",
            keep=None,
            tta=False,
            precision=precision,
            image_col="image",
            ebv_col="ebv",
            command_line=None,
        )
    return _WORK[key]


def bundle_bins(model: str | Path) -> pdfcore.Bins:
    """The redshift bins of a bundle, from its manifest alone (for frame_meta, without loading
    the members)."""
    from photoz_tools.model import bundle as bundlemod

    return bundlemod.load_bundle(model, load_members=False).bins


def _images(col: pd.Series, name: str) -> np.ndarray:
    """The image column as float32 (n, 64, 64, 5); null cells become NaN (so: bad rows).

    Accepts (64,64,5) arrays, flat 20480-value arrays or lists (what pandas gives back from a
    Parquet list column), and Arrow-backed list columns (what LSDB/nested-pandas give back)."""
    n = len(col)
    if n == 0:
        return np.zeros((0, *IMAGE_SHAPE), np.float32)
    if isinstance(col.dtype, pd.ArrowDtype):
        import pyarrow as pa

        from photoz_tools import tables

        arr = pa.chunked_array(col.array._pa_array).combine_chunks()
        null = arr.is_null().to_numpy(zero_copy_only=False)
        if null.any():  # _equal_lists refuses nulls: fill them with NaN images first
            cells = [None if v is None else np.asarray(v) for v in arr.to_pylist()]
            return _images(pd.Series(cells, dtype=object), name)
        try:
            values = tables.column_array(pa.table({name: arr}), name)
        except PzError as exc:
            msg = str(exc)
            raise PzError(msg if f"'{name}'" in msg else f"column '{name}': {msg}") from None
        values = np.asarray(values, dtype=np.float32)
    else:
        cells = []
        shape = None
        for v in col:
            if v is None or (np.isscalar(v) and pd.isna(v)):
                cells.append(None)
                continue
            a = np.asarray(v, dtype=np.float32)
            if a.shape not in (IMAGE_SHAPE, (IMAGE_SIZE,)):
                raise PzError(
                    f"column '{name}': an image has shape {a.shape}; expected "
                    f"{IMAGE_SHAPE} or {IMAGE_SIZE} values (64x64 ugriz)"
                )
            shape = a.shape
            cells.append(a.reshape(IMAGE_SHAPE))
        if shape is None:
            return np.full((n, *IMAGE_SHAPE), np.nan, np.float32)
        nan = np.full(IMAGE_SHAPE, np.nan, np.float32)
        values = np.stack([nan if c is None else c for c in cells])
    if values.shape[1:] not in (IMAGE_SHAPE, (IMAGE_SIZE,)):
        raise PzError(
            f"column '{name}': images of shape {values.shape[1:]}; expected "
            f"{IMAGE_SHAPE} or {IMAGE_SIZE} values (64x64 ugriz)"
        )
    return np.ascontiguousarray(values.reshape(n, *IMAGE_SHAPE))


def _assemble(
    df: pd.DataFrame,
    image_col: str,
    p: np.ndarray,
    summ: dict[str, np.ndarray],
    bad: np.ndarray,
    n_bins: int,
    pdf: bool,
) -> pd.DataFrame:
    """df without the image column plus the prediction columns (shared by predict_frame and
    frame_meta, so the meta given to dask is exactly what the partitions return)."""
    out = df.drop(columns=[image_col])
    out = out.drop(columns=[c for c in (*pdfcore.SUMMARY_COLUMNS, "pdf") if c in out.columns])
    cols: dict[str, Any] = {}
    for c in pdfcore.SUMMARY_COLUMNS:
        if c == "pz_flags":
            v = np.where(bad, np.uint16(pdfcore.FLAG_BAD_INPUT), summ[c]).astype(np.uint16)
        else:
            v = np.where(bad, np.nan, summ[c]).astype(np.float32)
        cols[c] = pd.Series(v, index=df.index)
    if pdf:
        import pyarrow as pa

        values = pa.array(np.ascontiguousarray(p, dtype=np.float32).reshape(-1))
        mask = pa.array(bad) if bad.any() else None
        arr = pa.FixedSizeListArray.from_arrays(values, n_bins, mask=mask)
        cols["pdf"] = pd.Series(pd.arrays.ArrowExtensionArray(arr), index=df.index)
    for k, v in cols.items():
        out[k] = v
    return out


def frame_meta(df_meta: pd.DataFrame, n_bins: int, *, image_col: str = "image", pdf: bool = True):
    """The empty frame predict_frame returns for input frame `df_meta` (e.g. a catalogue's
    ``.meta`` or ``df.iloc[:0]``): what dask/LSDB need as ``meta`` without running the
    network. `n_bins`: the bundle's bins (``bundle_bins(path).n``)."""
    empty = df_meta.iloc[:0]
    if image_col not in empty.columns:
        raise PzError(f"no {image_col} column; make cutouts with pz-cutout")
    p = np.zeros((0, int(n_bins)), np.float32)
    summ = {c: np.zeros(0, np.float32) for c in pdfcore.SUMMARY_COLUMNS}
    return _assemble(empty, image_col, p, summ, np.zeros(0, bool), int(n_bins), pdf)


def predict_frame(
    df: pd.DataFrame,
    model: str | Path,
    *,
    image_col: str = "image",
    ebv_col: str = "ebv",
    pdf: bool = True,
    batch_size: int = 256,
    precision: str = "float32",
) -> pd.DataFrame:
    """Predictions for one DataFrame partition: `df` without its image column, plus the
    summary columns (pdf.SUMMARY_COLUMNS) and, if `pdf`, a ``pdf`` column (a float32 fixed-size
    list of the bundle's bins per row, Arrow-backed so it writes to Parquet as is).

    `model` is a bundle path; the bundle is loaded and the ensemble built once per process.
    Rows with NaN/inf pixels or a missing E(B-V) get null predictions and
    pz_flags = FLAG_BAD_INPUT, as in pz-predict."""
    from photoz_tools.model import precision as precmod

    precmod.check(precision)
    for c in (image_col, ebv_col):
        if c not in df.columns:
            raise PzError(
                f"no {c} column (columns: {', '.join(map(str, df.columns))})"
                + ("; make cutouts with pz-cutout" if c == image_col else "")
            )
    images = _images(df[image_col], image_col)
    ebv = pd.to_numeric(df[ebv_col], errors="coerce").to_numpy(dtype=np.float32, na_value=np.nan)
    bad = bad_rows(images, ebv)
    if bad.any():
        images = np.where(bad[:, None, None, None], np.float32(0), images)
        ebv = np.where(bad, np.float32(0), ebv)
    b, ens = _work(model, batch_size, precision).ensemble()
    n_bins = b.bins.n
    p = ens(images, ebv) if len(images) else np.zeros((0, n_bins), np.float32)
    bad, p = overflowed(p, bad)
    summ = pdfcore.summarize(p, b.bins)
    return _assemble(df, image_col, p, summ, bad, n_bins, pdf)
