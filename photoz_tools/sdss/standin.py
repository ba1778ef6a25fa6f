"""A local stand-in for SkyServer and the SAS: tests and pz-mock talk to it instead of the internet.

It answers at the paths astroquery calls
(``/drNN/en/tools/search/x_results.aspx?cmd=SQL&format=csv``
for DR11+, ``x_sql.aspx`` for DR10, ``x_sql.asp`` before) with CSV like SkyServer's (first line
``#Table1``, then the header and the rows) or FITS (``format=fits``), by evaluating the SQL over an
in-memory catalogue: the toolkit's own queries (the MGS selection with its cuts, ``TOP n``, keyset
paging, ``ORDER BY``, sky boxes, the Field-table frames query) and simple hand-written ones
(arithmetic, comparisons, AND/OR/NOT, BETWEEN, IN, IS NULL, a few functions, COUNT/MIN/MAX).
Joins are not computed: the catalogue is taken as already joined, and each SkyServer table of
the FROM clause (SpecObjAll, PhotoObjAll, Photoz, galSpecInfo, ...) is a view on it.

The SAS side serves files under ``sas_root``: ``GET {sas_url}/frames/301/RUN/CAMCOL/frame-...``
answers ``sas_root/frames/301/RUN/CAMCOL/frame-...`` with Content-Length, HEAD and byte ranges.

Faults for tests: ``standin.inject(kind, count)`` makes the next `count` requests fail as SkyServer
and the SAS fail in practice (see :meth:`StandIn.inject`).

Use::

    from photoz_tools.sdss.standin import StandIn

    with StandIn(catalog="mgs.parquet", sas_root="mirror/") as sky:   # frames: from the tree
        sky.inject("http500", 2, status=503)          # the next 2 SQL requests fail
        sky.inject("truncate", target="sas")          # the next SAS download is cut short
        run pz-query --url {sky.url} ... / pz-cutout --sas-url {sky.sas_url} ...
        sky.requests                                  # what was asked, and which fault answered

``serve(...)`` does the same in the foreground until Ctrl-C (``pz-mock serve DIR``).

Catalogue columns may be given in SkyServer names (petroMag_r, extinction_r, expAB_r, zWarning,
...) or in pz-query's output names (dered_petro_r, ebv, ba, zphot_b16, ...); what is missing gets
a value that passes the MGS cuts (class GALAXY, survey sdss, targetType SCIENCE, zWarning 0,
clean 1, insideMask 0, primtarget 64, rerun 301) or null (errors, PSF FWHM, sky).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import http.server
import io
import os
import re
import socket
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from photoz_tools.sdss.queries import EXTINCTION_COEFFS, FRAMES_COLUMNS

BANDS = "ugriz"

# --------------------------------------------------------------------------- SQL: tokens


class SQLError(Exception):
    """A query the stand-in cannot answer; sent back as SkyServer's ``Error: ...`` text."""


_TOKENS = re.compile(
    r"""\s+
      | (?P<num>(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))
      | (?P<str>N?'(?:[^']|'')*')
      | (?P<ident>[A-Za-z_#@][\w$#@]*|\[[^\]]+\]|"[^"]+")
      | (?P<op><=|>=|<>|!=|[-+*/%=<>(),.;])
    """,
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str
    value: Any
    text: str


def _tokenize(sql: str) -> list[_Tok]:
    sql = re.sub(r"--[^\n]*", " ", sql)  # comments (the client strips them already)
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.S)
    toks: list[_Tok] = []
    pos = 0
    while pos < len(sql):
        m = _TOKENS.match(sql, pos)
        if m is None:
            raise SQLError(f"Incorrect syntax near '{sql[pos : pos + 10]}'.")
        pos = m.end()
        kind = m.lastgroup
        if kind is None:
            continue
        text = m.group()
        if kind == "num":
            value: Any = float(text) if any(c in text for c in ".eE") else int(text)
        elif kind == "str":
            value = text[text.index("'") + 1 : -1].replace("''", "'")
        elif kind == "ident":
            value = text.strip('[]"')
        else:
            value = text
        toks.append(_Tok(kind, value, text))
    return toks


_KEYWORDS = {
    "select",
    "top",
    "distinct",
    "from",
    "where",
    "order",
    "by",
    "as",
    "and",
    "or",
    "not",
    "join",
    "inner",
    "left",
    "right",
    "outer",
    "cross",
    "on",
    "between",
    "in",
    "is",
    "null",
    "asc",
    "desc",
    "into",
    "group",
    "having",
    "union",
    "like",
}

# --------------------------------------------------------------------------- SQL: parser


@dataclass
class Select:
    top: int | None
    items: list[tuple[Any, str | None]]  # (expr, alias); expr ("star", qualifier) for * / s.*
    tables: list[tuple[str, str]]  # (table name lower, alias lower)
    where: Any | None
    order: list[tuple[Any, bool]]  # (expr, descending)
    distinct: bool = False


class _Parser:
    def __init__(self, sql: str) -> None:
        self.toks = _tokenize(sql)
        self.i = 0

    def peek(self, k: int = 0) -> _Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def is_kw(self, *words: str, k: int = 0) -> bool:
        t = self.peek(k)
        return t is not None and t.kind == "ident" and t.value.lower() in words

    def is_op(self, *ops: str) -> bool:
        t = self.peek()
        return t is not None and t.kind == "op" and t.value in ops

    def next(self) -> _Tok:
        t = self.peek()
        if t is None:
            raise SQLError("Incorrect syntax near the end of the query.")
        self.i += 1
        return t

    def expect_kw(self, word: str) -> None:
        if not self.is_kw(word):
            t = self.peek()
            raise SQLError(
                f"Incorrect syntax near '{t.text if t else 'end of query'}'"
                f" (expected {word.upper()})."
            )
        self.i += 1

    def expect_op(self, op: str) -> None:
        if not self.is_op(op):
            t = self.peek()
            raise SQLError(f"Incorrect syntax near '{t.text if t else 'end of query'}'.")
        self.i += 1

    def parse(self) -> Select:
        self.expect_kw("select")
        distinct = False
        if self.is_kw("distinct"):
            self.i += 1
            distinct = True
        top = None
        if self.is_kw("top"):
            self.i += 1
            paren = self.is_op("(")
            if paren:
                self.i += 1
            t = self.next()
            if t.kind != "num" or not isinstance(t.value, int):
                raise SQLError(f"Incorrect syntax near '{t.text}' (TOP needs an integer).")
            top = t.value
            if paren:
                self.expect_op(")")
        items = [self.select_item()]
        while self.is_op(","):
            self.i += 1
            items.append(self.select_item())
        if self.is_kw("into"):
            raise SQLError("SELECT INTO is not allowed in SkyServer's SQL search (use CasJobs).")
        self.expect_kw("from")
        tables = [self.table_ref()]
        on: list[Any] = []
        while True:
            if self.is_op(","):
                self.i += 1
                tables.append(self.table_ref())
                continue
            if self.is_kw("join", "inner", "left", "right", "cross", "outer"):
                while self.is_kw("inner", "left", "right", "cross", "outer"):
                    self.i += 1
                self.expect_kw("join")
                tables.append(self.table_ref())
                if self.is_kw("on"):
                    self.i += 1
                    on.append(self.expr())  # parsed for syntax; the catalogue is pre-joined
                continue
            break
        where = None
        if self.is_kw("where"):
            self.i += 1
            where = self.expr()
        if self.is_kw("group", "having", "union"):
            raise SQLError(f"'{self.peek().text}' is not supported by the SkyServer stand-in.")
        order: list[tuple[Any, bool]] = []
        if self.is_kw("order"):
            self.i += 1
            self.expect_kw("by")
            while True:
                e = self.expr()
                desc = False
                if self.is_kw("asc", "desc"):
                    desc = self.next().value.lower() == "desc"
                order.append((e, desc))
                if not self.is_op(","):
                    break
                self.i += 1
        if self.is_op(";"):
            self.i += 1
        if self.peek() is not None:
            raise SQLError(f"Incorrect syntax near '{self.peek().text}'.")
        return Select(top, items, tables, where, order, distinct)

    def select_item(self) -> tuple[Any, str | None]:
        if self.is_op("*"):
            self.i += 1
            return ("star", None), None
        t0, t1, t2 = self.peek(), self.peek(1), self.peek(2)
        if (
            t0
            and t0.kind == "ident"
            and t1
            and t1.kind == "op"
            and t1.value == "."
            and t2
            and t2.kind == "op"
            and t2.value == "*"
        ):
            self.i += 3
            return ("star", t0.value.lower()), None
        e = self.expr()
        alias = None
        if self.is_kw("as"):
            self.i += 1
            alias = self.next().value
        elif (
            self.peek() is not None
            and self.peek().kind in ("ident", "str")
            and self.peek().value.lower() not in _KEYWORDS
        ):
            alias = self.next().value
        return e, alias

    def table_ref(self) -> tuple[str, str]:
        t = self.next()
        if t.kind != "ident":
            raise SQLError(f"Incorrect syntax near '{t.text}'.")
        name = t.value
        while self.is_op("."):  # dbo.Field, BestDR12.dbo.SpecObjAll
            self.i += 1
            name = self.next().value
        alias = name
        if self.is_kw("as"):
            self.i += 1
            alias = self.next().value
        elif (
            self.peek() is not None
            and self.peek().kind == "ident"
            and self.peek().value.lower() not in _KEYWORDS
        ):
            alias = self.next().value
        return name.lower(), alias.lower()

    # expressions, lowest precedence first
    def expr(self) -> Any:
        e = self.and_expr()
        while self.is_kw("or"):
            self.i += 1
            e = ("or", e, self.and_expr())
        return e

    def and_expr(self) -> Any:
        e = self.not_expr()
        while self.is_kw("and"):
            self.i += 1
            e = ("and", e, self.not_expr())
        return e

    def not_expr(self) -> Any:
        if self.is_kw("not"):
            self.i += 1
            return ("not", self.not_expr())
        return self.comparison()

    def comparison(self) -> Any:
        e = self.additive()
        negate = False
        if self.is_kw("not") and self.is_kw("between", "in", "like", k=1):
            self.i += 1
            negate = True
        if self.is_op("=", "<>", "!=", "<", "<=", ">", ">="):
            op = self.next().value
            return ("cmp", "!=" if op == "<>" else op, e, self.additive())
        if self.is_kw("between"):
            self.i += 1
            lo = self.additive()
            self.expect_kw("and")
            hi = self.additive()
            return ("between", e, lo, hi, negate)
        if self.is_kw("in"):
            self.i += 1
            self.expect_op("(")
            vals = [self.additive()]
            while self.is_op(","):
                self.i += 1
                vals.append(self.additive())
            self.expect_op(")")
            return ("in", e, vals, negate)
        if self.is_kw("like"):
            self.i += 1
            return ("like", e, self.additive(), negate)
        if self.is_kw("is"):
            self.i += 1
            neg = False
            if self.is_kw("not"):
                self.i += 1
                neg = True
            self.expect_kw("null")
            return ("isnull", e, neg)
        return e

    def additive(self) -> Any:
        e = self.term()
        while self.is_op("+", "-"):
            op = self.next().value
            e = ("bin", op, e, self.term())
        return e

    def term(self) -> Any:
        e = self.unary()
        while self.is_op("*", "/", "%"):
            op = self.next().value
            e = ("bin", op, e, self.unary())
        return e

    def unary(self) -> Any:
        if self.is_op("-"):
            self.i += 1
            return ("neg", self.unary())
        if self.is_op("+"):
            self.i += 1
            return self.unary()
        return self.primary()

    def primary(self) -> Any:
        t = self.next()
        if t.kind == "num":
            return ("lit", t.value)
        if t.kind == "str":
            return ("lit", t.value)
        if t.kind == "op" and t.value == "(":
            e = self.expr()
            self.expect_op(")")
            return e
        if t.kind == "ident":
            if t.value.lower() == "null":
                return ("lit", None)
            parts = [t.value]
            while self.is_op("."):
                self.i += 1
                parts.append(self.next().value)
            if self.is_op("("):
                self.i += 1
                args: list[Any] = []
                if self.is_op("*"):
                    self.i += 1
                    args.append(("star", None))
                elif not self.is_op(")"):
                    args.append(self.expr())
                    while self.is_op(","):
                        self.i += 1
                        args.append(self.expr())
                self.expect_op(")")
                return ("func", ".".join(parts).lower(), args)
            if len(parts) == 1:
                return ("col", None, parts[0])
            return ("col", parts[-2].lower(), parts[-1])
        raise SQLError(f"Incorrect syntax near '{t.text}'.")


def parse_sql(sql: str) -> Select:
    """Parse the SELECT subset the stand-in understands (SQLError otherwise)."""
    return _Parser(sql).parse()


# --------------------------------------------------------------------------- data


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


# --------------------------------------------------------------------------- evaluation


def _is_text(a: Any) -> bool:
    return isinstance(a, str) or (isinstance(a, np.ndarray) and a.dtype.kind in "OUS")


def _norm_text(a: Any) -> Any:
    """SkyServer's collation is case-insensitive and ignores trailing blanks."""
    if isinstance(a, str):
        return a.rstrip().lower()
    return np.array([str(v).rstrip().lower() for v in a], dtype=object)


def _sql_like(pattern: str) -> re.Pattern:
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern.lower())
    return re.compile(rx + r"\Z", re.S)


_FUNCS: dict[str, Callable[..., Any]] = {
    "abs": np.abs,
    "sqrt": np.sqrt,
    "log10": np.log10,
    "log": np.log,
    "exp": np.exp,
    "floor": np.floor,
    "ceiling": np.ceil,
    "power": np.power,
    "sin": np.sin,
    "cos": np.cos,
    "radians": np.radians,
    "degrees": np.degrees,
    "round": lambda x, n=0: np.round(x, int(n)),
    "isnull": lambda x, y: np.where(np.isnan(np.asarray(x, dtype=float)), y, x),
    "char": lambda c: chr(int(c)),
}
_AGGS = {"count", "min", "max", "sum", "avg"}


class _Env:
    def __init__(self, data: Dataset, tables: list[tuple[str, str]], rows: np.ndarray) -> None:
        self.data = data
        self.tables = tables
        self.aliases = {alias: name for name, alias in tables}
        self.aliases.update({name: name for name, _ in tables})
        self.rows = rows

    def column(self, qual: str | None, name: str) -> np.ndarray:
        col = name.lower()
        if qual is not None:
            if qual not in self.aliases:
                raise SQLError(f'The multi-part identifier "{qual}.{name}" could not be bound.')
            order = [self.aliases[qual]]
        else:
            order = [t for t, _ in self.tables]
        for table in order:
            arr = self.data.column(_VIEW.get(table, "photo"), col)
            if arr is not None:
                return arr[self.rows]
        raise SQLError(f"Invalid column name '{name}'.")

    def eval(self, e: Any) -> Any:
        kind = e[0]
        if kind == "lit":
            return e[1]
        if kind == "col":
            return self.column(e[1], e[2])
        if kind == "neg":
            return -self._num(self.eval(e[1]))
        if kind == "bin":
            a, b = self.eval(e[2]), self.eval(e[3])
            if e[1] == "+" and _is_text(a) and _is_text(b):
                return (
                    a + b
                    if isinstance(a, str) and isinstance(b, str)
                    else np.char.add(np.asarray(a, dtype=str), np.asarray(b, dtype=str)).astype(
                        object
                    )
                )
            a, b = self._num(a), self._num(b)
            with np.errstate(all="ignore"):
                if e[1] == "+":
                    return a + b
                if e[1] == "-":
                    return a - b
                if e[1] == "*":
                    return a * b
                if e[1] == "/":
                    if isinstance(a, int) and isinstance(b, int):
                        return a // b
                    return np.true_divide(a, b)
                return np.mod(a, b)
        if kind == "cmp":
            a, b = self.eval(e[2]), self.eval(e[3])
            if _is_text(a) or _is_text(b):
                a, b = _norm_text(a), _norm_text(b)
            ops = {
                "=": np.equal,
                "!=": np.not_equal,
                "<": np.less,
                "<=": np.less_equal,
                ">": np.greater,
                ">=": np.greater_equal,
            }
            with np.errstate(invalid="ignore"):
                return self._mask(ops[e[1]](a, b))
        if kind == "between":
            x, lo, hi = (self._num(self.eval(k)) for k in e[1:4])
            with np.errstate(invalid="ignore"):
                r = self._mask((x >= lo) & (x <= hi))
            return ~r if e[4] else r
        if kind == "in":
            x = self.eval(e[1])
            vals = [self.eval(v) for v in e[2]]
            if _is_text(x):
                x, vals = _norm_text(x), [_norm_text(v) for v in vals]
            r = self._mask(np.isin(x, vals))
            return ~r if e[3] else r
        if kind == "like":
            x, pat = self.eval(e[1]), self.eval(e[2])
            rx = _sql_like(str(pat))
            r = self._mask(np.array([bool(rx.match(str(v).lower())) for v in np.atleast_1d(x)]))
            return ~r if e[3] else r
        if kind == "isnull":
            x = self.eval(e[1])
            if isinstance(x, np.ndarray) and x.dtype.kind == "f":
                r = np.isnan(x)
            elif isinstance(x, np.ndarray) and x.dtype == object:
                r = np.array([v is None for v in x])
            else:
                r = self._mask(x is None)
            return ~r if e[2] else r
        if kind == "and":
            return self._mask(self.eval(e[1])) & self._mask(self.eval(e[2]))
        if kind == "or":
            return self._mask(self.eval(e[1])) | self._mask(self.eval(e[2]))
        if kind == "not":
            return ~self._mask(self.eval(e[1]))
        if kind == "func":
            name = e[1].split(".")[-1]
            if name in _AGGS:
                raise SQLError(f"aggregate {name.upper()} mixed with rows is not supported.")
            if name not in _FUNCS:
                raise SQLError(
                    f"'{e[1]}' is not a recognized built-in function name "
                    "(by the SkyServer stand-in)."
                )
            args = [self.eval(a) for a in e[2]]
            with np.errstate(all="ignore"):
                return _FUNCS[name](*args)
        if kind == "star":
            raise SQLError("Incorrect syntax near '*'.")
        raise SQLError("unsupported expression")

    def _num(self, a: Any) -> Any:
        if _is_text(a):
            try:
                return np.asarray(a, dtype=float) if isinstance(a, np.ndarray) else float(a)
            except ValueError:
                raise SQLError(f"Conversion failed when converting '{a}' to a number.") from None
        if a is None:
            return np.nan
        return a

    def _mask(self, m: Any) -> np.ndarray:
        m = np.asarray(m)
        if m.dtype != bool:
            m = m.astype(bool)
        if m.ndim == 0:
            m = np.full(len(self.rows), bool(m))
        return m


def _output_name(e: Any, alias: str | None, k: int) -> str:
    if alias:
        return alias
    if e[0] == "col":
        return e[2]
    return f"Column{k}"


def run_select(data: Dataset, q: Select, max_rows: int | None = None) -> dict[str, np.ndarray]:
    """Evaluate a parsed query over the data: ordered columns of the answer."""
    views = {_VIEW.get(t, "photo") for t, _ in q.tables}
    if "field" in views and len(views) > 1:
        raise SQLError("joining Field with catalogue tables is not supported by the stand-in.")
    n = data.nf if "field" in views else data.n
    env = _Env(data, q.tables, np.arange(n))
    if q.where is not None:
        mask = env._mask(env.eval(q.where))
        env = _Env(data, q.tables, env.rows[mask])

    aggs = [e for e, _ in q.items if e[0] == "func" and e[1].split(".")[-1] in _AGGS]
    if aggs:
        out: dict[str, np.ndarray] = {}
        for k, (e, alias) in enumerate(q.items, start=1):
            if not (e[0] == "func" and e[1].split(".")[-1] in _AGGS):
                raise SQLError(
                    "Column is invalid in the select list because it is not contained"
                    " in an aggregate function (no GROUP BY in the stand-in)."
                )
            fname = e[1].split(".")[-1]
            if fname == "count":
                val: Any = len(env.rows)
            else:
                x = np.asarray(env.eval(e[2][0]), dtype=float)
                x = x[~np.isnan(x)]
                fn = {"min": np.min, "max": np.max, "sum": np.sum, "avg": np.mean}[fname]
                val = float(fn(x)) if len(x) else np.nan
            out[_output_name(e, alias, k)] = np.array([val])
        return out

    names_to_expr = {alias.lower(): e for e, alias in q.items if alias}
    if q.order:
        keys = []
        for e, desc in reversed(q.order):
            if e[0] == "col" and e[1] is None and e[2].lower() in names_to_expr:
                e = names_to_expr[e[2].lower()]
            if e[0] == "lit" and isinstance(e[1], int):  # ORDER BY 1
                e = q.items[e[1] - 1][0]
            v = env.eval(e)
            if _is_text(v):
                v = np.unique(_norm_text(v), return_inverse=True)[1]
            v = np.broadcast_to(np.asarray(v), env.rows.shape)
            keys.append(-v if desc and v.dtype.kind in "if" else v)
        env = _Env(data, q.tables, env.rows[np.lexsort(keys)])
    limit = q.top
    if max_rows is not None:
        limit = max_rows if limit is None else min(limit, max_rows)
    if limit is not None:
        env = _Env(data, q.tables, env.rows[:limit])

    out = {}
    for k, (e, alias) in enumerate(q.items, start=1):
        if e[0] == "star":
            tables = [t for t, a in q.tables if e[1] in (None, a, t)]
            src = data.fields if any(_VIEW.get(t) == "field" for t in tables) else data.catalog
            for name, arr in src.items():
                out.setdefault(name, arr[env.rows])
            continue
        v = env.eval(e)
        if not isinstance(v, np.ndarray) or v.ndim == 0:
            v = np.full(len(env.rows), v, dtype=object if isinstance(v, str) else None)
        out[_output_name(e, alias, k)] = v
    if q.distinct:
        raise SQLError("DISTINCT is not supported by the SkyServer stand-in.")
    return out


def _format_column(arr: np.ndarray) -> list[str]:
    if arr.dtype.kind == "b":
        return ["1" if v else "0" for v in arr.tolist()]
    if arr.dtype.kind in "iu":
        return [str(v) for v in arr.tolist()]
    if arr.dtype.kind == "f":
        return ["" if v != v else repr(v) for v in arr.astype(np.float64).tolist()]
    out = []
    for v in arr.tolist():
        s = "" if v is None else str(v)
        if any(c in s for c in ',"\n'):
            s = '"' + s.replace('"', '""') + '"'
        out.append(s)
    return out


def to_csv(columns: dict[str, np.ndarray]) -> str:
    """SkyServer's CSV: ``#Table1``, the header, then one line per row (strings unquoted)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = list(columns)
    head = "#Table1\n" + ",".join(names) + "\n"
    try:  # Arrow's writer: ~20x faster than Python for the 50k-row pages pz-query asks for
        arrays = []
        for n in names:
            a = np.asarray(columns[n])
            if a.dtype.kind == "b":
                a = a.astype(np.int8)  # SQL bit: 1/0
            elif a.dtype == object:
                a = pa.array([None if v is None else str(v) for v in a], type=pa.string())
            arrays.append(a if isinstance(a, pa.Array) else pa.array(a, from_pandas=True))
        buf = io.BytesIO()
        pcsv.write_csv(
            pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(names))]),
            buf,
            pcsv.WriteOptions(include_header=False, quoting_style="none"),
        )
        return head + buf.getvalue().decode()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass  # commas or quotes inside strings: quote them as SkyServer does, in Python
    cols = [_format_column(np.asarray(columns[n])) for n in names]
    lines = ["#Table1", ",".join(names)]
    lines += [",".join(row) for row in zip(*cols, strict=True)]
    return "\n".join(lines) + "\n"


def to_fits(columns: dict[str, np.ndarray]) -> bytes:
    """The answer as a FITS binary table (SkyServer's format=fits)."""
    from astropy.table import Table

    t = Table()
    for name, arr in columns.items():
        arr = np.asarray(arr)
        t[name] = arr.astype(str) if arr.dtype == object else arr
    buf = io.BytesIO()
    t.write(buf, format="fits")
    return buf.getvalue()


# --------------------------------------------------------------------------- frames on disk


_FRAME_NAME = re.compile(r"frame-([ugriz])-(\d{6})-(\d)-(\d{4})\.fits(?:\.bz2|\.gz)?$")


def _open_any(path: Path):
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    return open(path, "rb")


def frame_index_from_files(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """Index SDSS frames under `folder` (any layout) from their headers: one row per field.

    Bounds are the min/max of the sky positions of each band's image corners and edge midpoints,
    over all bands found, so the box contains every band's pixels.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    rows: dict[tuple[int, int, int, int], list[float]] = {}
    for path in sorted(Path(folder).rglob("frame-*")):
        m = _FRAME_NAME.search(path.name)
        if m is None:
            continue
        run, camcol, fld = int(m.group(2)), int(m.group(3)), int(m.group(4))
        parent = path.parts
        rerun = 301
        if len(parent) >= 4 and parent[-3] == str(run) and parent[-4].isdigit():
            rerun = int(parent[-4])
        with _open_any(path) as fh:
            header = fits.Header.fromfile(fh)
        nx, ny = header.get("NAXIS1", 2048), header.get("NAXIS2", 1489)
        with warnings.catch_warnings():  # SDSS frames still write RADECSYS
            warnings.simplefilter("ignore")
            w = WCS(header, naxis=2)
        xs = np.array([0.5, nx / 2 + 0.5, nx + 0.5])
        ys = np.array([0.5, ny / 2 + 0.5, ny + 0.5])
        gx, gy = np.meshgrid(xs, ys)
        ra, dec = w.all_pix2world(gx.ravel(), gy.ravel(), 1)
        ra = np.asarray(ra) % 360.0
        if ra.max() - ra.min() > 180.0:  # a field across RA = 0: express it as raMin > raMax
            lo, hi = ra[ra > 180].min(), ra[ra < 180].max()
        else:
            lo, hi = ra.min(), ra.max()
        key = (run, rerun, camcol, fld)
        b = [float(lo), float(hi), float(np.min(dec)), float(np.max(dec))]
        if key in rows:
            old = rows[key]
            b = [min(old[0], b[0]), max(old[1], b[1]), min(old[2], b[2]), max(old[3], b[3])]
        rows[key] = b
    keys = sorted(rows)
    out = {
        "run": np.array([k[0] for k in keys], dtype=np.int64),
        "rerun": np.array([k[1] for k in keys], dtype=np.int64),
        "camcol": np.array([k[2] for k in keys], dtype=np.int64),
        "field": np.array([k[3] for k in keys], dtype=np.int64),
        "ra_min": np.array([rows[k][0] for k in keys]),
        "ra_max": np.array([rows[k][1] for k in keys]),
        "dec_min": np.array([rows[k][2] for k in keys]),
        "dec_max": np.array([rows[k][3] for k in keys]),
    }
    out["fieldID"] = field_id(out["run"], out["rerun"], out["camcol"], out["field"])
    return out


# --------------------------------------------------------------------------- faults


FAULT_KINDS = ("http500", "html200", "error200", "drop", "hang", "truncate", "short")

_HTML_ERROR = (
    "<!DOCTYPE html>\n<html><head><title>SkyServer: SQL Search</title></head>\n"
    "<body><h1>Error</h1>\n<p>{message}</p>\n</body></html>\n"
)
_HTML_500 = (
    "<!DOCTYPE html>\n<html><head><title>500 - Internal server error.</title></head>"
    "\n<body><h2>500 - Internal server error.</h2>\n<h3>There is a problem with the "
    "resource you are looking for, and it cannot be displayed.</h3></body></html>\n"
)


@dataclass
class _Fault:
    kind: str
    remaining: int
    target: str
    status: int = 500
    message: str = ""
    hang: float = 5.0
    after: int = 0  # matching requests to let through first


@dataclass
class RequestRecord:
    """One request the stand-in saw (for tests: what was asked, and which fault answered)."""

    method: str
    path: str
    target: str  # "sql" or "sas"
    sql: str | None = None
    fault: str | None = None
    status: int | None = None
    extra: dict = field(default_factory=dict)


_SQL_PATH = re.compile(
    r"^/dr(\d+)/en/tools/search/(x_results\.aspx|x_sql\.aspx|x_sql\.asp)$"
    r"|^/dr(\d+)/SkyServerWS/SearchTools/SqlSearch$",
    re.I,
)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"  # as SkyServer announces itself
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests
        pass

    def do_GET(self) -> None:
        self.server.standin._handle(self, "GET")

    def do_HEAD(self) -> None:
        self.server.standin._handle(self, "HEAD")

    def do_POST(self) -> None:
        self.server.standin._handle(self, "POST")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    standin: StandIn


class StandIn:
    """SkyServer + SAS on 127.0.0.1 in a background thread (a context manager).

    Parameters
    ----------
    catalog : the rows SQL queries run over (pyarrow or astropy table, dict of arrays, or a
        FITS/Parquet/CSV path); see the module docstring for its column names
    frames : the Field table: a frame index table (run, rerun, camcol, field, ra_min, ra_max,
        dec_min, dec_max; or Field's raMin...) or a folder of frame files indexed from their
        headers; default: the frames found under `sas_root`
    sas_root : folder served as the SAS (``frames/301/RUN/CAMCOL/frame-*.fits.bz2`` inside)
    max_rows : rows per answer, beyond which SkyServer truncates silently
    latency : seconds added to each answer (to watch progress bars)

    Attributes: ``url`` (for ``astroquery.sdss.conf.skyserver_baseurl`` / ``pz-query --url``),
    ``sas_url`` (GET ``{sas_url}/frames/301/...``), ``requests`` (a list of RequestRecord).
    """

    def __init__(
        self,
        catalog: Any = None,
        frames: Any = None,
        sas_root: str | os.PathLike | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_rows: int | None = 500_000,
        latency: float = 0.0,
    ) -> None:
        self.sas_root = Path(sas_root).resolve() if sas_root is not None else None
        if frames is None and self.sas_root is not None and (self.sas_root / "frames").is_dir():
            frames = self.sas_root / "frames"
        if isinstance(frames, str | os.PathLike) and Path(frames).is_dir():
            frames = frame_index_from_files(frames)
        self.data = Dataset(catalog, frames)
        self.host = host
        self.port = port
        self.max_rows = max_rows
        self.latency = latency
        self.requests: list[RequestRecord] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> StandIn:
        """Bind and serve in a daemon thread; returns self."""
        self._server = _Server((self.host, self.port), _Handler)
        self._server.standin = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"skyserver-standin:{self.port}",
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving (hung fault answers are released)."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StandIn:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def url(self) -> str:
        """SkyServer base URL (astroquery appends /drNN/en/tools/search/x_results.aspx)."""
        return f"http://{self.host}:{self.port}"

    @property
    def sas_url(self) -> str:
        """Base of the SAS frames tree: ``{sas_url}/frames/301/RUN/CAMCOL/frame-...``."""
        return f"{self.url}/sas/dr12/boss/photoObj"

    @property
    def sql_requests(self) -> list[str]:
        """The SQL of every request so far, in order (faulted ones included)."""
        return [r.sql for r in self.requests if r.target == "sql" and r.sql is not None]

    # faults
    def inject(
        self,
        kind: str,
        count: int = 1,
        *,
        target: str | None = None,
        status: int = 500,
        message: str | None = None,
        hang: float = 5.0,
        after: int = 0,
    ) -> None:
        """Make the next `count` requests to `target` fail.

        kind:
          ``http500`` an HTTP error status (`status`, default 500) with IIS's HTML page;
          ``html200`` an HTML error page with status 200 (SkyServer's way);
          ``error200`` SkyServer's text answer ``Error: ...`` with status 200 (`message`);
          ``drop`` close the connection without answering;
          ``hang`` answer nothing for `hang` seconds, then close (past the client's timeout);
          ``truncate`` announce the full Content-Length, send half of the body, close;
          ``short`` a valid table with only the first half of its rows (SkyServer's silent
          row cap; SQL only).
        target: ``sql`` (default; ``sas`` for truncate), ``sas`` or ``any``.
        after: let this many matching requests through first (a failure mid-way).
        Faults queue up in the order injected.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        if target is None:
            target = "sas" if kind == "truncate" else "sql"
        if target not in ("sql", "sas", "any"):
            raise ValueError("target must be 'sql', 'sas' or 'any'")
        default_msg = {
            "html200": "The server is too busy to process your query right now.",
            "error200": "Error: Incorrect syntax near 'FORM'.",
        }
        with self._lock:
            self._faults.append(
                _Fault(
                    kind,
                    int(count),
                    target,
                    status,
                    message or default_msg.get(kind, ""),
                    hang,
                    int(after),
                )
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def _take_fault(self, target: str) -> _Fault | None:
        with self._lock:
            for f in self._faults:
                if f.remaining > 0 and f.target in (target, "any"):
                    if f.after > 0:
                        f.after -= 1
                        return None
                    f.remaining -= 1
                    if f.remaining == 0:
                        self._faults.remove(f)
                    return f
        return None

    # request handling
    def _handle(self, h: _Handler, method: str) -> None:
        parsed = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(parsed.path)
        params = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        if method == "POST":
            length = int(h.headers.get("Content-Length") or 0)
            body = h.rfile.read(length).decode("utf-8", "replace")
            params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
        is_sql = _SQL_PATH.match(path) is not None
        rec = RequestRecord(
            method, h.path, "sql" if is_sql else "sas", sql=params.get("cmd") if is_sql else None
        )
        with self._lock:
            self.requests.append(rec)
        if self.latency:
            time.sleep(self.latency)
        fault = self._take_fault(rec.target)
        if fault is not None:
            rec.fault = fault.kind
            if self._apply_fault(h, fault, rec, method):
                return
        if is_sql:
            self._answer_sql(h, params, rec, method)
        else:
            self._answer_file(h, path, rec, method)

    def _send(
        self,
        h: _Handler,
        status: int,
        body: bytes,
        ctype: str,
        rec: RequestRecord,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        truncate: bool = False,
    ) -> None:
        rec.status = status
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            if truncate:
                h.send_header("Connection", "close")
            h.end_headers()
            if method != "HEAD":
                h.wfile.write(body[: len(body) // 2] if truncate else body)
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        if truncate:
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)

    def _apply_fault(self, h: _Handler, f: _Fault, rec: RequestRecord, method: str) -> bool:
        """Answer with the fault; False when the fault only acts on the body (truncate)."""
        if f.kind == "http500":
            body = _HTML_500.encode() if f.status >= 500 else b"<html><body>error</body></html>"
            self._send(h, f.status, body, "text/html", rec, method)
        elif f.kind == "html200":
            self._send(
                h,
                200,
                _HTML_ERROR.format(message=f.message).encode(),
                "text/html; charset=utf-8",
                rec,
                method,
            )
        elif f.kind == "error200":
            self._send(
                h, 200, (f.message + "\n").encode(), "text/plain; charset=utf-8", rec, method
            )
        elif f.kind in ("drop", "hang"):
            if f.kind == "hang":
                self._closing.wait(f.hang)
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
        elif f.kind in ("truncate", "short"):
            rec.extra[f.kind] = True
            return False
        return True

    def _answer_sql(
        self, h: _Handler, params: dict[str, str], rec: RequestRecord, method: str
    ) -> None:
        sql = params.get("cmd", "")
        fmt = params.get("format", "html").lower()
        truncate = bool(rec.extra.get("truncate"))
        try:
            if not sql.strip():
                raise SQLError("the query is empty.")
            cols = run_select(self.data, parse_sql(sql), self.max_rows)
            if rec.extra.get("short"):
                cols = {k: v[: len(v) // 2] for k, v in cols.items()}
        except SQLError as exc:
            msg = str(exc)
            if fmt == "csv":
                self._send(
                    h, 200, f"Error: {msg}\n".encode(), "text/plain; charset=utf-8", rec, method
                )
            else:
                self._send(
                    h, 200, _HTML_ERROR.format(message=msg).encode(), "text/html", rec, method
                )
            return
        except Exception as exc:  # a stand-in bug: answer as SkyServer would, keep serving
            self._send(h, 500, _HTML_500.encode() + repr(exc).encode(), "text/html", rec, method)
            return
        if fmt == "fits":
            self._send(h, 200, to_fits(cols), "application/fits", rec, method, truncate=truncate)
        else:
            self._send(
                h,
                200,
                to_csv(cols).encode(),
                "text/plain; charset=utf-8",
                rec,
                method,
                truncate=truncate,
            )

    def _resolve_file(self, path: str) -> Path | None:
        if self.sas_root is None:
            return None
        rels = []
        if "/frames/" in path:
            rels.append(path[path.index("/frames/") + 1 :])
        if path.startswith("/sas/"):
            rels.append(path[len("/sas/") :])
        for rel in rels:
            parts = [p for p in rel.split("/") if p not in ("", ".")]
            if ".." in parts or "\\" in rel:  # never outside sas_root (symlinks inside are fine)
                continue
            candidate = self.sas_root.joinpath(*parts)
            if candidate.is_file():
                return candidate
        return None

    def _answer_file(self, h: _Handler, path: str, rec: RequestRecord, method: str) -> None:
        file = self._resolve_file(path)
        if file is None:
            self._send(
                h, 404, b"<html><body><h1>Not Found</h1></body></html>\n", "text/html", rec, method
            )
            return
        data = file.read_bytes()
        ctype = "application/x-bzip2" if file.suffix == ".bz2" else "application/octet-stream"
        headers = {"Accept-Ranges": "bytes"}
        rng = h.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip()) if rng else None
        if m and (m.group(1) or m.group(2)):
            size = len(data)
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start, end = max(0, size - int(m.group(2))), size - 1
            if start >= size or start > end:
                self._send(
                    h,
                    416,
                    b"",
                    "text/plain",
                    rec,
                    method,
                    headers={"Content-Range": f"bytes */{size}"},
                )
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self._send(
                h,
                206,
                data[start : end + 1],
                ctype,
                rec,
                method,
                headers=headers,
                truncate=bool(rec.extra.get("truncate")),
            )
            return
        self._send(
            h,
            200,
            data,
            ctype,
            rec,
            method,
            headers=headers,
            truncate=bool(rec.extra.get("truncate")),
        )


@contextlib.contextmanager
def astroquery_pointed_at(standin: StandIn) -> Iterator[None]:
    """Point astroquery's SDSS module (SkyServer and SAS URLs) at the stand-in for a block."""
    from astroquery.sdss import conf

    with (
        conf.set_temp("skyserver_baseurl", standin.url),
        conf.set_temp("sas_baseurl", f"{standin.url}/sas"),
    ):
        yield


def serve(
    catalog: Any = None,
    frames: Any = None,
    sas_root: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    ready: Callable[[StandIn], None] | None = None,
    **kwargs: Any,
) -> None:
    """Serve until interrupted (Ctrl-C); `ready(standin)` is called once it listens.

    pz-mock uses it for ``pz-mock serve DIR``; print ``standin.url`` and ``standin.sas_url`` in
    `ready` so users can pass them to ``pz-query --url`` and ``pz-cutout``.
    """
    standin = StandIn(
        catalog=catalog, frames=frames, sas_root=sas_root, host=host, port=port, **kwargs
    )
    with standin:
        if ready is not None:
            ready(standin)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
