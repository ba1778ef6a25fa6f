"""A SkyServer SQL client: astroquery's ``SDSS.query_sql`` with its known gaps wrapped.

astroquery 0.4.x, as used here:

- does not retry HTTP 5xx, timeouts or dropped connections: :class:`SkyServer` retries them with
  exponential backoff (``retries``, ``backoff``, ``max_backoff``);
- turns an HTML page served with status 200 (SkyServer's error pages) into a one-column
  "table", and SkyServer's plain-text ``Error: ...`` answer into an empty result: every body is
  checked before it is parsed, and such answers are retried, then reported;
- bounds each socket read by its timeout but not the answer: a server that trickles its body
  would hold a query for ever; the body is read here against a deadline of `timeout` seconds;
- caches every response on disk by default, so a bad answer would be served again: requests go
  with ``cache=False`` (resuming is done by pz-query's own page spool);
- strips ``--`` comments by cutting every line at its first ``--`` (even inside a string
  literal) and joins lines: the SQL is stripped correctly here first
  (:func:`~photoz_tools.sdss.queries.strip_sql_comments`);
- fixes its default data release at import: the release is always passed explicitly.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from photoz_tools.errors import PzError
from photoz_tools.sdss.queries import strip_sql_comments

if TYPE_CHECKING:
    import pyarrow as pa

DEFAULT_URL = "https://skyserver.sdss.org"
DEFAULT_RELEASE = 12
ID_COLUMNS = ("objid", "specobjid", "bestobjid", "fieldid")

_HEADER_LINE = re.compile(r"^[A-Za-z_][\w]*(,[A-Za-z_][\w]*)*$")


class SkyServerError(PzError):
    """SkyServer did not answer with a table (after the allowed retries)."""


class _Retryable(Exception):
    """One failed attempt that may succeed when repeated (`answer`: SkyServer said why)."""

    def __init__(self, message: str, answer: bool = False) -> None:
        super().__init__(message)
        self.answer = answer


def check_body(text: str, content_type: str = "") -> None:
    """Raise _Retryable when a status-200 body is not a SkyServer CSV table.

    A table starts with ``#Table1`` (or directly with its header line). SkyServer reports SQL
    errors and overload as HTML pages or as ``Error: ...`` text, both with status 200.
    """
    head = text.lstrip("\ufeff \t\r\n")
    first = head.split("\n", 1)[0].strip()
    is_html = head[:1] == "<" or ("html" in content_type.lower() and not first.startswith("#"))
    if is_html:  # the body decides: SkyServer may label its CSV text/html
        body = re.sub(r"(?is)<(head|script|style)[^>]*>.*?</\1>", " ", head)
        words = " ".join(re.sub(r"<[^>]+>", " ", body).split())
        if not words:
            title = re.search(r"(?is)<title[^>]*>(.*?)</title>", head)
            words = " ".join(title.group(1).split()) if title else "no text"
        raise _Retryable(f"an HTML page instead of a table ({words[:150]})")
    if first.startswith("#Table") or _HEADER_LINE.match(first):
        lines = head.split("\n", 2)
        header = (
            first
            if not first.startswith("#Table")
            else (lines[1].strip() if len(lines) > 1 else "")
        )
        if "error_message" in head[:2000] or header.lower() in ("error", "errors"):
            raise _Retryable("an error message: " + " ".join(head[:200].split()), answer=True)
        return
    if not head:
        raise _Retryable("an empty answer")
    raise _Retryable("an error message: " + " ".join(first.split())[:200], answer=True)


def _astropy_to_arrow(table) -> pa.Table:
    """An astropy table from astroquery as Arrow; id columns as int64, masks as nulls."""
    import numpy as np
    import pyarrow as pa

    arrays = {}
    for name in table.colnames:
        col = table[name]
        data = np.asarray(col)
        mask = np.asarray(col.mask) if hasattr(col, "mask") and col.mask is not np.False_ else None
        if name.lower() in ID_COLUMNS and data.dtype.kind in "uif":
            if data.dtype.kind == "f":
                data = data.astype(np.float64)
            if data.dtype.kind != "u" or (data.size == 0 or data.max() < 2**63):
                data = data.astype(np.int64)
        if data.dtype.kind == "U":
            arr = pa.array(data.tolist(), type=pa.string(), mask=mask)
        else:
            arr = pa.array(data, mask=mask if mask is not None and mask.any() else None)
        arrays[name] = arr
    return pa.table(arrays)


class SkyServer:
    """SQL queries on SkyServer (or anything that answers like it, e.g. the stand-in).

    Parameters
    ----------
    url : base URL, e.g. https://skyserver.sdss.org (astroquery appends /drNN/en/tools/...)
    release : SDSS data release (default DR12, the paper's)
    timeout : seconds for the connection, for each read, and for the whole answer of one attempt
    retries : further attempts after a failed one (timeouts, 5xx, dropped connections,
        error pages); backoff doubles from `backoff` seconds up to `max_backoff`
    log : called with a one-line message before each retry
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        release: int = DEFAULT_RELEASE,
        timeout: float = 300.0,
        retries: int = 5,
        backoff: float = 2.0,
        max_backoff: float = 120.0,
        log: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.url = url.rstrip("/")
        self.release = int(release)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.log = log or (lambda msg: None)
        self.sleep = sleep
        self.requests_made = 0

    @property
    def query_url(self) -> str:
        """The endpoint astroquery will call for this release (for messages)."""
        from astroquery.sdss import SDSS, conf

        with conf.set_temp("skyserver_baseurl", self.url):
            return SDSS._get_query_url(self.release)

    def _attempt(self, sql: str) -> pa.Table:
        import requests
        from astroquery.sdss import SDSS, conf

        self.requests_made += 1
        deadline = time.monotonic() + self.timeout
        try:
            with conf.set_temp("skyserver_baseurl", self.url):
                payload = SDSS.query_sql_async(
                    sql, data_release=self.release, get_query_payload=True
                )
                url = SDSS._get_query_url(self.release)
            # streamed, so a server that trickles its answer cannot outlast the deadline
            response = SDSS._request(
                "GET", url, params=payload, timeout=self.timeout, cache=False, stream=True
            )
            status = response.status_code
            if status >= 400:
                response.close()
            if status >= 500 or status in (408, 429):
                raise _Retryable(f"HTTP {status} {response.reason or ''}".strip())
            if status >= 400:
                raise SkyServerError(
                    f"SkyServer answered HTTP {status} {response.reason or ''} at {response.url}:"
                    " check --url and --release"
                )
            response._content = _read_within(response, deadline, self.timeout)
            text = response.text
        except requests.exceptions.Timeout:
            raise _Retryable(f"no answer within {self.timeout:g} s (timeout)") from None
        except requests.exceptions.ConnectionError as exc:
            text = str(exc)
            reason = (
                "connection refused"
                if "refused" in text.lower()
                else "connection dropped"
                if "Aborted" in text or "closed" in text
                else "connection failed"
            )
            raise _Retryable(f"{reason} ({type(exc).__name__})") from None
        except requests.exceptions.RequestException as exc:  # ChunkedEncodingError, ...
            raise _Retryable(f"broken answer ({type(exc).__name__}: {exc})") from None
        check_body(text, response.headers.get("Content-Type", ""))
        try:
            table = SDSS._parse_result(response)
        except Exception as exc:  # a body that looked like a table but is not
            raise _Retryable(f"an unreadable table ({type(exc).__name__}: {exc})") from None
        if table is None:  # astroquery's "no rows": keep the header's columns
            return _empty_from_header(text)
        return _astropy_to_arrow(table)

    def query(self, sql: str) -> pa.Table:
        """Run `sql` and return its rows as an Arrow table; SkyServerError after all retries."""
        try:
            clean = strip_sql_comments(sql)
        except ValueError as exc:
            raise SkyServerError(f"the SQL is malformed: {exc}") from None
        if not clean:
            raise SkyServerError("the SQL is empty (only comments?)")
        from urllib.parse import quote_plus

        if len(quote_plus(clean)) > 1900:  # astroquery sends it in the URL
            self.log(
                f"the SQL takes {len(quote_plus(clean))} bytes in the URL; servers may "
                "refuse query strings over 2048 bytes (HTTP 404/414): shorten it"
            )
        last = ""
        answer = False
        for attempt in range(self.retries + 1):
            try:
                return self._attempt(clean)
            except _Retryable as exc:
                last, answer = str(exc), exc.answer
                if attempt == self.retries:
                    break
                wait = min(self.max_backoff, self.backoff * 2**attempt)
                wait *= 1.0 + 0.1 * random.random()
                self.log(f"SkyServer: {last}; retry {attempt + 1}/{self.retries} in {wait:.3g} s")
                self.sleep(wait)
        n = self.retries + 1
        hint = (
            "check the SQL (or retry later if SkyServer is overloaded)"
            if answer
            else "try again later or raise --retries/--timeout"
        )
        raise SkyServerError(
            f"SkyServer query failed after {n} attempt{'s' if n > 1 else ''}, last with {last} "
            f"from {self.url} (DR{self.release}): {hint}"
        )


def _read_within(response, deadline: float, timeout: float, chunk: int = 1 << 16) -> bytes:
    """The whole body, or _Retryable once `deadline` passes.

    requests' timeout bounds each socket read, not the answer: a server that sends a byte every
    few seconds would otherwise hold pz-query for ever.
    """
    from urllib3.exceptions import HTTPError as Urllib3Error

    parts = []
    try:
        while block := response.raw.read1(chunk, decode_content=True):
            parts.append(block)
            if time.monotonic() > deadline:
                raise _Retryable(f"no complete answer within {timeout:g} s (a trickle)")
    except Urllib3Error as exc:  # a body cut short, a reset mid-body
        raise _Retryable(f"broken answer ({type(exc).__name__})") from None
    finally:
        response.close()
    return b"".join(parts)


def _empty_from_header(text: str) -> pa.Table:
    """A zero-row table with the header's column names (all float64: their type is unknown)."""
    import pyarrow as pa

    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    names = lines[0].split(",") if lines else []
    return pa.table({n: pa.array([], type=pa.float64()) for n in names})
