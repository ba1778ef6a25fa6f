"""pz-query's work as plain functions: :func:`query` (the MGS catalogue, or any SQL) and
:func:`query_frames` (the index of imaging frames for a sky box or a catalogue's footprint).

Large results come in keyset pages (``TOP page_size ... WHERE key > last ORDER BY key``), each
spooled to a resume folder as Parquet (written atomically). A rerun of the same query finds the
folder and asks only for the pages it lacks; the folder is removed once the result is complete.
Nothing partial is returned: a failure raises after the retries, keeping the pages for the rerun.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from photoz_tools.errors import PzError, PzUsageError
from photoz_tools.paths import require_parent_folder
from photoz_tools.sdss import queries as Q
from photoz_tools.sdss.skyserver import DEFAULT_RELEASE, DEFAULT_URL, SkyServer

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

DEFAULT_PAGE_SIZE = 50_000  # rows per request: well inside SkyServer's 500k-row, 10-min limits
MAX_PAGE_SIZE = 500_000  # SkyServer's row limit per query
# rows in one answer beyond which SkyServer drops the rest without a word: an unpaged --sql
# answer that reaches it may be cut short
SQL_ROW_CAP = MAX_PAGE_SIZE
SPOOL_ENV = "PZ_QUERY_SPOOL"  # parent folder of the resume folders (default: user cache)

_INT_COLUMNS = {"specObjID", "objID", "run", "rerun", "camcol", "field", "primtarget", "fieldID"}


def _types(names: Iterable[str]) -> dict[str, pa.DataType]:
    import pyarrow as pa

    return {n: (pa.int64() if n in _INT_COLUMNS else pa.float64()) for n in names}


MGS_COLUMNS = tuple(
    item.rsplit(" AS ", 1)[1] if " AS " in item else item.split(".")[-1]
    for item in Q.mgs_select_list()
)


def default_spool_root() -> Path:
    """Where resume folders live: $PZ_QUERY_SPOOL, else $XDG_CACHE_HOME/photoz-tools/query."""
    if os.environ.get(SPOOL_ENV):
        return Path(os.environ[SPOOL_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "photoz-tools" / "query"


@dataclass
class Part:
    """One keyset-paged query: `build(top, after)` gives the SQL of a page."""

    name: str
    build: Callable[[int | None, int | None], str]
    key: str  # output column holding the paging key (ascending, unique)
    # end only on an empty page: a page cut short (SkyServer's silent row cap, a body cut at a
    # line boundary) then costs one request instead of losing the rows after it
    until_empty: bool = False


class QueryJob:
    """A query split into paged parts, fetched into a spool folder; rerunnable after a failure.

    Use :meth:`run` to fetch (resuming) and get the table, then :meth:`cleanup` once the result
    is safely written.
    """

    def __init__(
        self,
        parts: Sequence[Part] | None,
        client: SkyServer,
        *,
        sql: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        limit: int | None = None,
        types: dict[str, pa.DataType] | None = None,
        units: dict[str, str] | None = None,
        spool: str | os.PathLike | None = None,
        description: str = "",
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            # beyond it SkyServer truncates silently, and a short page reads as the last one
            raise PzUsageError(
                f"--page-size must be within 1..{MAX_PAGE_SIZE:,} (SkyServer "
                "returns at most that many rows per query)"
            )
        if limit is not None and limit < 0:
            raise PzUsageError("--limit must be >= 0")
        self.parts = list(parts or [])
        self.sql = sql
        self.client = client
        self.page_size = page_size
        self.limit = limit
        self.types = types or {}
        self.units = units or {}
        self.description = description
        shown = sql if sql is not None else self.parts[0].build(None, None) if self.parts else ""
        self.shown_sql = shown
        ident = json.dumps(
            {
                "url": client.url,
                "release": client.release,
                "sql": sql,
                "parts": [p.build(page_size, None) for p in self.parts],
                "page_size": page_size,
                "limit": limit,
            },
            sort_keys=True,
        )
        self.key = hashlib.sha256(ident.encode()).hexdigest()
        if spool is not None:
            require_parent_folder(spool, "--spool")
        root = Path(spool) if spool is not None else default_spool_root() / self.key[:20]
        self.spool = root.absolute()
        self.requests = 0  # pages fetched by this run (not counting the resumed ones)

    # spool helpers
    def _prepare(self, fresh: bool, log: Callable[[str], None]) -> None:
        manifest = self.spool / "manifest.json"
        if self.spool.exists() and any(self.spool.iterdir()) and not _is_spool(self.spool):
            raise PzError(
                f"--spool {self.spool}: the folder holds other files, not pz-query's "
                "pages; give a new or empty folder"
            )
        if fresh and self.spool.exists():
            shutil.rmtree(self.spool)
        if manifest.exists():
            try:
                same = json.loads(manifest.read_text()).get("key") == self.key
            except (OSError, ValueError):
                same = False
            if not same:
                log(f"resume folder {self.spool} holds another query: starting afresh")
                shutil.rmtree(self.spool)
        self.spool.mkdir(parents=True, exist_ok=True)
        if not manifest.exists():
            _atomic_write(
                manifest,
                json.dumps(
                    {
                        "format": SPOOL_FORMAT,
                        "key": self.key,
                        "sql": self.shown_sql,
                        "url": self.client.url,
                        "release": self.client.release,
                    }
                ).encode(),
            )

    def _pages(self, part: str) -> list[Path]:
        return sorted(self.spool.glob(f"{part}-p*.parquet"))

    def _save(self, part: str, index: int, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        path = self.spool / f"{part}-p{index:06d}.parquet"
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)

    def _conform(self, table: pa.Table) -> pa.Table:
        import pyarrow as pa

        cols = []
        for name in table.column_names:
            col = table.column(name)
            want = self.types.get(name)
            if want is not None and col.type != want:
                try:
                    col = col.cast(want)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    col = col.cast(pa.float64()) if pa.types.is_integer(want) else col
            cols.append(col)
        return pa.table(cols, names=table.column_names)

    # fetching
    def run(
        self,
        *,
        fresh: bool = False,
        log: Callable[[str], None] | None = None,
        on_rows: Callable[[int], None] | None = None,
    ) -> pa.Table:
        """Fetch what the spool lacks and return the whole result (with units metadata)."""
        self.fetch(fresh=fresh, log=log, on_rows=on_rows)
        return self.read()

    def fetch(
        self,
        *,
        fresh: bool = False,
        log: Callable[[str], None] | None = None,
        on_rows: Callable[[int], None] | None = None,
    ) -> int:
        """Fetch the pages the spool lacks (resuming); returns the total row count."""
        log = log or (lambda msg: None)
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        lock = self.spool.with_name(self.spool.name + ".lock")
        try:
            with _locked(lock):
                self._prepare(fresh, log)
                return self._fetch(log, on_rows)
        finally:
            if not (self.spool.is_dir() and _is_spool(self.spool)):  # nothing of ours to guard
                lock.unlink(missing_ok=True)

    def _fetch(self, log: Callable[[str], None], on_rows: Callable[[int], None] | None) -> int:
        import pyarrow.parquet as pq

        if self.sql is not None:
            done = self.spool / "sql.done"
            if not done.exists():
                self.requests += 1
                answer = self.client.query(self.sql)
                _check_not_capped(self.sql, answer.num_rows)
                self._save("sql", 0, answer)
                done.touch()
            total = pq.read_metadata(self._pages("sql")[0]).num_rows
            if on_rows:
                on_rows(total)
            return total

        total = 0
        for part in self.parts:
            pages = self._pages(part.name)
            total += sum(pq.read_metadata(p).num_rows for p in pages)
        if total and on_rows:
            on_rows(total)
        resumed = total
        for part in self.parts:
            pages = self._pages(part.name)
            if (self.spool / f"{part.name}.done").exists():
                continue
            after = None
            if pages:
                last = pq.read_table(pages[-1], columns=[part.key]).column(part.key)
                after = int(last[-1].as_py()) if len(last) else None
                if after is None:  # an empty page is a final page
                    (self.spool / f"{part.name}.done").touch()
                    continue
            index = len(pages)
            while True:
                top = self.page_size
                if self.limit is not None:
                    top = min(top, self.limit - total)
                    if top <= 0:
                        break
                page = self._conform(self.client.query(part.build(top, after)))
                self.requests += 1
                if part.key not in page.column_names:
                    raise PzError(f"SkyServer's answer lacks the paging column {part.key!r}")
                self._save(part.name, index, page)
                index += 1
                total += page.num_rows
                if on_rows:
                    on_rows(total)
                if page.num_rows == 0 or (page.num_rows < top and not part.until_empty):
                    break
                after = int(page.column(part.key)[-1].as_py())
            (self.spool / f"{part.name}.done").touch()
        if resumed:
            log(f"resumed: {resumed:,} rows were already in {self.spool}")
        return total

    def _page_files(self) -> list[Path]:
        names = ["sql"] if self.sql is not None else [p.name for p in self.parts]
        return [f for n in names for f in self._pages(n)]

    def schema(self) -> pa.Schema:
        """The result's schema: column types, units (field metadata), query metadata."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = self._page_files()
        if files:
            schemas = [self._conform(pq.read_schema(f).empty_table()).schema for f in files]
            schema = pa.unify_schemas(schemas, promote_options="permissive")
        else:
            schema = pa.schema([(n, t) for n, t in self.types.items()])
        fields = [
            f.with_metadata({"unit": self.units[f.name]})
            if f.name in self.units
            else f.remove_metadata()
            for f in schema
        ]
        meta = {
            "pz_sdss_release": str(self.client.release),
            "pz_skyserver_url": self.client.url,
            "pz_query_sql": self.shown_sql,
        }
        if self.description:
            meta["pz_query"] = self.description
        return pa.schema(fields, metadata=meta)

    def iter_tables(self) -> Iterator[pa.Table]:
        """The fetched pages in order, each cast to :meth:`schema` (memory: one page)."""
        import pyarrow.parquet as pq

        schema = self.schema()
        for f in self._page_files():
            page = self._conform(pq.read_table(f))
            if page.num_rows:
                yield page.select(schema.names).cast(schema)

    def read(self) -> pa.Table:
        """The whole fetched result as one table."""
        import pyarrow as pa

        schema = self.schema()
        return pa.Table.from_batches(
            [b for t in self.iter_tables() for b in t.to_batches()], schema=schema
        )

    def cleanup(self) -> None:
        """Remove the spool folder (call once the result is safely written)."""
        if self.spool.exists() and _is_spool(self.spool):
            shutil.rmtree(self.spool, ignore_errors=True)
        self.spool.with_name(self.spool.name + ".lock").unlink(missing_ok=True)


SPOOL_FORMAT = "pz-query-spool-1"
_SPOOL_FILE = re.compile(r"(manifest\.json(\.tmp)?|\w+\.done|\w+-p\d{6}\.(parquet|tmp))\Z")


def _is_spool(folder: Path) -> bool:
    """Whether `folder` holds only a pz-query resume folder's files (safe to remove)."""
    names = [p.name for p in folder.iterdir()]
    if not all(_SPOOL_FILE.match(n) for n in names):
        return False
    if "manifest.json" not in names:
        return True  # pages but no manifest yet (killed between the two): ours by their names
    try:
        return json.loads((folder / "manifest.json").read_text()).get("format") == SPOOL_FORMAT
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock beside the spool: two runs of one query must not fill it at once."""
    import fcntl

    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise PzError(
                f"another pz-query is fetching this query into {path.with_suffix('')};"
                " wait for it, or give --spool another folder"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_SQL_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_SQL_TOP = re.compile(
    r"\s*SELECT\s+(?:ALL\s+|DISTINCT\s+)?TOP\s*(?:\(\s*(\d+)\s*\)|(\d+)\b)(?!\s*PERCENT)", re.I
)


def _asked_top(sql: str) -> int | None:
    """n of a query that starts ``SELECT [DISTINCT] TOP n`` (comments skipped), else None."""
    m = _SQL_TOP.match(_SQL_COMMENT.sub(" ", sql))
    return int(m.group(1) or m.group(2)) if m else None


def _check_not_capped(sql: str, rows: int) -> None:
    """An unpaged --sql answer that reaches SkyServer's row cap may have lost rows silently:
    refuse it, unless the query itself asked for at most that many (``SELECT TOP n``)."""
    cap = SQL_ROW_CAP
    top = _asked_top(sql)
    if rows < cap or (top is not None and top <= cap):
        return
    raise PzError(
        f"--sql: the answer has {rows:,} rows, SkyServer's limit for one query, so rows may be "
        "missing (it cuts answers there without a word); split the query into parts under the "
        "limit with a WHERE range (e.g. specObjID BETWEEN a AND b, or on ra) and run each, or "
        "use the default MGS query, which pages"
    )


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _as_box(box: Any) -> Q.Box | None:
    if box is None or isinstance(box, Q.Box):
        return box
    try:
        return Q.Box.parse(box) if isinstance(box, str) else Q.Box(*map(float, box))
    except (TypeError, ValueError) as exc:
        raise PzUsageError(str(exc)) from None


def _client(
    url: str | None,
    release: int,
    timeout: float,
    retries: int,
    backoff: float,
    log: Callable[[str], None] | None,
) -> SkyServer:
    return SkyServer(
        url=url or os.environ.get("PZ_SKYSERVER_URL") or DEFAULT_URL,
        release=release,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
        log=log,
    )


def plan_query(
    sql: str | None = None,
    *,
    release: int = DEFAULT_RELEASE,
    url: str | None = None,
    r_max: float | None = 17.8,
    r_min: float | None = None,
    z_min: float | None = 0.0,
    z_max: float | None = 0.4,
    primtarget_min: int | None = 64,
    where: str | Sequence[str] | None = None,
    box: Any = None,
    limit: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 300.0,
    spool: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> QueryJob:
    """The :class:`QueryJob` behind :func:`query` (the CLI runs it, writes, then cleans up)."""
    client = _client(url, release, timeout, retries, backoff, log)
    if sql is not None:
        return QueryJob(
            None, client, sql=sql, spool=spool, units=_units_for_any(), description="sql"
        )
    wheres = (where,) if isinstance(where, str) else tuple(where or ())
    cuts = Q.MgsCuts(
        r_max=r_max,
        r_min=r_min,
        z_min=z_min,
        z_max=z_max,
        primtarget_min=primtarget_min,
        where=wheres,
    )
    skybox = _as_box(box)
    part = Part(
        "mgs", lambda top, after: Q.mgs_sql(cuts, skybox, top, after), "specObjID", until_empty=True
    )
    return QueryJob(
        [part],
        client,
        page_size=page_size,
        limit=limit,
        types=_types(MGS_COLUMNS),
        units=Q.MGS_UNITS,
        spool=spool,
        description="mgs",
    )


def _units_for_any() -> dict[str, str]:
    return {**Q.MGS_UNITS, **Q.FRAMES_UNITS}


def query(
    sql: str | None = None,
    *,
    release: int = DEFAULT_RELEASE,
    url: str | None = None,
    r_max: float | None = 17.8,
    r_min: float | None = None,
    z_min: float | None = 0.0,
    z_max: float | None = 0.4,
    primtarget_min: int | None = 64,
    where: str | Sequence[str] | None = None,
    box: Any = None,
    limit: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 300.0,
    spool: str | os.PathLike | None = None,
    fresh: bool = False,
    keep_spool: bool = False,
    log: Callable[[str], None] | None = None,
) -> pa.Table:
    """The SDSS Main Galaxy Sample of Pasquet et al. 2019 (or any `sql`) as an Arrow table.

    Parameters
    ----------
    sql : run this SQL as it is (one request, no paging) instead of the MGS selection; an
        answer of SkyServer's row cap (500,000 rows, SQL_ROW_CAP) or more is refused as
        possibly cut short, unless the query asks for at most that many (SELECT TOP n)
    release : SDSS data release (DR12 by default, the paper's)
    url : SkyServer base URL (default $PZ_SKYSERVER_URL or https://skyserver.sdss.org)
    r_max, r_min, z_min, z_max, primtarget_min : the MGS cuts (None drops a cut);
        z > z_min is strict, as the paper's z > 0
    where : extra SQL condition(s) on the aliases s (SpecObjAll), p (PhotoObjAll), pz (Photoz),
        g (galSpecInfo)
    box : sky box (ra_min, ra_max, dec_min, dec_max) in degrees, a "a,b,c,d" string or a Box;
        ra_min > ra_max wraps through RA = 0
    limit : at most this many rows (the lowest specObjIDs)
    page_size : rows per request; retries, backoff, timeout : see SkyServer
    spool : the resume folder (default: in the user cache, named by the query's hash)
    fresh : ignore pages spooled by an earlier, interrupted run
    """
    job = plan_query(
        sql,
        release=release,
        url=url,
        r_max=r_max,
        r_min=r_min,
        z_min=z_min,
        z_max=z_max,
        primtarget_min=primtarget_min,
        where=where,
        box=box,
        limit=limit,
        page_size=page_size,
        retries=retries,
        backoff=backoff,
        timeout=timeout,
        spool=spool,
        log=log,
    )
    table = job.run(fresh=fresh, log=log)
    if not keep_spool:
        job.cleanup()
    return table


# --------------------------------------------------------------------------- frames


def cover_cells(ra: np.ndarray, dec: np.ndarray, cell: float) -> set[tuple[int, int]]:
    """The (dec row, ra column) cells of size `cell` degrees holding at least one position."""
    import numpy as np

    ra = np.mod(np.asarray(ra, dtype=float), 360.0)
    dec = np.asarray(dec, dtype=float)
    ok = np.isfinite(ra) & np.isfinite(dec)
    i = np.floor((dec[ok] + 90.0) / cell).astype(np.int64)
    j = np.floor(ra[ok] / cell).astype(np.int64)
    return set(zip(i.tolist(), j.tolist(), strict=True))


def boxes_from_cells(cells: Iterable[tuple[int, int]], cell: float, margin: float) -> list[Q.Box]:
    """Sky boxes covering the cells: consecutive cells of a dec row merged, grown by `margin`."""
    rows: dict[int, list[int]] = {}
    for i, j in cells:
        rows.setdefault(i, []).append(j)
    ncol = math.ceil(360.0 / cell)
    boxes = []
    for i in sorted(rows):
        cols = sorted(set(rows[i]))
        runs: list[list[int]] = []
        for j in cols:
            if runs and j == runs[-1][1] + 1:
                runs[-1][1] = j
            else:
                runs.append([j, j])
        if len(runs) > 1 and runs[0][0] == 0 and runs[-1][1] == ncol - 1:  # across RA = 0
            first = runs.pop(0)
            runs[-1] = [runs[-1][0], first[1] + ncol]
        dec_lo = max(-90.0, i * cell - 90.0)
        dec_hi = min(90.0, (i + 1) * cell - 90.0)
        for a, b in runs:
            if b >= ncol:  # runs on past RA = 360: a box that wraps
                box = Q.Box(a * cell, (b - ncol + 1) * cell, dec_lo, dec_hi)
            else:
                box = Q.Box(a * cell, min((b + 1) * cell, 360.0), dec_lo, dec_hi)
            boxes.append(box.padded(margin) if margin > 0 else box)
    return boxes


FRAMES_DOC = """Frame index columns (one row per imaging field, every epoch):
fieldID (SkyServer's Field.fieldID), run, rerun, camcol, field: the frame is
frames/RERUN/RUN/CAMCOL/frame-BAND-RUN6-CAMCOL-FIELD4.fits.bz2 on the SAS, for each of ugriz;
ra_min, ra_max, dec_min, dec_max (deg): the field's bounding box (Field.raMin ... decMax),
ra_min > ra_max for a field across RA = 0."""


def plan_frames(
    box: Any = None,
    *,
    boxes: Sequence[Q.Box] | None = None,
    release: int = DEFAULT_RELEASE,
    url: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 300.0,
    spool: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> QueryJob:
    """The :class:`QueryJob` behind :func:`query_frames` (one paged part per sky box)."""
    client = _client(url, release, timeout, retries, backoff, log)
    if boxes is None:
        boxes = [_as_box(box)] if box is not None else [None]  # type: ignore[list-item]
    parts = [
        Part(f"box{k:05d}", (lambda top, after, b=b: Q.frames_sql(b, top, after)), "fieldID")
        for k, b in enumerate(boxes)
    ]
    return QueryJob(
        parts,
        client,
        page_size=page_size,
        types=_types(Q.FRAMES_COLUMNS),
        units=Q.FRAMES_UNITS,
        spool=spool,
        description="frames",
    )


def unique_frames(table: pa.Table) -> pa.Table:
    """One row per fieldID (boxes overlap), sorted by run, camcol, field."""
    import numpy as np
    import pyarrow as pa

    if table.num_rows == 0:
        return table
    fid = table.column("fieldID").to_numpy()
    _, first = np.unique(fid, return_index=True)
    table = table.take(pa.array(np.sort(first)))
    order = np.lexsort([table.column(c).to_numpy() for c in ("field", "camcol", "rerun", "run")])
    return table.take(pa.array(order))


def query_frames(
    box: Any = None,
    *,
    ra: Any = None,
    dec: Any = None,
    cell: float = 1.0,
    margin_arcsec: float = 60.0,
    release: int = DEFAULT_RELEASE,
    url: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    retries: int = 5,
    backoff: float = 2.0,
    timeout: float = 300.0,
    spool: str | os.PathLike | None = None,
    fresh: bool = False,
    keep_spool: bool = False,
    log: Callable[[str], None] | None = None,
) -> pa.Table:
    """The frame index for a sky `box`, or for the sky covered by positions `ra`, `dec` (deg).

    Positions are gathered into `cell`-degree cells, merged into boxes per declination row and
    grown by `margin_arcsec` (at least a cutout's half-width), so every frame that can overlap a
    cutout around one of them is listed. All epochs are kept (Stripe 82's ~80 runs included).
    """
    boxes = None
    if ra is not None or dec is not None:
        if box is not None:
            raise PzUsageError("give either a sky box or positions, not both")
        boxes = boxes_from_cells(cover_cells(ra, dec, cell), cell, margin_arcsec / 3600.0)
        if not boxes:
            raise PzError("no finite ra/dec positions to cover")
    job = plan_frames(
        box,
        boxes=boxes,
        release=release,
        url=url,
        page_size=page_size,
        retries=retries,
        backoff=backoff,
        timeout=timeout,
        spool=spool,
        log=log,
    )
    table = unique_frames(job.run(fresh=fresh, log=log))
    if not keep_spool:
        job.cleanup()
    return table
