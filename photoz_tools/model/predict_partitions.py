"""pz-predict over a partitioned catalogue: one output file per input partition, idempotently,
in this process or as one dask.distributed task per partition (--scheduler).

The bundle is loaded and the ensemble built once per process (not per partition); each
partition is written by ``predict.predict`` (atomically, with the record of what made it in its
metadata), so a rerun skips what is up to date and a crash never leaves a partial file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from photoz_tools import partitions
from photoz_tools.model import bundle as bundlemod

# the ensemble of the current process (a Dask worker keeps its own), built on first use
_LOADED: dict[tuple, tuple[bundlemod.Bundle, object]] = {}


@dataclass(frozen=True)
class PredictWork:
    """What one partition's prediction needs, small enough to send to a Dask worker; the
    bundle is loaded and the ensemble built once per process, not per partition."""

    bundle_path: str
    bundle_hash: str
    batch_size: int
    pdf_dtype: str
    keep: tuple[str, ...] | None
    tta: bool
    precision: str
    image_col: str
    ebv_col: str
    command_line: str | None

    def ensemble(self):
        from photoz_tools.model import predict as pr

        key = (self.bundle_path, self.bundle_hash, self.batch_size, self.tta, self.precision)
        if key not in _LOADED:
            _LOADED.clear()
            b = bundlemod.load_bundle(self.bundle_path)
            if b.hash != self.bundle_hash:
                raise bundlemod.BundleError(
                    f"{self.bundle_path}: the bundle changed during the run; rerun"
                )
            ens = pr.Ensemble(b, self.batch_size, self.tta, precision=self.precision)
            _LOADED[key] = (b, ens)
        return _LOADED[key]

    def __call__(self, part: partitions.Partition, out: Path, meta: dict[str, str]) -> int:
        from photoz_tools.model import predict as pr

        b, ens = self.ensemble()
        out.parent.mkdir(parents=True, exist_ok=True)
        res = pr.predict(
            part.path,
            out,
            b,
            batch_size=self.batch_size,
            pdf_dtype=self.pdf_dtype,
            keep=list(self.keep) if self.keep is not None else None,
            tta=self.tta,
            image_col=self.image_col,
            ebv_col=self.ebv_col,
            command_line=self.command_line,
            precision=self.precision,
            ensemble=ens,
            extra_metadata=meta,
        )
        return res.rows


def predict_partitioned(
    source: str | Path,
    output: str | Path,
    model: str | Path | bundlemod.Bundle,
    *,
    shard: tuple[int, int] | None = None,
    scheduler: str | int | None = None,
    batch_size: int = 256,
    pdf_dtype: str = "float32",
    keep: Sequence[str] | None = None,
    tta: bool = False,
    precision: str = "float32",
    image_col: str = "image",
    ebv_col: str = "ebv",
    command_line: str | None = None,
    on_partition: Callable[[partitions.Partition, str], None] | None = None,
) -> partitions.Summary:
    """Predict every partition of the catalogue folder `source` (of shard `shard`) whose output
    under `output` is missing or stale; returns the run's summary."""
    from photoz_tools.model import precision as precmod

    precmod.check(precision)
    out_root = partitions.check_output_folder(source, output, "predictions")
    parts = partitions.select_shard(partitions.discover(source), shard)
    if isinstance(model, bundlemod.Bundle):
        b = model
    else:  # the manifest and hashes only: the members are loaded where the work runs
        b = bundlemod.load_bundle(model, load_members=False)
    key = partitions.run_key(
        bundle=b.hash,
        pdf=pdf_dtype,
        keep=list(keep) if keep is not None else None,
        tta=tta,
        precision=precision,
        image_col=image_col,
        ebv_col=ebv_col,
    )
    work = PredictWork(
        bundle_path=str(b.path),
        bundle_hash=b.hash,
        batch_size=batch_size,
        pdf_dtype=pdf_dtype,
        keep=tuple(keep) if keep is not None else None,
        tta=tta,
        precision=precision,
        image_col=image_col,
        ebv_col=ebv_col,
        command_line=command_line,
    )
    summary = partitions.run_on(scheduler, parts, out_root, key, work, on_partition)
    partitions.finish_hats(source, out_root, key, summary)  # a HATS catalogue in gives one out
    return summary
