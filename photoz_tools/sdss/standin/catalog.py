"""The stand-in's data: the catalogue and Field table as numpy columns, seen through SkyServer's
tables (SpecObjAll, PhotoObjAll, Photoz, galSpecInfo, Field, ...) as views.

Catalogue columns may be given in SkyServer names or in pz-query's output names; what is missing
gets a value that passes the MGS cuts (class GALAXY, survey sdss, targetType SCIENCE, zWarning 0,
clean 1, insideMask 0, primtarget 64, rerun 301) or null (errors, PSF FWHM, sky).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from photoz_tools.sdss.queries import EXTINCTION_COEFFS, FRAMES_COLUMNS

BANDS = "ugriz"


_VIEW = {  # SkyServer table -> the view it is on the catalogue
    "specobjall": "spec",
    "specobj": "spec",
    "specphotoall": "spec",
    "specphoto": "spec",
    "photoobjall": "photo",
    "photoobj": "photo",
    "photoprimary": "photo",
    "galaxy": "photo",
    "photoz": "photoz",
    "galspecinfo": "galspec",
    "galspecline": "galspec",
    "field": "field",
    "frame": "field",
}


def _lower_map(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k.lower(): v for k, v in columns.items()}


def _as_columns(data: Any) -> dict[str, np.ndarray]:
    """A table (pyarrow, astropy, dict of arrays, FITS/Parquet/CSV path) as numpy columns."""
    if data is None:
        return {}
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        if path.suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            data = pq.read_table(path)
        else:
            from astropy.table import Table

            data = Table.read(path)
    if hasattr(data, "column_names") and hasattr(data, "schema"):  # pyarrow
        out = {}
        for name in data.column_names:
            col = data.column(name)
            try:
                arr = col.to_numpy(zero_copy_only=False)
            except Exception:  # nested types (images): not servable as SQL columns
                continue
            if arr.ndim != 1:
                continue
            if arr.dtype == object:
                arr = np.array([("" if v is None else str(v)) for v in arr], dtype=object)
            out[name] = arr
        return out
    if hasattr(data, "colnames"):  # astropy
        out = {}
        for name in data.colnames:
            arr = data[name]
            if getattr(arr, "ndim", 1) != 1:
                continue
            if hasattr(arr, "filled"):
                arr = arr.filled(np.nan) if arr.dtype.kind == "f" else arr.filled()
            arr = np.asarray(arr)
            if arr.dtype.kind in "US":
                arr = arr.astype(str).astype(object)
            out[name] = arr
        return out
    return {k: np.asarray(v) for k, v in dict(data).items()}


class Dataset:
    """Columns of the stand-in's catalogue and Field table, with SkyServer's names as views."""

    def __init__(self, catalog: Any = None, fields: Any = None) -> None:
        self.catalog = _as_columns(catalog)
        if not self.catalog:  # no catalogue: SkyServer's tables, empty
            self.catalog = {
                c: np.array([], dtype=np.int64 if c.endswith("ID") else float)
                for c in ("specObjID", "objID", "ra", "dec", "z")
            }
        self.cat = _lower_map(self.catalog)
        self.n = len(next(iter(self.cat.values())))
        self.fields = _as_columns(fields)
        if not self.fields:  # no frames: an empty Field table
            self.fields = {
                c: np.array([], dtype=float if "_" in c else np.int64) for c in FRAMES_COLUMNS
            }
        self.fld = _lower_map(self.fields)
        self.nf = len(next(iter(self.fld.values()))) if self.fld else 0
        self._derived: dict[tuple[str, str], np.ndarray | None] = {}

    # the catalogue as each SkyServer table sees it
    def _get(self, *names: str) -> np.ndarray | None:
        for nm in names:
            if nm in self.cat:
                return self.cat[nm]
        return None

    def _full(self, value: Any) -> np.ndarray:
        if isinstance(value, str):
            return np.full(self.n, value, dtype=object)
        return np.full(self.n, value)

    def _ebv(self) -> np.ndarray | None:
        ebv = self._get("ebv", "e_bv_sfd")
        if ebv is None and "extinction_r" in self.cat:
            ebv = self.cat["extinction_r"] / EXTINCTION_COEFFS["r"]
        return ebv

    def _view_column(self, view: str, col: str) -> np.ndarray | None:
        g = self._get
        if view == "spec":
            m = {
                "specobjid": lambda: g("specobjid"),
                "bestobjid": lambda: g("bestobjid", "objid"),
                "z": lambda: g("z", "redshift"),
                "zerr": lambda: g("zerr"),
                "zwarning": lambda: g("zwarning") if g("zwarning") is not None else self._full(0),
                "class": lambda: g("class") if g("class") is not None else self._full("GALAXY"),
                "survey": lambda: g("survey") if g("survey") is not None else self._full("sdss"),
                "targettype": lambda: (
                    g("targettype") if g("targettype") is not None else self._full("SCIENCE")
                ),
            }
        elif view == "photo":
            m = {
                "objid": lambda: g("objid", "bestobjid"),
                "clean": lambda: g("clean") if g("clean") is not None else self._full(1),
                "insidemask": lambda: (
                    g("insidemask") if g("insidemask") is not None else self._full(0)
                ),
                "rerun": lambda: g("rerun") if g("rerun") is not None else self._full(301),
                "expab_r": lambda: g("expab_r", "ba"),
                "run": lambda: g("run"),
                "camcol": lambda: g("camcol"),
                "field": lambda: g("field"),
            }
            for b in BANDS:
                m[f"extinction_{b}"] = lambda b=b: (
                    g(f"extinction_{b}")
                    if f"extinction_{b}" in self.cat
                    else (None if self._ebv() is None else self._ebv() * EXTINCTION_COEFFS[b])
                )
                m[f"petromag_{b}"] = lambda b=b: (
                    g(f"petromag_{b}") if f"petromag_{b}" in self.cat else self._dered_plus_ext(b)
                )
                m[f"petromagerr_{b}"] = lambda b=b: g(f"petromagerr_{b}", f"dered_petro_err_{b}")
                m[f"psffwhm_{b}"] = lambda b=b: g(f"psffwhm_{b}")
                m[f"sky_{b}"] = lambda b=b: g(f"sky_{b}")
        elif view == "photoz":
            m = {
                "objid": lambda: g("objid", "bestobjid"),
                "z": lambda: g("zphot_b16", "photoz_z"),
                "zerr": lambda: g("zphot_b16_err", "photoz_zerr"),
            }
        elif view == "galspec":
            m = {
                "specobjid": lambda: g("specobjid"),
                "primtarget": lambda: (
                    g("primtarget") if g("primtarget") is not None else self._full(64)
                ),
            }
        else:
            m = {}
        fn = m.get(col)
        if fn is None:
            return None
        arr = fn()
        if arr is None and col in _NULLABLE:
            arr = np.full(self.n, np.nan)
        return arr

    def _dered_plus_ext(self, b: str) -> np.ndarray | None:
        dered = self._get(f"dered_petro_{b}")
        if dered is None:
            return None
        ext = self._view_column("photo", f"extinction_{b}")
        return dered + (0.0 if ext is None else ext)

    def column(self, view: str, col: str) -> np.ndarray | None:
        """The column `col` (lower case) of `view`, or None when neither mapped nor present."""
        key = (view, col)
        if key in self._derived:
            return self._derived[key]
        if view == "field":
            g = self.fld.get
            alt = {"ramin": "ra_min", "ramax": "ra_max", "decmin": "dec_min", "decmax": "dec_max"}
            arr = g(col)
            if arr is None and col in alt:
                arr = g(alt[col])
            if arr is None and col == "rerun" and self.nf:
                arr = np.full(self.nf, 301)
            if arr is None and col == "fieldid" and "run" in self.fld:
                arr = field_id(
                    self.fld["run"],
                    self.column("field", "rerun"),
                    self.fld["camcol"],
                    self.fld["field"],
                )
        else:
            arr = self._view_column(view, col)
            if arr is None:
                arr = self.cat.get(col)
        self._derived[key] = arr
        return arr


_NULLABLE = {
    "zerr",
    "z",
    "expab_r",
    "run",
    "camcol",
    "field",
    *(
        f"{p}_{b}"
        for p in ("petromag", "extinction", "petromagerr", "psffwhm", "sky")
        for b in BANDS
    ),
}


def field_id(run: Any, rerun: Any, camcol: Any, fld: Any, sky_version: int = 2) -> np.ndarray:
    """SkyServer's fieldID bit packing (skyVersion, rerun, run, camcol, field)."""
    run, rerun, camcol, fld = (np.asarray(a, dtype=np.int64) for a in (run, rerun, camcol, fld))
    return (
        (np.int64(sky_version) << 59) | (rerun << 48) | (run << 32) | (camcol << 29) | (fld << 16)
    )
