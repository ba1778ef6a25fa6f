"""pz-predict over a partitioned catalogue: one output file per input partition, idempotently.

The bundle is loaded and the ensemble built once for the whole run (not per partition); each
partition is written by ``predict.predict`` (atomically, with the record of what made it in its
metadata), so a rerun skips what is up to date and a crash never leaves a partial file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from photoz_tools import partitions
from photoz_tools.errors import PzUsageError
from photoz_tools.model import bundle as bundlemod


def check_output_folder(source: str | Path, output: str | Path | None) -> Path:
    """The output folder for a partitioned input: given, not a file, not inside the input."""
    if output in (None, "", "-"):
        raise PzUsageError(
            f"-o: {source} is a catalogue folder, so the predictions are a folder too: "
            "give -o FOLDER (one output file per input partition)"
        )
    out = Path(os.fspath(output))
    if out.exists() and not out.is_dir():
        raise PzUsageError(f"-o {out}: a file; a partitioned input needs an output folder")
    src, dst = Path(source).resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise PzUsageError(
            f"-o {out}: inside the input catalogue {source}; its files would be read as input"
        )
    return out


def predict_partitioned(
    source: str | Path,
    output: str | Path,
    model: str | Path | bundlemod.Bundle,
    *,
    shard: tuple[int, int] | None = None,
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
    from photoz_tools.model import predict as pr

    precmod.check(precision)
    out_root = check_output_folder(source, output)
    parts = partitions.select_shard(partitions.discover(source), shard)
    b = model if isinstance(model, bundlemod.Bundle) else bundlemod.load_bundle(model)
    key = partitions.run_key(
        bundle=b.hash,
        pdf=pdf_dtype,
        keep=list(keep) if keep is not None else None,
        tta=tta,
        precision=precision,
        image_col=image_col,
        ebv_col=ebv_col,
    )
    ensemble = None

    def work(part: partitions.Partition, out: Path, meta: dict[str, str]) -> int:
        nonlocal ensemble
        if ensemble is None:  # built on the first partition that needs it, then reused
            ensemble = pr.Ensemble(b, batch_size=batch_size, tta=tta, precision=precision)
        out.parent.mkdir(parents=True, exist_ok=True)
        res = pr.predict(
            part.path,
            out,
            b,
            batch_size=batch_size,
            pdf_dtype=pdf_dtype,
            keep=keep,
            tta=tta,
            image_col=image_col,
            ebv_col=ebv_col,
            command_line=command_line,
            precision=precision,
            ensemble=ensemble,
            extra_metadata=meta,
        )
        return res.rows

    return partitions.run(parts, out_root, key, work, on_partition=on_partition)
