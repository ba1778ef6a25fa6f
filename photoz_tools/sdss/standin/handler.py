"""The stand-in's HTTP plumbing: the request handler, the threaded server, the request record
tests read, IIS's error pages and the one function that sends an answer (whole or cut short)."""

from __future__ import annotations

import contextlib
import http.server
import re
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from photoz_tools.sdss.standin.server import StandIn

HTML_ERROR = (
    "<!DOCTYPE html>\n<html><head><title>SkyServer: SQL Search</title></head>\n"
    "<body><h1>Error</h1>\n<p>{message}</p>\n</body></html>\n"
)
HTML_500 = (
    "<!DOCTYPE html>\n<html><head><title>500 - Internal server error.</title></head>"
    "\n<body><h2>500 - Internal server error.</h2>\n<h3>There is a problem with the "
    "resource you are looking for, and it cannot be displayed.</h3></body></html>\n"
)

# what a client dropping its connection raises in the thread answering it
_DROPPED = (ConnectionError, TimeoutError)

SQL_PATH = re.compile(
    r"^/dr(\d+)/en/tools/search/(x_results\.aspx|x_sql\.aspx|x_sql\.asp)$"
    r"|^/dr(\d+)/SkyServerWS/SearchTools/SqlSearch$",
    re.I,
)


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


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"  # as SkyServer announces itself
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests
        pass

    def handle(self) -> None:
        """Serve the connection; a client that drops it mid-request (reset, closed while the
        answer is written: a killed pz-query) ends it quietly, with no traceback."""
        try:
            super().handle()
        except _DROPPED:
            self.close_connection = True

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

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone mid-request is not the server's error: nothing printed (socketserver
        prints a traceback); anything else is still reported."""
        import sys

        if isinstance(sys.exc_info()[1], _DROPPED):
            return
        super().handle_error(request, client_address)


def hang_up(h: _Handler) -> None:
    """Close the connection now, without (more of) an answer."""
    h.close_connection = True
    with contextlib.suppress(OSError):
        h.connection.shutdown(socket.SHUT_RDWR)


def send(
    h: _Handler,
    status: int,
    body: bytes,
    ctype: str,
    rec: RequestRecord,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    truncate: bool = False,
) -> None:
    """Answer with `body` (none for HEAD); `truncate` sends half of it, then hangs up."""
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
        hang_up(h)
