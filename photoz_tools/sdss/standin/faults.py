"""Faults the stand-in can answer with, as SkyServer and the SAS fail in practice: error
statuses, HTML error pages with status 200, dropped or hung connections, truncated bodies and
silently short tables. They queue up in the order injected (see :meth:`StandIn.inject`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from photoz_tools.sdss.standin.handler import (
    HTML_500,
    HTML_ERROR,
    RequestRecord,
    _Handler,
    hang_up,
    send,
)

FAULT_KINDS = ("http500", "html200", "error200", "drop", "hang", "truncate", "short")

_DEFAULT_MESSAGE = {
    "html200": "The server is too busy to process your query right now.",
    "error200": "Error: Incorrect syntax near 'FORM'.",
}


@dataclass
class _Fault:
    kind: str
    remaining: int
    target: str
    status: int = 500
    message: str = ""
    hang: float = 5.0
    after: int = 0  # matching requests to let through first


class FaultQueue:
    """The faults waiting for requests (thread-safe): added in order, taken by target."""

    def __init__(self) -> None:
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()

    def add(
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
        """Queue a fault (the arguments of :meth:`StandIn.inject`); ValueError for a bad one."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULT_KINDS)}")
        if target is None:
            target = "sas" if kind == "truncate" else "sql"
        if target not in ("sql", "sas", "any"):
            raise ValueError("target must be 'sql', 'sas' or 'any'")
        with self._lock:
            self._faults.append(
                _Fault(
                    kind,
                    int(count),
                    target,
                    status,
                    message or _DEFAULT_MESSAGE.get(kind, ""),
                    hang,
                    int(after),
                )
            )

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(f.remaining for f in self._faults)

    def take(self, target: str) -> _Fault | None:
        """The fault that answers the next request to `target`, or None (answer normally)."""
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


def apply_fault(
    h: _Handler, f: _Fault, rec: RequestRecord, method: str, closing: threading.Event
) -> bool:
    """Answer with the fault; False when the fault only acts on the body (truncate, short).

    A hang waits `f.hang` seconds, or until `closing` is set (the stand-in closes)."""
    if f.kind == "http500":
        body = HTML_500.encode() if f.status >= 500 else b"<html><body>error</body></html>"
        send(h, f.status, body, "text/html", rec, method)
    elif f.kind == "html200":
        send(
            h,
            200,
            HTML_ERROR.format(message=f.message).encode(),
            "text/html; charset=utf-8",
            rec,
            method,
        )
    elif f.kind == "error200":
        send(h, 200, (f.message + "\n").encode(), "text/plain; charset=utf-8", rec, method)
    elif f.kind in ("drop", "hang"):
        if f.kind == "hang":
            closing.wait(f.hang)
        hang_up(h)
    elif f.kind in ("truncate", "short"):
        rec.extra[f.kind] = True
        return False
    return True
