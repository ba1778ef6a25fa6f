"""The stand-in's normal answers: SQL over the catalogue (CSV or FITS, SkyServer's error text for
a query it cannot run) and SAS files (Content-Length, HEAD, byte ranges, never outside the root)."""

from __future__ import annotations

import re
from pathlib import Path

from photoz_tools.sdss.standin.catalog import Dataset
from photoz_tools.sdss.standin.evaluate import run_select
from photoz_tools.sdss.standin.formats import to_csv, to_fits
from photoz_tools.sdss.standin.handler import HTML_500, HTML_ERROR, RequestRecord, _Handler, send
from photoz_tools.sdss.standin.lexer import SQLError
from photoz_tools.sdss.standin.parser import parse_sql


def answer_sql(
    h: _Handler,
    data: Dataset,
    max_rows: int | None,
    params: dict[str, str],
    rec: RequestRecord,
    method: str,
) -> None:
    """Run the query in ``params["cmd"]`` and send the table (``format``: csv or fits)."""
    sql = params.get("cmd", "")
    fmt = params.get("format", "html").lower()
    truncate = bool(rec.extra.get("truncate"))
    try:
        if not sql.strip():
            raise SQLError("the query is empty.")
        cols = run_select(data, parse_sql(sql), max_rows)
        if rec.extra.get("short"):
            cols = {k: v[: len(v) // 2] for k, v in cols.items()}
    except SQLError as exc:
        msg = str(exc)
        if fmt == "csv":
            send(h, 200, f"Error: {msg}\n".encode(), "text/plain; charset=utf-8", rec, method)
        else:
            send(h, 200, HTML_ERROR.format(message=msg).encode(), "text/html", rec, method)
        return
    except Exception as exc:  # a stand-in bug: answer as SkyServer would, keep serving
        send(h, 500, HTML_500.encode() + repr(exc).encode(), "text/html", rec, method)
        return
    if fmt == "fits":
        send(h, 200, to_fits(cols), "application/fits", rec, method, truncate=truncate)
    else:
        send(
            h,
            200,
            to_csv(cols).encode(),
            "text/plain; charset=utf-8",
            rec,
            method,
            truncate=truncate,
        )


def resolve_file(sas_root: Path | None, path: str) -> Path | None:
    """The file under `sas_root` that a SAS URL path names, or None."""
    if sas_root is None:
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
        candidate = sas_root.joinpath(*parts)
        if candidate.is_file():
            return candidate
    return None


def answer_file(
    h: _Handler, sas_root: Path | None, path: str, rec: RequestRecord, method: str
) -> None:
    """Send the SAS file at `path` (206 for a byte range, 416 past the end, 404 if none)."""
    file = resolve_file(sas_root, path)
    if file is None:
        send(h, 404, b"<html><body><h1>Not Found</h1></body></html>\n", "text/html", rec, method)
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
            send(
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
        send(
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
    send(
        h,
        200,
        data,
        ctype,
        rec,
        method,
        headers=headers,
        truncate=bool(rec.extra.get("truncate")),
    )
