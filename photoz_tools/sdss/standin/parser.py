"""The stand-in's SELECT statement: TOP, DISTINCT, the select list, FROM with joins, WHERE,
ORDER BY (GROUP BY, HAVING, UNION and SELECT INTO are refused as SkyServer's own errors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from photoz_tools.sdss.standin.expressions import _ExprParser
from photoz_tools.sdss.standin.lexer import _KEYWORDS, SQLError


@dataclass
class Select:
    top: int | None
    items: list[tuple[Any, str | None]]  # (expr, alias); expr ("star", qualifier) for * / s.*
    tables: list[tuple[str, str]]  # (table name lower, alias lower)
    where: Any | None
    order: list[tuple[Any, bool]]  # (expr, descending)
    distinct: bool = False


class _Parser(_ExprParser):
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


def parse_sql(sql: str) -> Select:
    """Parse the SELECT subset the stand-in understands (SQLError otherwise)."""
    return _Parser(sql).parse()
