"""Prediction: the plain function behind pz-predict, and `predict_arrays` for in-memory data.

The members' PDFs are averaged (the paper's ensemble). The table is read in batches and written
as it goes, so memory is bounded by the batch; each batch is fed to the ensemble in fixed-size
slices (the last one padded), so the compiled prediction function is traced once.

`precision` (float32, bfloat16, float16; see photoz_tools.model.precision) is checked before any
work; for a reduced precision each member (saved float32) is rebuilt under Keras's mixed policy
from the manifest's architecture and its weights copied by layer name: the convolutions and
dense layers then compute in bfloat16/float16, the softmax stays float32.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from photoz_tools import pdf as pdfcore
from photoz_tools import tables
from photoz_tools.errors import PzError, PzUsageError
from photoz_tools.model import bundle as bundlemod
from photoz_tools.model.data import image_cells

# "uint8": one byte a bin + a float32 pdf_max column (photoz_tools.pdf.pack_pdf). "uint8log"
# is not offered: measured worse than uint8 on PIT and CRPS (benchmarks/pdf_packing.md)
PDF_DTYPES = ("float32", "float16", "uint8", "none")
PREDICTION_COLUMNS = (*pdfcore.SUMMARY_COLUMNS, "pdf", "pdf_max")


@dataclass
class PredictResult:
    """What a prediction run did (for the command's summary line)."""

    rows: int
    bad_rows: int
    bundle_hash: str
    members: int
    precision: str = "float32"


def predict_padded(
    model: Any, images: np.ndarray, ebv: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """model outputs for (n,64,64,5) images and (n,) ebv in slices of exactly `batch_size`
    (the last one padded with zeros), so XLA/JAX compile the prediction once, not per shape."""
    n, bs = len(images), int(batch_size)
    out = None
    for s in range(0, n, bs):
        im, e = images[s : s + bs], np.asarray(ebv[s : s + bs], np.float32).reshape(-1)
        m = len(im)
        if m < bs:
            im = np.concatenate([im, np.zeros((bs - m, *im.shape[1:]), np.float32)])
            e = np.concatenate([e, np.zeros(bs - m, np.float32)])
        y = np.asarray(model.predict_on_batch({"image": im, "ebv": e.reshape(-1, 1)}))
        if out is None:
            out = np.empty((n, y.shape[1]), dtype=np.float32)
        out[s : s + m] = y[:m]
    return out if out is not None else np.zeros((0, 0), np.float32)


def members_in(b: bundlemod.Bundle, precision: str = "float32") -> list[Any]:
    """The bundle's members computing in `precision`: the loaded float32 models themselves, or
    copies rebuilt under the precision's mixed policy from the manifest's architecture (input
    scaling included) with the weights copied by layer name (Keras's global policy is restored
    afterwards)."""
    from photoz_tools.model import precision as precmod

    precmod.check(precision)
    if precision == "float32":
        return list(b.members)
    from photoz_tools.model import architecture

    config = dict(b.manifest["architecture"])
    config["scaling"] = b.scaling
    out = []
    with precmod.policy(precision):
        for i, src in enumerate(b.members):
            dst = architecture.build_model(config, seed=0)
            architecture.copy_weights(src, dst)
            if _n_weights(src) != _n_weights(dst):  # copy_weights goes by dst's layers only
                raise bundlemod.BundleError(
                    f"{b.path}: member {i} has {_n_weights(src):,} weights but its manifest's "
                    f"architecture {_n_weights(dst):,}; use --precision float32"
                )
            out.append(dst)
    return out


def _n_weights(model: Any) -> int:
    return int(sum(int(np.prod(w.shape)) for w in model.weights))


class Ensemble:
    """The members of a bundle as one callable: images (n,64,64,5) + ebv (n,) -> mean PDF,
    computed in `precision` (float32, or bfloat16/float16 where precision.check allows)."""

    def __init__(
        self,
        b: bundlemod.Bundle,
        batch_size: int = 256,
        tta: bool = False,
        precision: str = "float32",
    ) -> None:
        from photoz_tools.model.backend import import_keras

        keras = import_keras()

        self.bundle = b
        self.batch_size = int(batch_size)
        self.tta = tta
        self.precision = precision
        members = members_in(b, precision)
        if len(members) == 1:
            self.model = members[0]
        else:
            image = keras.Input((64, 64, 5), name="image")
            ebv = keras.Input((1,), name="ebv")
            for i, mm in enumerate(members):  # unique names inside the ensemble graph
                mm.name = f"member_{i}"
            outs = [mm({"image": image, "ebv": ebv}) for mm in members]
            mean = keras.layers.Average(name="ensemble_mean")(outs)
            self.model = keras.Model({"image": image, "ebv": ebv}, mean, name="ensemble")

    def _run(self, images: np.ndarray, ebv: np.ndarray) -> np.ndarray:
        return predict_padded(self.model, images, ebv, self.batch_size)

    def __call__(self, images: np.ndarray, ebv: np.ndarray) -> np.ndarray:
        from photoz_tools.model.data import transform

        images = np.ascontiguousarray(images, dtype=np.float32)
        ebv = np.asarray(ebv, dtype=np.float32).reshape(-1)
        if not self.tta:
            return self._run(images, ebv)
        acc = np.zeros((len(images), self.bundle.bins.n), dtype=np.float64)
        for k in range(8):
            acc += self._run(np.ascontiguousarray(transform(images, k)), ebv)
        return (acc / 8).astype(np.float32)


def predict_arrays(
    model: str | Path | bundlemod.Bundle,
    images: np.ndarray,
    ebv: np.ndarray,
    batch_size: int = 256,
    tta: bool = False,
    precision: str = "float32",
) -> np.ndarray:
    """Mean PDF (n, n_bins) of a bundle's members for in-memory images and E(B-V) (notebooks),
    computed in `precision` (float32; bfloat16 or float16 where precision.check allows)."""
    from photoz_tools.model import precision as precmod

    precmod.check(precision)  # before loading the members
    b = model if isinstance(model, bundlemod.Bundle) else bundlemod.load_bundle(model)
    return Ensemble(b, batch_size, tta, precision=precision)(images, ebv)


def bad_rows(images: np.ndarray, ebv: np.ndarray) -> np.ndarray:
    """Rows the network cannot answer for: a NaN/inf pixel, or an E(B-V) that is missing or
    negative (no dust map gives one; it is a fill value or a column mix-up)."""
    flat = images.reshape(len(images), -1)
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(flat).all(axis=1) | ~np.isfinite(ebv) | (ebv < 0)


def overflowed(p: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose PDF is not finite (pixels so large the network overflowed) join the bad rows,
    with a placeholder PDF, so that no NaN PDF is ever written."""
    lost = ~np.isfinite(p).all(axis=1)
    if not lost.any():
        return bad, p
    return bad | lost, np.where(lost[:, None], np.float32(1.0 / p.shape[1]), p)


def _pdf_array(p: np.ndarray, bad: np.ndarray, dtype: str) -> list[tuple[str, Any]]:
    """The PDF column(s) for `--pdf dtype`: [("pdf", ...)], plus ("pdf_max", ...) for a packing
    (photoz_tools.pdf.pack_pdf); bad rows are null in both."""
    import pyarrow as pa

    mask = pa.array(bad) if bad.any() else None
    if dtype in pdfcore.PDF_PACKINGS:
        codes, pmax = pdfcore.pack_pdf(p, dtype)
        return [
            (
                "pdf",
                pa.FixedSizeListArray.from_arrays(
                    pa.array(codes.reshape(-1)), p.shape[1], mask=mask
                ),
            ),
            ("pdf_max", pa.array(pmax, mask=bad | np.isnan(pmax))),
        ]
    values = pa.array(p.astype(dtype).reshape(-1))
    return [("pdf", pa.FixedSizeListArray.from_arrays(values, p.shape[1], mask=mask))]


def predict(
    source: str | Path | None,
    output: str | Path | None = "-",
    model: str | Path | bundlemod.Bundle | None = None,
    *,
    batch_size: int = 256,
    pdf_dtype: str = "float32",
    keep: Sequence[str] | None = None,
    tta: bool = False,
    qp_path: str | Path | None = None,
    format: str | None = None,
    image_col: str = "image",
    ebv_col: str = "ebv",
    command_line: str | None = None,
    on_rows: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    precision: str = "float32",
    ensemble: Ensemble | None = None,
    extra_metadata: dict[str, str] | None = None,
) -> PredictResult:
    """Predict redshift PDFs for every row of a table and write them (with the kept columns).

    `ensemble` (built from the same bundle) is reused instead of building one: a run over many
    partitions builds it once. `extra_metadata` is added to the output's metadata.

    `model` is a bundle path (default: $PZ_MODEL, else the registered default bundle). Rows with
    NaN/inf pixels or missing E(B-V) get null predictions and pz_flags = FLAG_BAD_INPUT.
    `precision` is the compute precision (float32; bfloat16 or float16 where precision.check
    allows, refused with a PzUsageError before the input is opened); it is recorded in the
    output's metadata (pz_precision).
    """
    import pyarrow as pa

    from photoz_tools.model import precision as precmod

    precmod.check(precision)  # before reading stdin or loading the members
    if pdf_dtype not in PDF_DTYPES:
        raise PzUsageError(f"--pdf {pdf_dtype}: choose one of {', '.join(PDF_DTYPES)}")
    if batch_size < 1:
        raise PzUsageError(f"--batch-size must be at least 1 (got {batch_size})")
    reader = tables.open_table(source)
    with reader:
        names = reader.column_names
        if image_col not in names:
            raise PzError(f"{reader.name}: no {image_col} column; make cutouts with pz-cutout")
        tables.require_columns(reader, [ebv_col], what="prediction input")
        b = (
            model
            if isinstance(model, bundlemod.Bundle)
            else bundlemod.load_bundle(bundlemod.resolve(None if model is None else str(model)))
        )
        bins = b.bins
        if keep is None:
            kept = [c for c in names if c != image_col]
        else:
            missing = [c for c in keep if c not in names]
            if missing:
                raise PzUsageError(
                    f"--keep: {reader.name} has no column {missing[0]!r} "
                    f"(columns: {', '.join(names)})"
                )
            kept = list(keep)
        clash = [c for c in kept if c in PREDICTION_COLUMNS]
        kept = [c for c in kept if c not in PREDICTION_COLUMNS]
        read_cols = list(dict.fromkeys([*kept, image_col, ebv_col]))
        ens = ensemble or Ensemble(b, batch_size=batch_size, tta=tta, precision=precision)
        metadata = {tables.BIN_EDGES_KEY: bins.to_json(), "pz_model_path": str(b.path)}
        if pdf_dtype in pdfcore.PDF_PACKINGS:  # readers restore the PDFs from this
            metadata[pdfcore.PDF_PACKING_KEY] = pdfcore.packing_metadata(pdf_dtype)
        metadata.update(extra_metadata or {})
        prov = tables.provenance_metadata(
            command_line or "photoz_tools.predict", [reader.name], model_hash=b.hash
        )
        prov["pz_precision"] = precision  # the compute precision the PDFs were made in
        if on_start:
            on_start(reader.num_rows)
        writer = None
        n_rows = n_bad = 0
        qp_parts: list[np.ndarray] = []
        qp_ids: list[np.ndarray] = []
        qp_flags: list[np.ndarray] = []
        id_col = tables.find_id_column(names) if qp_path else None
        chunk = max(batch_size, (1024 // batch_size) * batch_size)  # rows held at once
        try:
            batches = reader.iter_batches(batch_rows=chunk, columns=read_cols)
            for batch in _rechunk(batches, chunk):
                images = image_cells(tables.column_array(batch, image_col), image_col, reader.name)
                ebv = np.asarray(tables.column_array(batch, ebv_col), dtype=np.float32)
                bad = bad_rows(images, ebv)
                if bad.any():
                    images = np.where(bad[:, None, None, None], np.float32(0), images)
                    ebv = np.where(bad, np.float32(0), ebv)
                p = ens(images, ebv) if len(images) else np.zeros((0, bins.n), np.float32)
                bad, p = overflowed(p, bad)
                summ = pdfcore.summarize(p, bins)
                arrays, fields = [], []
                for c in kept:
                    arrays.append(batch.column(c))
                    fields.append(batch.schema.field(c))
                for c in pdfcore.SUMMARY_COLUMNS:
                    v = summ[c]
                    if c == "pz_flags":
                        v = np.where(bad, np.uint16(pdfcore.FLAG_BAD_INPUT), v).astype(np.uint16)
                        arrays.append(pa.array(v))
                    else:
                        arrays.append(
                            pa.array(
                                np.where(bad, np.nan, v).astype(np.float32),
                                mask=bad if bad.any() else None,
                            )
                        )
                    fields.append(pa.field(c, arrays[-1].type))
                if pdf_dtype != "none":
                    for name, arr in _pdf_array(p, bad, pdf_dtype):
                        arrays.append(arr)
                        fields.append(pa.field(name, arr.type))
                out = pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))
                if writer is None:
                    writer = tables.TableWriter(
                        output, out.schema, format=format, metadata=metadata, provenance=prov
                    )
                writer.write(out)
                if qp_path:
                    qp_parts.append(np.where(bad[:, None], np.nan, p))
                    qp_flags.append(
                        arrays[len(kept) + pdfcore.SUMMARY_COLUMNS.index("pz_flags")].to_numpy()
                    )
                    if id_col:
                        qp_ids.append(
                            np.asarray(tables.column_array(batch, id_col))
                            if id_col in batch.schema.names
                            else np.zeros(0)
                        )
                n_rows += len(p)
                n_bad += int(bad.sum())
                if on_rows:
                    on_rows(len(p))
            if writer is None:  # an empty table: still write the schema
                writer = _empty_writer(
                    reader, kept, pdf_dtype, bins, output, format, metadata, prov
                )
            if qp_path:
                write_qp(
                    qp_path,
                    bins,
                    np.concatenate(qp_parts) if qp_parts else np.zeros((0, bins.n), np.float32),
                    ids=np.concatenate(qp_ids) if qp_ids and id_col else None,
                    id_name=id_col,
                    flags=np.concatenate(qp_flags) if qp_flags else None,
                )
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        writer.close()
    res = PredictResult(
        rows=n_rows, bad_rows=n_bad, bundle_hash=b.hash, members=len(b.members), precision=precision
    )
    res.replaced_columns = clash  # type: ignore[attr-defined]
    return res


def _rechunk(batches: Any, size: int) -> Any:
    """Record batches of exactly `size` rows (the last one shorter) whatever the file's row
    groups: a batch of 190 rows would otherwise be padded to 256 and waste a quarter of the
    network's work."""
    import pyarrow as pa

    pending: list = []
    n = 0
    schema = None
    for b in batches:
        schema = b.schema
        pending.append(b)
        n += b.num_rows
        while n >= size:
            t = pa.Table.from_batches(pending, schema=schema)
            yield t.slice(0, size).combine_chunks().to_batches()[0]
            rest = t.slice(size)
            pending, n = rest.to_batches(), rest.num_rows
    if n:
        yield pa.Table.from_batches(pending, schema=schema).combine_chunks().to_batches()[0]


def _empty_writer(reader, kept, pdf_dtype, bins, output, format, metadata, prov):
    import pyarrow as pa

    fields = [reader.schema.field(c) for c in kept]
    fields += [
        pa.field(c, pa.uint16() if c == "pz_flags" else pa.float32())
        for c in pdfcore.SUMMARY_COLUMNS
    ]
    if pdf_dtype in pdfcore.PDF_PACKINGS:
        fields.append(pa.field("pdf", pa.list_(pa.uint8(), bins.n)))
        fields.append(pa.field("pdf_max", pa.float32()))
    elif pdf_dtype != "none":
        fields.append(pa.field("pdf", pa.list_(getattr(pa, pdf_dtype)(), bins.n)))
    return tables.TableWriter(
        output, pa.schema(fields), format=format, metadata=metadata, provenance=prov
    )


def write_qp(
    path: str | Path,
    bins: pdfcore.Bins,
    pdfs: np.ndarray,
    ids: np.ndarray | None = None,
    id_name: str | None = None,
    flags: np.ndarray | None = None,
) -> None:
    """Write the PDFs as a qp histogram ensemble (LSST DESC RAIL's format; needs qp-prob).

    qp stores float64 densities (probability / bin width) and renormalises on read; rows without
    a prediction are stored as NaN, with pz_flags (and the id column) as ancillary data. The
    whole ensemble is built in memory (N x n_bins float64): qp cannot append.
    """
    try:
        import qp
    except ImportError:
        raise PzError(
            "--qp needs the optional qp-prob package: pip install 'photoz-tools[qp]'"
        ) from None
    path = Path(path)
    if path.suffix.lower() not in (".hdf5", ".h5", ".hdf"):
        raise PzUsageError(f"--qp {path}: name an .hdf5 file")
    data = {
        "bins": np.asarray(bins.edges, dtype=np.float64),
        "pdfs": np.asarray(pdfs, dtype=np.float64),
    }
    ancil = {}
    if ids is not None and id_name and len(ids) == len(pdfs):
        ancil[id_name] = np.asarray(ids)
    if flags is not None and len(flags) == len(pdfs):
        ancil["pz_flags"] = np.asarray(flags)
    import warnings

    tmp = path.with_name(f".{path.name}.tmp.hdf5")
    with warnings.catch_warnings():  # qp warns about the NaN rows of bad inputs
        warnings.simplefilter("ignore")
        ens = qp.Ensemble(qp.hist, data=data, ancil=ancil or None)
        ens.write_to(str(tmp))
    tmp.replace(path)


def describe_bundle(path: str | Path) -> str:
    """A one-paragraph description of a bundle (for logs)."""
    m = bundlemod.read_manifest(path)
    return json.dumps({k: m.get(k) for k in ("architecture", "scaling", "seeds")})
