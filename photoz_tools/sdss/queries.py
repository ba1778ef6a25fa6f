"""The SQL that pz-query sends to SkyServer, built from options (no I/O, no heavy imports).

- :func:`mgs_sql`: the Main Galaxy Sample selection of Pasquet et al. 2019, Appendix A
  (SpecObjAll x PhotoObjAll x Photoz x galSpecInfo), with its cuts as parameters, an optional sky
  box, and keyset paging (``TOP n ... WHERE s.specObjID > last ORDER BY s.specObjID``) so that
  500k rows come back in pages that each fit SkyServer's row and time limits.
- :func:`frames_sql`: the imaging frames (Field table, every epoch, not only primary fields)
  whose bounds overlap a sky box, paged on ``fieldID``.
- :func:`strip_sql_comments`: remove ``--`` and ``/* */`` comments the way SQL does (never inside
  string literals) and rewrite literals so astroquery's own line-based comment stripping, which
  cuts at the first ``--`` it sees even inside a string, cannot damage the statement.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

BANDS = "ugriz"

# A_r / E(B-V) for SDSS r (Schlafly & Finkbeiner 2011 via SkyServer's extinction_r = 2.751 E(B-V))
R_OVER_EBV = 2.751
# A_band / E(B-V) for the five bands, as SkyServer computes extinction_* from SFD E(B-V)
EXTINCTION_COEFFS = {"u": 5.155, "g": 3.793, "r": 2.751, "i": 2.086, "z": 1.479}

# Output columns of the default query and their units (field metadata / TUNIT).
MGS_UNITS: dict[str, str] = {
    "ra": "deg",
    "dec": "deg",
    "ebv": "mag",
    **{f"dered_petro_{b}": "mag" for b in BANDS},
    **{f"petroMagErr_{b}": "mag" for b in BANDS},
    **{f"extinction_{b}": "mag" for b in BANDS},
    **{f"psfFWHM_{b}": "arcsec" for b in BANDS},
    **{f"sky_{b}": "nanomaggy/arcsec2" for b in BANDS},
}
FRAMES_UNITS: dict[str, str] = {c: "deg" for c in ("ra_min", "ra_max", "dec_min", "dec_max")}

# The frame index columns pz-cutout reads (documented contract).
FRAMES_COLUMNS = (
    "fieldID",
    "run",
    "rerun",
    "camcol",
    "field",
    "ra_min",
    "ra_max",
    "dec_min",
    "dec_max",
)


@dataclass(frozen=True)
class Box:
    """A sky box in degrees; ``ra_min > ra_max`` means the box wraps through RA = 0."""

    ra_min: float = 0.0
    ra_max: float = 360.0
    dec_min: float = -90.0
    dec_max: float = 90.0

    def __post_init__(self) -> None:
        for name in ("ra_min", "ra_max", "dec_min", "dec_max"):
            v = float(getattr(self, name))
            object.__setattr__(self, name, v)  # numbers from numpy or ints: plain floats
            if not math.isfinite(v):
                raise ValueError(f"sky box: {name} is not a finite number")
        if not (0.0 <= self.ra_min <= 360.0 and 0.0 <= self.ra_max <= 360.0):
            raise ValueError("sky box: RA must lie within 0..360 degrees")
        if not (-90.0 <= self.dec_min < self.dec_max <= 90.0):
            raise ValueError("sky box: need -90 <= dec_min < dec_max <= 90")

    @property
    def wraps(self) -> bool:
        return self.ra_min > self.ra_max

    @classmethod
    def parse(cls, text: str) -> Box:
        """'RA_MIN,RA_MAX,DEC_MIN,DEC_MAX' in degrees (the --box option)."""
        parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
        if len(parts) != 4:
            raise ValueError("--box needs four numbers: RA_MIN,RA_MAX,DEC_MIN,DEC_MAX (degrees)")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"--box: not a number in {text!r}") from None
        return cls(*values)

    def padded(self, deg: float) -> Box:
        """The box grown by `deg` on every side (RA scaled by 1/cos dec), clipped to the sphere."""
        dec_min = max(-90.0, self.dec_min - deg)
        dec_max = min(90.0, self.dec_max + deg)
        cosd = math.cos(math.radians(min(89.0, max(abs(dec_min), abs(dec_max)))))
        dra = deg / max(cosd, 1e-3)
        if not self.wraps and self.ra_max - self.ra_min + 2 * dra >= 360.0:
            return Box(0.0, 360.0, dec_min, dec_max)
        return Box(
            (self.ra_min - dra) % 360.0, (self.ra_max + dra) % 360.0 or 360.0, dec_min, dec_max
        )


@dataclass(frozen=True)
class MgsCuts:
    """The paper's Main Galaxy Sample cuts (Appendix A); each one an option of pz-query."""

    r_max: float | None = 17.8  # dereddened Petrosian r <= r_max
    r_min: float | None = None  # dereddened Petrosian r >= r_min
    z_min: float | None = 0.0  # z > z_min (strict, as the paper's z > 0)
    z_max: float | None = 0.4  # z <= z_max
    primtarget_min: int | None = 64  # galSpecInfo.primtarget >= 64 (MGS target bits)
    zwarning_zero: bool = True
    science_only: bool = True  # targetType = 'SCIENCE', survey = 'sdss', class = 'GALAXY'
    clean: bool = True  # PhotoObjAll.clean = 1 and insideMask = 0
    where: tuple[str, ...] = field(default_factory=tuple)  # extra user conditions


def _num(v: float) -> str:
    """A float literal SQL Server parses exactly as Python wrote it."""
    if isinstance(v, bool):
        raise TypeError("boolean where a number is expected")
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


def _compact(item: str) -> str:
    """``p.ra AS ra`` -> ``p.ra``: SkyServer names a plain column as typed, and astroquery sends
    the SQL in the URL (IIS limits a query string to 2048 bytes by default)."""
    expr, _, name = item.rpartition(" AS ")
    return expr if expr.split(".")[-1] == name else item


def mgs_select_list() -> list[str]:
    """The default query's output columns (``expression AS name`` where the name differs)."""
    cols = [
        "s.specObjID AS specObjID",
        "p.objID AS objID",
        "p.ra AS ra",
        "p.dec AS dec",
        "s.z AS z",
        "s.zErr AS zErr",
    ]
    cols += [f"p.petroMag_{b} - p.extinction_{b} AS dered_petro_{b}" for b in BANDS]
    cols += [f"p.petroMagErr_{b} AS petroMagErr_{b}" for b in BANDS]
    cols += [f"p.extinction_{b} AS extinction_{b}" for b in BANDS]
    cols += [f"p.extinction_r / {R_OVER_EBV} AS ebv", "p.expAB_r AS ba"]
    cols += [f"p.psfFWHM_{b} AS psfFWHM_{b}" for b in BANDS]
    cols += [f"p.sky_{b} AS sky_{b}" for b in BANDS]
    cols += [
        "p.run AS run",
        "p.rerun AS rerun",
        "p.camcol AS camcol",
        "p.field AS field",
        "g.primtarget AS primtarget",
        "pz.z AS zphot_b16",
        "pz.zErr AS zphot_b16_err",
    ]
    return [_compact(c) for c in cols]


def box_conditions(box: Box | None, ra: str, dec: str) -> list[str]:
    """WHERE terms keeping positions (columns `ra`, `dec`) inside `box`."""
    if box is None:
        return []
    terms = []
    if box.wraps:
        terms.append(f"({ra} >= {_num(box.ra_min)} OR {ra} <= {_num(box.ra_max)})")
    elif box.ra_min > 0.0 or box.ra_max < 360.0:
        terms.append(f"{ra} BETWEEN {_num(box.ra_min)} AND {_num(box.ra_max)}")
    if box.dec_min > -90.0 or box.dec_max < 90.0:
        terms.append(f"{dec} BETWEEN {_num(box.dec_min)} AND {_num(box.dec_max)}")
    return terms


def mgs_conditions(cuts: MgsCuts, box: Box | None = None) -> list[str]:
    """The WHERE terms of the MGS selection (without the paging term)."""
    t: list[str] = []
    if cuts.z_min is not None:
        t.append(f"s.z > {_num(cuts.z_min)}")
    if cuts.z_max is not None:
        t.append(f"s.z <= {_num(cuts.z_max)}")
    if cuts.zwarning_zero:
        t.append("s.zWarning = 0")
    if cuts.science_only:
        t += ["s.targetType = 'SCIENCE'", "s.survey = 'sdss'", "s.class = 'GALAXY'"]
    if cuts.primtarget_min is not None:
        t.append(f"g.primtarget >= {int(cuts.primtarget_min)}")
    if cuts.clean:
        t += ["p.clean = 1", "p.insideMask = 0"]
    if cuts.r_max is not None:
        t.append(f"p.petroMag_r - p.extinction_r <= {_num(cuts.r_max)}")
    if cuts.r_min is not None:
        t.append(f"p.petroMag_r - p.extinction_r >= {_num(cuts.r_min)}")
    t += box_conditions(box, "p.ra", "p.dec")
    t += [f"({w})" for w in cuts.where]
    return t


MGS_FROM = (
    "SpecObjAll AS s\n"
    "  JOIN PhotoObjAll AS p ON p.objID = s.bestObjID\n"
    "  JOIN Photoz AS pz ON pz.objID = s.bestObjID\n"
    "  JOIN galSpecInfo AS g ON g.specObjID = s.specObjID"
)
MGS_KEY = ("s.specObjID", "specObjID")  # (SQL expression, output column) of the paging key


def _assemble(
    top: int | None, select: list[str], from_: str, where: list[str], order_by: str | None
) -> str:
    head = "SELECT" + (f" TOP {int(top)}" if top is not None else "")
    sql = head + "\n  " + ",\n  ".join(select) + "\nFROM " + from_
    if where:
        sql += "\nWHERE " + "\n  AND ".join(where)
    if order_by:
        sql += f"\nORDER BY {order_by}"
    return sql


def mgs_sql(
    cuts: MgsCuts | None = None,
    box: Box | None = None,
    top: int | None = None,
    after: int | None = None,
) -> str:
    """The Appendix A selection; `top` and `after` (the last specObjID seen) make it one page."""
    cuts = cuts or MgsCuts()
    where = mgs_conditions(cuts, box)
    if after is not None:
        where.append(f"{MGS_KEY[0]} > {int(after)}")
    return _assemble(top, mgs_select_list(), MGS_FROM, where, MGS_KEY[0])


FRAMES_KEY = ("f.fieldID", "fieldID")


def frames_sql(box: Box | None = None, top: int | None = None, after: int | None = None) -> str:
    """Every imaging field (all epochs: Stripe 82 included, primary or not) overlapping `box`.

    A field overlaps when its bounding box (Field.raMin..raMax, decMin..decMax) intersects the
    sky box; pz-cutout then tests each frame's WCS exactly.
    """
    select = [
        "f.fieldID",
        "f.run",
        "f.rerun",
        "f.camcol",
        "f.field",
        "f.raMin AS ra_min",
        "f.raMax AS ra_max",
        "f.decMin AS dec_min",
        "f.decMax AS dec_max",
    ]
    where: list[str] = []
    if box is not None:
        # a field across RA = 0 has raMin > raMax: it covers [raMin, 360) and [0, raMax]
        a, b = _num(box.ra_min), _num(box.ra_max)
        if box.wraps:  # both contain RA = 0, so every field across it overlaps
            where.append(f"(f.raMin > f.raMax OR f.raMax >= {a} OR f.raMin <= {b})")
        elif box.ra_min > 0.0 or box.ra_max < 360.0:
            where.append(
                f"((f.raMin <= f.raMax AND f.raMax >= {a} AND f.raMin <= {b})"
                f" OR (f.raMin > f.raMax AND (f.raMin <= {b} OR f.raMax >= {a})))"
            )
        if box.dec_min > -90.0 or box.dec_max < 90.0:
            where += [f"f.decMax >= {_num(box.dec_min)}", f"f.decMin <= {_num(box.dec_max)}"]
    if after is not None:
        where.append(f"{FRAMES_KEY[0]} > {int(after)}")
    return _assemble(top, select, "Field AS f", where, FRAMES_KEY[0])


# --------------------------------------------------------------------------- comments


_TOKEN = re.compile(
    r"""(?P<str>N?'(?:[^']|'')*')      # string literal ('' escapes a quote)
      | (?P<qid>"(?:[^"]|"")*")        # quoted identifier
      | (?P<bid>\[[^\]]*\])            # bracketed identifier
      | (?P<line>--[^\n]*)             # line comment
      | (?P<block>/\*.*?\*/)           # block comment
      | (?P<ws>\s+)
      | (?P<other>[^'"\[\-/\s]+|[\-/])
    """,
    re.VERBOSE | re.DOTALL,
)


def _safe_literal(lit: str) -> str:
    """Rewrite a literal holding ``--`` or a newline as a concatenation astroquery cannot cut."""
    prefix = "N" if lit.startswith("N") else ""
    body = lit[len(prefix) + 1 : -1]
    if "--" not in body and "\n" not in body and "\r" not in body:
        return lit
    pieces: list[str] = []
    cur = ""
    for i, ch in enumerate(body):
        if ch in "\r\n":
            if cur:
                pieces.append(f"{prefix}'{cur}'")
            pieces.append(f"CHAR({ord(ch)})")
            cur = ""
            continue
        cur += ch
        if ch == "-" and i + 1 < len(body) and body[i + 1] == "-":
            pieces.append(f"{prefix}'{cur}'")
            cur = ""
    if cur:
        pieces.append(f"{prefix}'{cur}'")
    return "(" + " + ".join(pieces) + ")"


def strip_sql_comments(sql: str) -> str:
    """SQL without comments, on one line, safe to pass through astroquery's sanitiser.

    Comments become one space; runs of whitespace outside literals become one space (astroquery
    would join the lines anyway); string literals keep their text exactly.
    """
    out: list[str] = []
    pos = 0
    n = len(sql)
    while pos < n:
        m = _TOKEN.match(sql, pos)
        if m is None:  # an unterminated literal or comment: keep the rest as it is
            rest = sql[pos:]
            if rest.startswith("/*"):
                raise ValueError("SQL has an unterminated /* comment")
            raise ValueError("SQL has an unterminated quote")
        kind = m.lastgroup
        text = m.group()
        if kind in ("line", "block", "ws"):
            if out and out[-1] != " ":
                out.append(" ")
        elif kind == "str":
            out.append(_safe_literal(text))
        else:
            out.append(text)
        pos = m.end()
    return "".join(out).strip()
