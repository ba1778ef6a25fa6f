"""The stand-in itself: SkyServer + SAS on a local port in a background thread, and ``serve``
for ``pz-mock serve DIR``."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from photoz_tools.sdss.standin.answers import answer_file, answer_sql
from photoz_tools.sdss.standin.catalog import Dataset
from photoz_tools.sdss.standin.faults import FaultQueue, apply_fault
from photoz_tools.sdss.standin.frame_files import frame_index_from_files
from photoz_tools.sdss.standin.handler import SQL_PATH, RequestRecord, _Handler, _Server


class StandIn:
    """SkyServer + SAS on 127.0.0.1 in a background thread (a context manager).

    Parameters
    ----------
    catalog : the rows SQL queries run over (pyarrow or astropy table, dict of arrays, or a
        FITS/Parquet/CSV path); see the package docstring for its column names
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
        self._faults = FaultQueue()
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
        self._faults.add(
            kind, count, target=target, status=status, message=message, hang=hang, after=after
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def pending_faults(self) -> int:
        return self._faults.pending

    # request handling
    def _handle(self, h: _Handler, method: str) -> None:
        parsed = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(parsed.path)
        params = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        if method == "POST":
            length = int(h.headers.get("Content-Length") or 0)
            body = h.rfile.read(length).decode("utf-8", "replace")
            params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
        is_sql = SQL_PATH.match(path) is not None
        rec = RequestRecord(
            method, h.path, "sql" if is_sql else "sas", sql=params.get("cmd") if is_sql else None
        )
        with self._lock:
            self.requests.append(rec)
        if self.latency:
            time.sleep(self.latency)
        fault = self._faults.take(rec.target)
        if fault is not None:
            rec.fault = fault.kind
            if apply_fault(h, fault, rec, method, self._closing):
                return
        if is_sql:
            answer_sql(h, self.data, self.max_rows, params, rec, method)
        else:
            answer_file(h, self.sas_root, path, rec, method)


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
