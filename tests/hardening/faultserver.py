"""A fault-injecting HTTP proxy on 127.0.0.1, in front of the SkyServer/SAS stand-in.

Real sockets only: the clients under test (requests via astroquery, urllib) see the same bytes
a broken server or a broken network would send them. Each request takes the next fault from a
queue; once the queue is empty, requests are forwarded to the upstream server unchanged.

Faults: ``slow`` (headers, then one body byte every `trickle` seconds, for ever), ``reset``
(a TCP RST before any answer), ``http500``/``http503``, ``truncated`` (the upstream answer with
its full Content-Length but half its body), ``html200`` (an HTML error page with status 200),
``hang`` (read the request, never answer), ``garbage`` (bytes that are not HTTP), ``badlength``
(a Content-Length that is not a number).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections import deque

FAULTS = (
    "slow",
    "reset",
    "http500",
    "http503",
    "truncated",
    "html200",
    "hang",
    "garbage",
    "badlength",
)
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Server Error</title></head>"
    b"<body><h1>Server Error in '/' Application.</h1><p>Timeout expired.</p></body></html>"
)


class FaultProxy:
    """`with FaultProxy(upstream_url) as p: p.queue("reset", "slow"); ... p.url ...`"""

    def __init__(self, upstream: str, trickle: float = 0.5) -> None:
        self.upstream = upstream.rstrip("/")
        self.trickle = trickle
        self.faults: deque[str] = deque()
        self.log: list[tuple[str, str]] = []  # (fault or "pass", request path)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def queue(self, *faults: str) -> None:
        """Let the next requests meet these faults, in order."""
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}")
        with self._lock:
            self.faults.extend(faults)

    def __enter__(self) -> FaultProxy:
        t = threading.Thread(target=self._serve, daemon=True, name=f"faultproxy:{self.port}")
        t.start()
        self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _next(self) -> str:
        with self._lock:
            return self.faults.popleft() if self.faults else "pass"

    def _handle(self, conn: socket.socket) -> None:
        """Answer one request (no keep-alive: every request opens its own connection)."""
        try:
            path = _read_request(conn)
            fault = self._next()
            self.log.append((fault, path))
            getattr(self, f"_{fault}")(conn, path)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    # ---- the answers
    def _pass(self, conn: socket.socket, path: str) -> None:
        status, ctype, body = self._fetch(path)
        _send(conn, status, ctype, body)

    def _fetch(self, path: str) -> tuple[int, str, bytes]:
        try:
            with urllib.request.urlopen(self.upstream + path, timeout=30) as r:
                return r.status, r.headers.get("Content-Type", "text/plain"), r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers.get("Content-Type", "text/plain"), exc.read()

    def _slow(self, conn: socket.socket, path: str) -> None:
        status, ctype, body = self._fetch(path)
        conn.sendall(_head(status, ctype, len(body)))
        for byte in body:
            if self._stop.wait(self.trickle):
                return
            conn.sendall(bytes([byte]))

    def _reset(self, conn: socket.socket, path: str) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _http500(self, conn: socket.socket, path: str) -> None:
        _send(conn, 500, "text/html", HTML_PAGE)

    def _http503(self, conn: socket.socket, path: str) -> None:
        _send(conn, 503, "text/plain", b"Service Unavailable")

    def _truncated(self, conn: socket.socket, path: str) -> None:
        status, ctype, body = self._fetch(path)
        conn.sendall(_head(status, ctype, len(body)) + body[: len(body) // 2])

    def _html200(self, conn: socket.socket, path: str) -> None:
        _send(conn, 200, "text/html", HTML_PAGE)

    def _hang(self, conn: socket.socket, path: str) -> None:
        self._stop.wait(3600)

    def _garbage(self, conn: socket.socket, path: str) -> None:
        conn.sendall(b"\x00\xffNOT HTTP AT ALL\r\n\r\n" * 4)

    def _badlength(self, conn: socket.socket, path: str) -> None:
        status, ctype, body = self._fetch(path)
        head = _head(status, ctype, len(body)).replace(
            f"Content-Length: {len(body)}".encode(), b"Content-Length: lots"
        )
        conn.sendall(head + body)


def _read_request(conn: socket.socket) -> str:
    """The request line's path (the headers are read and dropped)."""
    conn.settimeout(10)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    line = buf.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    return parts[1] if len(parts) > 1 else "/"


def _head(status: int, ctype: str, length: int) -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {length}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def _send(conn: socket.socket, status: int, ctype: str, body: bytes) -> None:
    conn.sendall(_head(status, ctype, len(body)) + body)


def elapsed(fn, *args, **kwargs) -> tuple[float, object]:
    """(seconds, result or the exception raised) of fn(*args, **kwargs)."""
    t0 = time.monotonic()
    try:
        out: object = fn(*args, **kwargs)
    except Exception as exc:  # the tests classify it
        out = exc
    return time.monotonic() - t0, out
