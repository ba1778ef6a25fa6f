"""pz-predict --pdf packings on a trained bundle's predictions: what uint8, uint8log and float16
change in zphot, PIT and CRPS against float32, and the bytes per row each costs.

    .venv/bin/python benchmarks/pdf_packing.py [--arch tiny] [--steps 300] [--train-n 2000]
        [--n 1000] [--pdfs PATH.npz] [--json PATH]

A bundle of --arch trained by photoz_tools.model.train.train on --train-n galaxies of
tests/model/conftest.py's generator (seed 1); --n held-out generated galaxies (seed 2) predicted
by photoz_tools.model.predict.predict_arrays in float32 (saved to --pdfs, reused if it exists).
Each packing goes through the toolkit's own code: photoz_tools.pdf.pack_pdf/unpack_pdf for
uint8 and uint8log (the latter also at other floors), a float16 cast for float16. Bytes per row:
the Parquet file tables.write_table writes (snappy, as pz-predict does) with the pdf column (+
pdf_max) alone, and the same uncompressed, divided by the rows.
Prints one JSON object on stdout and a summary on stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def conftest():
    spec = importlib.util.spec_from_file_location("_pz_conftest", ROOT / "tests/model/conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_pdfs(args, tmp: Path) -> dict[str, np.ndarray]:
    from photoz_tools.model import bundle, train
    from photoz_tools.model.predict import predict_arrays

    ct = conftest()
    dataset = ct.write_dataset(tmp / "train.parquet", args.train_n, seed=1)
    recipe = train.Recipe(steps=args.steps, batch_size=64, val_size=200, seed=3, members=1)
    log(f"training {args.arch} for {args.steps} steps of 64 on {args.train_n} galaxies")
    t = time.perf_counter()
    train.train(str(dataset), tmp / "bundle", arch=args.arch, recipe=recipe, force=True)
    train_s = time.perf_counter() - t
    b = bundle.load_bundle(tmp / "bundle")
    g = ct.galaxies(args.n, seed=2)
    log(f"predicting {args.n} held-out galaxies (float32)")
    p = predict_arrays(b, g["image"], g["ebv"], precision="float32")
    return {
        "pdf": p.astype(np.float32),
        "z": g["z"].astype(np.float64),
        "edges": np.asarray(b.bins.edges),
        "train_s": np.float64(train_s),
    }


def gaussian_pdfs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Calibrated Gaussian PDFs as sharp as the paper's (sigma_MAD ~0.009), 3 % outliers."""
    from scipy.special import ndtr

    from photoz_tools import pdf as P

    edges = P.Bins.default().edges
    rng = np.random.default_rng(seed)
    z = rng.gamma(4, 0.025, n).clip(0.003, 0.39)
    sig = rng.uniform(0.006, 0.02, n) * (1 + z)
    mu = z + rng.normal(0, 1, n) * sig
    p = np.diff(ndtr((edges[None, :] - mu[:, None]) / sig[:, None]), axis=1)
    p /= p.sum(1, keepdims=True)
    k = n * 3 // 100
    z[:k] = np.where(mu[:k] < 0.2, mu[:k] + 0.15, mu[:k] - 0.15)
    return {"pdf": p.astype(np.float32), "z": z, "edges": edges}


def bytes_per_row(tmp: Path, name: str, cols: dict[str, Any], n: int) -> dict[str, float]:
    """File size / rows of the PDF column(s) alone: as the toolkit's writer writes them
    (tables.write_table: snappy, no dictionary on list columns), uncompressed the same way, and
    with a dictionary on integer codes (Parquet has no 1-byte type: uint8 is stored as INT32,
    4 bytes a code, unless dictionary- or zstd-encoded); and as a FITS file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from photoz_tools import tables

    t = pa.table(cols)
    codes = pa.types.is_integer(t.schema.field("pdf").type.value_type)
    out: dict[str, float] = {}

    def size(path: Path) -> float:
        return round(path.stat().st_size / n, 1)

    f = tmp / f"{name}.parquet"
    tables.write_table(t, str(f))  # what pz-predict writes
    out["toolkit_snappy"] = size(f)
    for comp in ("none", "snappy", "zstd"):
        pq.write_table(t, f, compression=comp, use_dictionary=False)
        out[f"{comp}_nodict"] = size(f)
        if codes:
            pq.write_table(t, f, compression=comp, use_dictionary=["pdf.list.element"])
            out[f"{comp}_dict"] = size(f)
    fits = tmp / f"{name}.fits"
    tables.write_table(t, str(fits))
    out["fits"] = size(fits)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--arch", default="tiny")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--train-n", type=int, default=2000)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--pdfs", default="/tmp/pz_pdf_packing_pdfs.npz")
    ap.add_argument("--floors", default="1e-3,1e-4,1e-6,1e-8", help="uint8log floors to try")
    ap.add_argument(
        "--gaussian",
        action="store_true",
        help="instead of a bundle: --n calibrated Gaussian PDFs of the paper's widths\n"
        "(sigma 0.006-0.02 (1+z)) with 3 %% catastrophic outliers (truth 0.15 away)",
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import pyarrow as pa

    from photoz_tools import pdf as P

    with tempfile.TemporaryDirectory(prefix="pz_pack_") as td:
        tmp = Path(td)
        if args.gaussian:
            d = gaussian_pdfs(args.n)
        elif Path(args.pdfs).exists():
            log(f"reusing {args.pdfs}")
            d = dict(np.load(args.pdfs))
        else:
            d = make_pdfs(args, tmp)
            np.savez(args.pdfs, **d)
        p32, z, bins = d["pdf"], d["z"], P.Bins(d["edges"])
        n = len(p32)
        zp0 = P.zphot(p32, bins)
        pit0, crps0 = P.pit_crps(p32, bins, z)

        variants: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
        variants["float16"] = (
            p32.astype(np.float16).astype(np.float64),
            {"pdf": _fixed(pa, p32.astype(np.float16))},
        )
        c, m = P.pack_pdf(p32, "uint8")
        variants["uint8"] = (
            P.unpack_pdf(c, m, "uint8"),
            {"pdf": _fixed(pa, c), "pdf_max": pa.array(m)},
        )
        for f in [float(x) for x in args.floors.split(",")]:
            c, m = P.pack_pdf(p32, "uint8log", floor=f)
            variants[f"uint8log floor={f:g}"] = (
                P.unpack_pdf(c, m, "uint8log", floor=f),
                {"pdf": _fixed(pa, c), "pdf_max": pa.array(m)},
            )
        res: dict[str, Any] = {
            "float32": {"bytes_per_row": bytes_per_row(tmp, "f32", {"pdf": _fixed(pa, p32)}, n)}
        }
        outlier = np.abs(zp0 - z) / (1 + z) > 0.05
        for name, (p, cols) in variants.items():
            zp = P.zphot(p, bins)
            pit, crps = P.pit_crps(p, bins, z)
            dz, dpit, dcrps = np.abs(zp - zp0), np.abs(pit - pit0), np.abs(crps - crps0)
            rel = dcrps / crps0
            res[name] = {
                "zphot_abs_diff": {"max": float(dz.max()), "median": float(np.median(dz))},
                "pit_abs_diff": {"max": float(dpit.max()), "median": float(np.median(dpit))},
                "crps_abs_diff": {"max": float(dcrps.max()), "median": float(np.median(dcrps))},
                "crps_rel_diff": {"max": float(rel.max()), "median": float(np.median(rel))},
                "mean_crps": float(crps.mean()),
                "outliers_pit_abs_diff_max": float(dpit[outlier].max()) if outlier.any() else None,
                "pit_exactly_0_or_1": int(((pit == 0) | (pit == 1)).sum()),
                "pdf_l1": {"max": float(np.abs(p - p32).sum(1).max())},
                "bytes_per_row": bytes_per_row(tmp, name.replace(" ", "_"), cols, n),
            }
        import subprocess

        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), ""
        )
        out = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "cpu": model,
            "loadavg": os.getloadavg(),
            "rows": n,
            "outliers": int(outlier.sum()),
            "train_s": float(d.get("train_s", np.nan)),
            "source": "gaussian" if args.gaussian else f"{args.arch} bundle, {args.steps} steps",
            "float32_mean_crps": float(crps0.mean()),
            "float32_pit_exactly_0_or_1": int(((pit0 == 0) | (pit0 == 1)).sum()),
            "results": res,
        }
        text = json.dumps(out, indent=1)
        print(text)
        if args.json:
            Path(args.json).write_text(text)
        for name, r in res.items():
            log(f"{name:22s} {r['bytes_per_row']}")


def _fixed(pa, a: np.ndarray):
    return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])


if __name__ == "__main__":
    main()
