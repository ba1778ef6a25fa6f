"""Fuzz campaigns over every reader and plain function, and over the commands (issue 13).

Why: astronomers point these tools at files other people made. Each case must end in a correct
result or one clear line (a PzError, exit 1/2 for commands); a traceback, a hang, a partial file
or a wrong result is a failure. The campaigns count what they try and keep going after a
failure, so a run reports every distinct failure once, with a reproduction.

    nice -n 10 .venv/bin/python benchmarks/fuzz.py --cases 10000 --cli-runs 200 --out fuzz.json
    nice -n 10 .venv/bin/python benchmarks/fuzz.py --only parquet,fits --cases 500

In-process campaigns use hypothesis (generation only: no shrinking, no database) to draw inputs;
command-line campaigns draw broken inputs with a seeded RNG and run the real commands.
tests/hardening/test_fuzz_sample.py runs the same campaigns with a handful of cases.
"""

from __future__ import annotations

import argparse
import bz2
import contextlib
import json
import signal
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASE_SECONDS = 20  # a case that takes longer is a hang
DERANDOMIZE = False  # the suite's sample sets it: the same cases on every run, never flaky


# --------------------------------------------------------------------------- bookkeeping


@dataclass
class Result:
    """What one campaign tried and the distinct failures it met (signature -> repro)."""

    name: str
    tried: int = 0
    ok: int = 0
    refused: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    refusals: list[str] = field(default_factory=list)  # a few samples of the one-line answers
    seconds: float = 0.0

    def fail(self, signature: str, repro: str) -> None:
        self.counts[signature] = self.counts.get(signature, 0) + 1
        self.failures.setdefault(signature, repro[:600])

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tried": self.tried,
            "ok": self.ok,
            "refused": self.refused,
            "failures": [
                {"signature": s, "count": self.counts[s], "repro": r}
                for s, r in self.failures.items()
            ],
            "refusal_samples": self.refusals,
            "seconds": round(self.seconds, 1),
        }


class Hang(Exception):
    """A case ran past CASE_SECONDS."""


@contextlib.contextmanager
def _alarm(seconds: int):
    """SIGALRM after `seconds` (main thread only), so a hang is a failure, not a stuck run."""

    def _raise(*_: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _signature(exc: BaseException) -> str:
    """Type, the innermost package frame and the message's start: one failure, one signature."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "photoz_tools" in f.filename] or frames[-1:]
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    msg = _generic(str(exc).split("\n")[0])[:80]
    return f"{type(exc).__name__} at {where}: {msg}"


def _generic(text: str) -> str:
    """A message with its quoted names and numbers blanked, so one cause is one signature."""
    import re

    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", text)


def run_case(
    res: Result, fn: Callable[[], Any], repro: str, check=None, plain: bool = False
) -> None:
    """Run one case: count it, classify its outcome (result, one-line refusal, failure).

    For plain functions (`plain`), a ValueError of the package's own words is a refusal too:
    they are called from Python, where that is the idiom; numpy's own messages are failures.
    """
    from photoz_tools.errors import PzError

    accepted: tuple[type[BaseException], ...] = (PzError, ValueError) if plain else (PzError,)

    res.tried += 1
    try:
        with _alarm(CASE_SECONDS), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn()
            problem = check(out) if check else None
    except accepted as exc:
        if _numpy_words(exc):
            res.fail(_signature(exc), repro)
        elif "\n" in str(exc).strip() or not str(exc).strip():
            res.fail(f"PzError not one line: {str(exc)[:60]!r}", repro)
        else:
            res.refused += 1
            if len(res.refusals) < 5:
                res.refusals.append(str(exc)[:160])
        return
    except Hang as exc:
        res.fail(f"hang: {exc}", repro)
        return
    except Exception as exc:  # the failures we look for
        res.fail(_signature(exc), repro)
        return
    if problem:
        res.fail(f"wrong result: {_generic(problem)}", repro)
    else:
        res.ok += 1


def _numpy_words(exc: BaseException) -> bool:
    """A ValueError raised by numpy itself (not the package's words)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and "photoz_tools" not in frames[-1].filename


def hypothesis_loop(res: Result, strategy, body: Callable[[Any], None], n: int) -> None:
    """Draw `n` examples of `strategy` and hand each to `body` (which never raises)."""
    from hypothesis import HealthCheck, Phase, given, settings

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=DERANDOMIZE,
    )
    @given(strategy)
    def loop(x: Any) -> None:
        body(x)

    loop()


# --------------------------------------------------------------------------- sample tables


def sample_tables() -> dict[str, Any]:
    """Valid tables the readers must read back exactly (the seeds for mutation)."""
    import pyarrow as pa

    from photoz_tools.tables import to_arrow

    rng = np.random.default_rng(1)
    n = 6
    img = rng.normal(0, 1, (n, 64, 64, 5)).astype(np.float32)
    img[0, 0, 0, 0] = np.nan
    pdf = rng.random((n, 180)).astype(np.float32)
    pdf /= pdf.sum(1, keepdims=True)
    plain = pa.table(
        {
            "objID": pa.array(np.arange(n, dtype=np.int64) + 2**62),
            "ra": pa.array(rng.uniform(0, 360, n)),
            "z": pa.array([0.1, np.nan, np.inf, -1.0, 1e30, 0.0]),
            "name": pa.array(["a", "é", "日本", "", "x,y", 'q"'], pa.string()),
        }
    )
    images = pa.table(
        {
            "specObjID": pa.array(np.arange(n, dtype=np.int64)),
            "ebv": pa.array(rng.uniform(0, 0.1, n).astype(np.float32)),
            "image": to_arrow(img),
            "pdf": to_arrow(pdf),
        }
    )
    empty = plain.slice(0, 0)
    return {"plain": plain, "images": images, "empty": empty}


def write_seed(table, path: Path) -> Path:
    from photoz_tools.tables import write_table

    write_table(table, str(path))
    return path


def seed_files(folder: Path, ext: str) -> list[bytes]:
    """The bytes of each sample table written in format `ext` (tables it cannot hold skipped)."""
    out = []
    for name, table in sample_tables().items():
        if ext in (".csv", ".ecsv") and name == "images":
            continue
        p = folder / f"{name}{ext}"
        write_seed(table, p)
        out.append(p.read_bytes())
    return out


def mutate(data: bytes, kind: str, a: float, b: float, byte: int) -> bytes:
    """One corruption of `data`: truncate, flip, insert, delete, duplicate, zero a block."""
    n = len(data)
    i = min(int(a * n), max(0, n - 1))
    j = min(n, i + 1 + int(b * 64))
    if kind == "truncate":
        return data[:i]
    if kind == "flip":
        return data[:i] + bytes([data[i] ^ (1 << (byte % 8))]) + data[i + 1 :] if n else data
    if kind == "set":
        return data[:i] + bytes([byte]) + data[i + 1 :]
    if kind == "insert":
        return data[:i] + bytes([byte]) * (1 + int(b * 16)) + data[i:]
    if kind == "delete":
        return data[:i] + data[j:]
    if kind == "zero":
        return data[:i] + b"\0" * (j - i) + data[j:]
    if kind == "dup":
        return data[:j] + data[i:j] + data[j:]
    return data


MUTATIONS = ("truncate", "flip", "set", "insert", "delete", "zero", "dup", "none")


def mutation_strategy(n_seeds: int):
    from hypothesis import strategies as st

    return st.tuples(
        st.integers(0, n_seeds - 1),
        st.sampled_from(MUTATIONS),
        st.floats(0, 1, exclude_max=True),
        st.floats(0, 1),
        st.integers(0, 255),
        st.integers(0, 3),
    )


# --------------------------------------------------------------------------- table readers


def _read_all(path: str) -> Any:
    """Read a table both ways (whole, and batch by batch) and return the whole one."""
    from photoz_tools.tables import open_table, read_table

    table = read_table(path)
    with open_table(path, batch_rows=2) as reader:
        rows = sum(b.num_rows for b in reader.iter_batches())
    if rows != table.num_rows:
        raise AssertionError(f"batches hold {rows} rows, the table {table.num_rows}")
    return table


def _same_table(got, want) -> str | None:
    """None when `got` holds `want`'s columns and values (NaN equal to NaN)."""
    from photoz_tools.tables import column_array

    if got.num_rows != want.num_rows:
        return f"{got.num_rows} rows, expected {want.num_rows}"
    for name in want.column_names:
        if name not in got.column_names:
            return f"column '{name}' lost"
        a, b = column_array(got, name), column_array(want, name)
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            if not np.array_equal(np.asarray(a, float), np.asarray(b, float), equal_nan=True):
                return f"column '{name}' changed"
        elif a.tolist() != b.tolist():
            return f"column '{name}' changed"
    return None


def reader_campaign(ext: str, n: int, tmp: Path) -> Result:
    """Mutated FITS/Parquet/CSV files: a one-line refusal, or a table; the unmutated seeds
    (and mutations that change nothing) must read back equal to what was written."""
    res = Result(f"reader {ext}")
    seeds = seed_files(tmp, ext)
    named = [
        (k, t)
        for k, t in sample_tables().items()
        if not (ext in (".csv", ".ecsv") and k == "images")
    ]
    tables = [t for _, t in named]
    path = tmp / f"case{ext}"

    def body(x: tuple) -> None:
        k, kind, a, b, byte, _ = x
        data = mutate(seeds[k], kind, a, b, byte)
        path.write_bytes(data)
        same = data == seeds[k]
        check = (lambda t: _same_table(t, tables[k])) if same else None
        repro = f"seed {k} ({named[k][0]}{ext}) {kind} a={a:.6f} b={b:.4f} byte={byte}"
        run_case(res, lambda: _read_all(str(path)), repro, check)

    hypothesis_loop(res, mutation_strategy(len(seeds)), body, n)
    return res


def roundtrip_campaign(ext: str, n: int, tmp: Path) -> Result:
    """Generated tables (odd names, NaN/inf/huge values, empty, duplicate ids) written then read
    back: exactly the same values, or a one-line refusal at write time."""
    from hypothesis import strategies as st

    from photoz_tools.tables import write_table

    res = Result(f"roundtrip {ext}")
    names = st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12
    )
    floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
    ints = st.integers(-(2**63), 2**63 - 1)
    column = st.one_of(st.lists(floats, min_size=0, max_size=5), st.lists(ints, max_size=5))
    strategy = st.tuples(st.lists(names, min_size=1, max_size=4), column, st.integers(0, 5))

    def body(x: tuple) -> None:
        import pyarrow as pa

        cols, values, nrows = x
        n_rows = min(nrows, len(values))
        typ = pa.float64() if any(isinstance(v, float) for v in values) else pa.int64()
        table = pa.table({c: pa.array(values[:n_rows], typ) for c in dict.fromkeys(cols)})
        path = tmp / f"rt{ext}"
        path.unlink(missing_ok=True)

        def work() -> Any:
            write_table(table, str(path))
            return _read_all(str(path))

        repro = f"write_table(pa.table({ {c: values[:n_rows] for c in cols}!r}), 'x{ext}')"
        run_case(res, work, repro, lambda t: _same_table(t, table))

    hypothesis_loop(res, strategy, body, n)
    return res


# --------------------------------------------------------------------------- frames


def frame_seeds() -> list[bytes]:
    """A small SDSS-like frame, plain and bz2, with float32 and float64 pixels."""
    sys.path[:0] = [str(ROOT / "tests" / "hardening"), str(ROOT / "tests")]  # helpers, framekit
    from helpers import write_frame

    out = []
    with tempfile.TemporaryDirectory() as d:
        for dtype in (np.float32, np.float64):
            p = write_frame(Path(d) / dtype.__name__, "r", np.ones((20, 30), dtype))
            out.append(p.read_bytes())
            out.append(bz2.decompress(out[-1]))
    return out


def frame_campaign(n: int, tmp: Path) -> Result:
    """Mutated corrected frames through load_frame and the SAS verification."""
    from photoz_tools.imaging.frames import load_frame
    from photoz_tools.sdss.sas import verify_frame_bytes

    res = Result("frames (load_frame, verify_frame_bytes)")
    seeds = frame_seeds()

    def body(x: tuple) -> None:
        k, kind, a, b, byte, which = x
        data = mutate(seeds[k], kind, a, b, byte)

        def work() -> Any:
            if which % 2 and k % 2 == 0:
                verify_frame_bytes(data, "frame.fits.bz2")
            return load_frame(data, name="frame.fits")

        def check(frame: Any) -> str | None:
            if data == seeds[k] and not np.all(frame.image == 1.0):
                return "pixels of an intact frame changed"
            return None

        run_case(res, work, f"frame seed {k} {kind} a={a:.6f} b={b:.4f} byte={byte}", check)

    hypothesis_loop(res, mutation_strategy(len(seeds)), body, n)
    return res


# --------------------------------------------------------------------------- bundles


def bundle_campaign(n: int, tmp: Path) -> Result:
    """Manifests of any JSON shape and mutated member archives: load_bundle without Keras."""
    from hypothesis import strategies as st

    from photoz_tools.model import bundle as B
    from photoz_tools.pdf import Bins

    res = Result("bundles (read_manifest, verify, load_bundle checks)")
    folder = tmp / "bundle"
    folder.mkdir(exist_ok=True)
    member = folder / "member_0.keras"
    with zipfile.ZipFile(member, "w") as z:
        z.writestr("config.json", json.dumps({"module": "keras.layers", "class_name": "Dense"}))
        z.writestr("metadata.json", "{}")
        z.writestr("model.weights.h5", b"\x89HDF")
    good = member.read_bytes()
    manifest = B.manifest_header({"n_bins": 180}, Bins.default(), "none", "fuzz")
    manifest["members"] = [{"file": member.name, "sha256": B.sha256_file(member)}]
    base = json.dumps(manifest)
    leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
    junk = st.recursive(
        leaf,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c),
        max_leaves=10,
    )
    keys = st.sampled_from([*manifest.keys(), "members", "file", "sha256"])
    strategy = st.tuples(keys, junk, st.sampled_from(MUTATIONS), st.floats(0, 1), st.integers())

    def body(x: tuple) -> None:
        key, value, kind, a, byte = x
        m = json.loads(base)
        if key in ("file", "sha256"):
            m["members"][0][key] = value
        else:
            m[key] = value
        (folder / B.MANIFEST).write_text(json.dumps(m))
        member.write_bytes(mutate(good, kind, a, 0.5, byte % 256))

        def work() -> Any:
            b = B.load_bundle(folder, load_members=False)
            for entry in b.manifest["members"]:
                B.check_member_archive(B.member_path(folder, entry["file"]))
            return b

        repro = f"manifest[{key!r}] = {value!r:.200}; member {kind} a={a:.4f}"
        run_case(res, work, repro)

    hypothesis_loop(res, strategy, body, n)
    return res


# --------------------------------------------------------------------------- plain functions


PDF_KINDS = (
    "good",
    "good",
    "spiky",
    "zeros",
    "nan",
    "inf",
    "negative",
    "huge",
    "tiny",
    "float16",
    "float32",
    "short",
    "long",
    "empty",
    "scalar_row",
)


def _pdf_strategy():
    """(kind, seed, z kind): drawn by hypothesis, built by numpy (fast): well-formed PDFs mostly,
    with NaN, inf, negative, huge, all-zero rows, odd shapes and dtypes mixed in."""
    from hypothesis import strategies as st

    return st.tuples(
        st.sampled_from(PDF_KINDS),
        st.integers(0, 2**32 - 1),
        st.sampled_from(("in", "edge", "out", "nan", "inf")),
    )


def make_pdf(kind: str, seed: int, zkind: str) -> tuple[np.ndarray, np.ndarray]:
    """The PDF rows and redshifts of one case."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5))
    p = rng.random((n, 180)) ** rng.uniform(1, 30)
    if kind == "spiky":
        p = np.zeros((n, 180))
        p[np.arange(n), rng.integers(0, 180, n)] = 1.0
    if kind in ("zeros", "nan", "inf", "negative", "huge", "tiny"):
        row, col = rng.integers(0, n), rng.integers(0, 180, 3)
        value = {
            "zeros": 0.0,
            "nan": np.nan,
            "inf": np.inf,
            "negative": -1.0,
            "huge": 1e308,
            "tiny": 1e-320,
        }[kind]
        if kind == "zeros":
            p[row] = 0.0
        else:
            p[row, col] = value
    if kind == "float16":
        p = (p * 60000).astype(np.float16)
    if kind == "float32":
        p = p.astype(np.float32)
    if kind in ("short", "long"):
        p = p[:, :179] if kind == "short" else np.hstack([p, p[:, :1]])
    if kind == "empty":
        p = p[:0]
    if kind == "scalar_row":
        p = p[0]
    rows = 1 if p.ndim == 1 else len(p)
    z = {
        "in": rng.uniform(0, 0.4, rows),
        "edge": rng.choice([0.0, 0.4, 0.2], rows),
        "out": rng.uniform(-1, 2, rows),
        "nan": np.full(rows, np.nan),
        "inf": np.full(rows, np.inf),
    }[zkind]
    return p, (z[0] if p.ndim == 1 else z)


def _crps_reference(p: np.ndarray, edges: np.ndarray, z: float) -> float:
    """Eq. 5 by quadrature of the piecewise-linear CDF on fine grids either side of z (an
    independent check of the package's closed form)."""
    lo, hi = edges[0], edges[-1]
    cum = np.concatenate([[0.0], np.cumsum(p / p.sum())])

    def part(a: float, b: float, below: bool) -> float:
        if b <= a:
            return 0.0
        g = np.linspace(a, b, 20001)
        cdf = np.interp(g, edges, cum)
        return float(np.trapezoid(cdf**2 if below else (1 - cdf) ** 2, g))

    zc = min(max(z, lo), hi)
    return part(lo, zc, True) + part(zc, hi, False) + max(0.0, lo - z) + max(0.0, z - hi)


def pdf_checks(name: str, out: Any, p: np.ndarray, z: np.ndarray, bins: Any) -> str | None:
    """Invariants for well-formed rows (finite, >= 0, positive sum)."""
    if p.ndim != 2 or p.shape[1] != bins.n or p.dtype == np.float16:
        return None
    with np.errstate(all="ignore"):
        total = p.astype(np.float64).sum(1)
    good = np.isfinite(p).all(1) & (p >= 0).all(1) & (total > 0) & np.isfinite(total)
    if name in ("cdf_at", "pit", "crps", "pit_crps_width"):
        good &= np.isfinite(np.broadcast_to(z, good.shape))
    if not good.any():
        return None
    lo, hi = bins.edges[0], bins.edges[-1]
    if isinstance(out, dict):
        out = tuple(out.values())
    vals = [np.asarray(v, float) for v in (out if isinstance(out, tuple) else (out,))]
    for v in vals:
        if v.shape[:1] == good.shape and np.isnan(v[good]).any():
            return f"{name}: NaN for a well-formed PDF"
    v = vals[0]
    if name in ("zphot", "zmode") and ((v[good] < lo) | (v[good] > hi)).any():
        return f"{name} outside the bins"
    if name == "pit" and ((v[good] < 0) | (v[good] > 1)).any():
        return "PIT outside [0, 1]"
    if name == "crps":
        for i in np.flatnonzero(good & np.isfinite(z)):
            ref = _crps_reference(p[i], bins.edges, z[i])
            if abs(v[i] - ref) > 1e-6 + 1e-4 * ref:
                return f"CRPS {v[i]:.6g} != exact {ref:.6g}"
    if name == "interval" and (vals[0][good] > vals[1][good]).any():
        return "interval lo > hi"
    return None


def pdf_campaigns(n: int) -> list[Result]:
    """Every public function of pdf.py over odd PDFs and redshifts."""
    from photoz_tools import pdf as P

    bins = P.Bins.default()
    funcs: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
        "normalize": lambda p, z: P.normalize(p),
        "zphot": lambda p, z: P.zphot(p, bins),
        "zstd": lambda p, z: P.zstd(p, bins),
        "zmode": lambda p, z: P.zmode(p, bins),
        "cdf_at": lambda p, z: P.cdf_at(p, bins, z),
        "quantile": lambda p, z: P.quantile(p, bins, 0.5),
        "interval": lambda p, z: P.interval(p, bins),
        "pit": lambda p, z: P.pit(p, bins, z),
        "crps": lambda p, z: P.crps(p, bins, z),
        "pit_crps_width": lambda p, z: P.pit_crps_width(p, bins, z),
        "usable": lambda p, z: P.usable(p),
        "pdf_flags": lambda p, z: P.pdf_flags(p, bins),
        "summarize": lambda p, z: P.summarize(p, bins),
        "pack_unpack": lambda p, z: P.unpack_pdf(*P.pack_pdf(p, "uint8"), "uint8"),
    }
    results = []
    for name, fn in funcs.items():
        res = Result(f"pdf.{name}")

        def body(x: tuple, fn=fn, name=name, res=res) -> None:
            p, z = make_pdf(*x)
            repro = f"pdf.{name}: make_pdf{x!r} (benchmarks/fuzz.py)"
            check = lambda out: pdf_checks(name, out, p, z, bins)  # noqa: E731
            run_case(res, lambda: fn(p, z), repro, check, plain=True)

        t0 = time.monotonic()
        hypothesis_loop(res, _pdf_strategy(), body, n)
        res.seconds = time.monotonic() - t0
        results.append(res)
    return results


def metric_checks(name: str, out: Any, a: np.ndarray, b: np.ndarray) -> str | None:
    """Closed forms on finite inputs."""
    if not (np.isfinite(a).all() and np.isfinite(b).all() and len(a) and (b > -1).all()):
        return None
    dz = (a - b) / (1 + b)
    if not np.isfinite(dz).all():
        return None
    if name == "sigma_mad":
        ref = 1.4826 * np.median(np.abs(dz - np.median(dz)))
        if not np.isclose(out, ref, rtol=1e-9, atol=1e-12):
            return f"sigma_MAD {out} != {ref}"
    if name == "bias" and not np.isclose(out, dz.mean(), rtol=1e-9, atol=1e-12):
        return f"bias {out} != {dz.mean()}"
    if name == "eta" and not np.isclose(out, 100 * np.mean(np.abs(dz) > 0.05)):
        return f"eta {out} != {100 * np.mean(np.abs(dz) > 0.05)}"
    return None


def metric_campaigns(n: int) -> list[Result]:
    """Every public function of metrics.py over odd redshift arrays."""
    from hypothesis import strategies as st

    from photoz_tools import metrics as M

    strategy = st.tuples(
        st.sampled_from(Z_KINDS), st.sampled_from(Z_KINDS), st.integers(0, 2**32 - 1)
    )
    funcs: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
        "residuals": lambda a, b: M.residuals(a, b),
        "bias": lambda a, b: M.bias(M.residuals(a, _fit(b, a))),
        "sigma_mad": lambda a, b: M.sigma_mad(M.residuals(a, _fit(b, a))),
        "eta": lambda a, b: M.eta(M.residuals(a, _fit(b, a))),
        "point_metrics": lambda a, b: M.point_metrics(a, _fit(b, a)),
        "impossible_redshift": lambda a, b: M.impossible_redshift(a),
        "ks_uniform": lambda a, b: M.ks_uniform(a),
        "cvm_uniform": lambda a, b: M.cvm_uniform(a),
        "pit_flatness": lambda a, b: M.pit_flatness(a),
        "bin_index": lambda a, b: M.bin_index(a, np.sort(b)),
        "equal_width_edges": lambda a, b: M.equal_width_edges(a, max(1, len(b))),
        "statistics": lambda a, b: M.statistics(a, _fit(b, a), crps=a, pit=np.abs(a) % 1),
        "group_rows": lambda a, b: M.group_rows(
            [M.statistics(a[: i + 1], _fit(b, a)[: i + 1]) for i in range(min(3, len(a)))]
        ),
    }
    results = []
    for name, fn in funcs.items():
        res = Result(f"metrics.{name}")

        def body(x: tuple, fn=fn, name=name, res=res) -> None:
            a, b = make_z(*x)
            repro = f"metrics.{name}: make_z{x!r} (benchmarks/fuzz.py)"
            check = lambda out: metric_checks(name, out, a, _fit(b, a))  # noqa: E731
            run_case(res, lambda: fn(a, b), repro, check, plain=True)

        t0 = time.monotonic()
        hypothesis_loop(res, strategy, body, n)
        res.seconds = time.monotonic() - t0
        results.append(res)
    return results


Z_KINDS = (
    "sane",
    "sane",
    "sane",
    "empty",
    "one",
    "nan",
    "inf",
    "negative",
    "huge",
    "equal",
    "below_minus_one",
)


def make_z(kind_a: str, kind_b: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two paired redshift arrays (zphot-like, zspec-like) of one case."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 50))

    def one(kind: str) -> np.ndarray:
        z = rng.uniform(0, 0.4, n)
        if kind == "empty":
            return z[:0]
        if kind == "one":
            return z[:1]
        if kind == "equal":
            return np.full(n, 0.1)
        bad = {
            "nan": np.nan,
            "inf": np.inf,
            "negative": -0.3,
            "huge": 1e300,
            "below_minus_one": -1.0,
        }.get(kind)
        if bad is not None:
            z[rng.integers(0, n, 2)] = bad
        return z

    return one(kind_a), one(kind_b)


def _fit(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """`b` resized to `a`'s length (the metrics take paired arrays)."""
    return np.resize(b, len(a)) if len(b) else np.zeros(len(a))


# --------------------------------------------------------------------------- driver


def in_process(only: set[str] | None, n: int, save: Callable[[list[Result]], None]) -> list[Result]:
    """Run the in-process campaigns (readers, frames, bundles, pdf, metrics)."""
    plan: dict[str, Callable[[Path], list[Result]]] = {
        "parquet": lambda t: [reader_campaign(".parquet", n, t)],
        "fits": lambda t: [reader_campaign(".fits", n, t)],
        "csv": lambda t: [reader_campaign(".csv", n, t)],
        "ecsv": lambda t: [reader_campaign(".ecsv", n, t)],
        "roundtrip": lambda t: [
            roundtrip_campaign(".parquet", n, t),
            roundtrip_campaign(".fits", n, t),
        ],
        "frames": lambda t: [frame_campaign(n, t)],
        "bundle": lambda t: [bundle_campaign(n, t)],
        "pdf": lambda t: pdf_campaigns(n),
        "metrics": lambda t: metric_campaigns(n),
    }
    results = []
    for key, make in plan.items():
        if only and key not in only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"fuzz-{key}-") as d:
            t0 = time.monotonic()
            rs = make(Path(d))
            if len(rs) == 1:
                rs[0].seconds = time.monotonic() - t0
        for r in rs:
            report(r)
        results.extend(rs)
        save(results)  # a long run that is stopped keeps what it finished
    return results


def report(r: Result) -> None:
    print(
        f"{r.name:45s} tried {r.tried:6d} ok {r.ok:6d} refused {r.refused:6d} "
        f"failures {sum(r.counts.values()):5d} ({len(r.failures)} distinct) "
        f"{r.seconds:7.1f} s",
        file=sys.stderr,
        flush=True,
    )
    for sig, rep in r.failures.items():
        print(f"    FAIL x{r.counts[sig]} {sig}\n         repro: {rep[:300]}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=10_000, help="cases per in-process campaign")
    ap.add_argument("--cli-runs", type=int, default=200, help="runs per command (0: none)")
    ap.add_argument(
        "--only",
        default="",
        help="comma list: parquet,fits,csv,ecsv,roundtrip,"
        "frames,bundle,pdf,metrics,cli,cli:<command>",
    )
    ap.add_argument("--out", default="", help="write the results as JSON here")
    ap.add_argument(
        "--budget-minutes", type=float, default=float("inf"), help="per command-line campaign"
    )
    ap.add_argument("--seed", type=int, default=0, help="command-line runs: other plans")
    args = ap.parse_args(argv)
    only = {s for s in args.only.split(",") if s} or None

    def save(results: list[Result]) -> None:
        if args.out:
            Path(args.out).write_text(json.dumps([r.as_dict() for r in results], indent=1))

    results = in_process(only, args.cases, save) if args.cases else []
    if args.cli_runs and (only is None or any(s.startswith("cli") for s in only)):
        from fuzz_cli import cli_campaigns  # benchmarks/fuzz_cli.py

        cmds = {s.split(":", 1)[1] for s in (only or set()) if s.startswith("cli:")} or None

        def report_and_save(r: Result) -> None:
            report(r)
            save([*results, r])
            results.append(r)

        cli_campaigns(args.cli_runs, cmds, report_and_save, args.budget_minutes * 60, args.seed)
    save(results)
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
