"""The stand-in's SQL tokens: SkyServer's error type, the tokenizer and a token cursor."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


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


class _Cursor:
    """Walks the tokens of one statement: look ahead, match keywords and operators, consume."""

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
