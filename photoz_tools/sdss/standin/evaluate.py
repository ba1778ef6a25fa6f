"""Evaluating a parsed SELECT over the stand-in's data: WHERE masks, ORDER BY, TOP, aggregates.

Joins are not computed: the catalogue is taken as already joined, and each table of the FROM
clause is a view on it (see :mod:`~photoz_tools.sdss.standin.catalog`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from photoz_tools.sdss.standin.catalog import _VIEW, Dataset
from photoz_tools.sdss.standin.lexer import SQLError
from photoz_tools.sdss.standin.parser import Select


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
