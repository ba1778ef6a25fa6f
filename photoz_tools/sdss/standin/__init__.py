"""A local stand-in for SkyServer and the SAS: tests and pz-mock talk to it instead of the internet.

It answers at the paths astroquery calls
(``/drNN/en/tools/search/x_results.aspx?cmd=SQL&format=csv``
for DR11+, ``x_sql.aspx`` for DR10, ``x_sql.asp`` before) with CSV like SkyServer's (first line
``#Table1``, then the header and the rows) or FITS (``format=fits``), by evaluating the SQL over an
in-memory catalogue: the toolkit's own queries (the MGS selection with its cuts, ``TOP n``, keyset
paging, ``ORDER BY``, sky boxes, the Field-table frames query) and simple hand-written ones
(arithmetic, comparisons, AND/OR/NOT, BETWEEN, IN, IS NULL, a few functions, COUNT/MIN/MAX).
Joins are not computed: the catalogue is taken as already joined, and each SkyServer table of
the FROM clause (SpecObjAll, PhotoObjAll, Photoz, galSpecInfo, ...) is a view on it.

The SAS side serves files under ``sas_root``: ``GET {sas_url}/frames/301/RUN/CAMCOL/frame-...``
answers ``sas_root/frames/301/RUN/CAMCOL/frame-...`` with Content-Length, HEAD and byte ranges.

Faults for tests: ``standin.inject(kind, count)`` makes the next `count` requests fail as SkyServer
and the SAS fail in practice (see :meth:`StandIn.inject`).

Use::

    from photoz_tools.sdss.standin import StandIn

    with StandIn(catalog="mgs.parquet", sas_root="mirror/") as sky:   # frames: from the tree
        sky.inject("http500", 2, status=503)          # the next 2 SQL requests fail
        sky.inject("truncate", target="sas")          # the next SAS download is cut short
        run pz-query --url {sky.url} ... / pz-cutout --sas-url {sky.sas_url} ...
        sky.requests                                  # what was asked, and which fault answered

``serve(...)`` does the same in the foreground until Ctrl-C (``pz-mock serve DIR``).

The package, from the bottom up: :mod:`.lexer`, :mod:`.expressions` and :mod:`.parser` (the SQL
subset), :mod:`.catalog` (the data and SkyServer's tables as views on it, with the MGS defaults),
:mod:`.evaluate` (running a parsed query), :mod:`.formats` (CSV and FITS answers),
:mod:`.frame_files` (the Field table from frame headers), :mod:`.handler` (HTTP plumbing),
:mod:`.faults`, :mod:`.answers` (SQL and SAS answers) and :mod:`.server` (:class:`StandIn`,
:func:`serve`).

Catalogue columns may be given in SkyServer names (petroMag_r, extinction_r, expAB_r, zWarning,
...) or in pz-query's output names (dered_petro_r, ebv, ba, zphot_b16, ...); what is missing gets
a value that passes the MGS cuts (class GALAXY, survey sdss, targetType SCIENCE, zWarning 0,
clean 1, insideMask 0, primtarget 64, rerun 301) or null (errors, PSF FWHM, sky).
"""

from __future__ import annotations

from photoz_tools.sdss.standin.catalog import BANDS, Dataset, field_id
from photoz_tools.sdss.standin.evaluate import run_select
from photoz_tools.sdss.standin.faults import FAULT_KINDS
from photoz_tools.sdss.standin.formats import to_csv, to_fits
from photoz_tools.sdss.standin.frame_files import frame_index_from_files
from photoz_tools.sdss.standin.handler import RequestRecord
from photoz_tools.sdss.standin.lexer import SQLError
from photoz_tools.sdss.standin.parser import Select, parse_sql
from photoz_tools.sdss.standin.server import StandIn, astroquery_pointed_at, serve

__all__ = [
    "BANDS",
    "FAULT_KINDS",
    "Dataset",
    "RequestRecord",
    "SQLError",
    "Select",
    "StandIn",
    "astroquery_pointed_at",
    "field_id",
    "frame_index_from_files",
    "parse_sql",
    "run_select",
    "serve",
    "to_csv",
    "to_fits",
]
