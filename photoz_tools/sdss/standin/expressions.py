"""The stand-in's SQL expression grammar (OR, AND, NOT, comparisons, arithmetic, calls).

An expression is a tuple tree: ``("col", qualifier, name)``, ``("lit", value)``,
``("cmp", op, a, b)``, ``("bin", op, a, b)``, ``("between", x, lo, hi, negate)``,
``("in", x, values, negate)``, ``("like", x, pattern, negate)``, ``("isnull", x, negate)``,
``("and"|"or", a, b)``, ``("not", a)``, ``("neg", a)``, ``("func", name, args)``, ``("star", q)``.
"""

from __future__ import annotations

from typing import Any

from photoz_tools.sdss.standin.lexer import SQLError, _Cursor


class _ExprParser(_Cursor):
    """Recursive descent over one expression, lowest precedence first."""

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
