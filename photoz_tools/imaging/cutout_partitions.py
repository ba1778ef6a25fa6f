"""pz-cutout over a partitioned catalogue: one cutouts file per input partition, at the same
relative path, idempotently, in this process or as one dask.distributed task per partition
(--scheduler). The same design as pz-predict's (:mod:`photoz_tools.partitions`).

Each partition is cut by :func:`photoz_tools.imaging.cutouts.cutout` (written atomically, with
the record of what made it in its metadata), so a rerun skips what is up to date. The resume
folder of a partition is hidden (``.NAME.partial/`` beside ``NAME``): a partition killed midway
resumes on the next run, and the output folder always reads as a dataset (names starting with
``.`` are not data).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photoz_tools import partitions


def partial_folder(out: Path) -> Path:
    """The hidden resume folder of the output partition `out`."""
    return out.with_name(f".{out.name}.partial")


@dataclass(frozen=True)
class CutoutWork:
    """What one partition's cutouts need, small enough to send to a Dask worker."""

    frames: str | None
    frame_index: str | None
    sas_url: str | None
    cache: str | None
    ra: str
    dec: str
    id: str | None
    resampler: str
    fill: str
    workers: int | None
    batch_rows: int
    resume: bool
    command_line: str | None

    def __call__(self, part: partitions.Partition, out: Path, meta: dict[str, str]) -> int:
        from photoz_tools.imaging.cutouts import cutout

        out.parent.mkdir(parents=True, exist_ok=True)
        work_dir = partial_folder(out)
        if not self.resume:
            shutil.rmtree(work_dir, ignore_errors=True)
        summary = cutout(
            str(part.path),
            out,
            frames=self.frames,
            frame_index=self.frame_index,
            sas_url=self.sas_url,
            cache=self.cache,
            ra=self.ra,
            dec=self.dec,
            id=self.id,
            resampler=self.resampler,
            workers=self.workers,
            fill=self.fill,
            batch_rows=self.batch_rows,
            format="parquet",
            command_line=self.command_line,
            partial=work_dir,
            extra_metadata=meta,
        )
        return int(summary["rows"])


def _file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cutout_key(
    *,
    frames: str | os.PathLike | None,
    frame_index: str | os.PathLike | None,
    sas_url: str | None,
    ra: str,
    dec: str,
    id: str | None,
    resampler: str,
    fill: str,
) -> str:
    """The run key: the options that change the cutouts (not workers, batch size or cache)."""
    from photoz_tools.sdss.sas import DEFAULT_SAS_URL

    if frames is not None:
        source: dict[str, Any] = {"frames": str(Path(frames).resolve())}
    else:
        source = {"sas": (sas_url or DEFAULT_SAS_URL).rstrip("/")}
        if frame_index is not None:  # what the index says, wherever it lies
            source["frame_index"] = _file_digest(frame_index)
    return partitions.run_key(
        tool="pz-cutout",
        **source,
        ra=ra.lower(),
        dec=dec.lower(),
        id=id,
        resampler=resampler,
        fill=fill,
    )


def cutout_partitioned(
    source: str | Path,
    output: str | Path,
    *,
    frames: str | os.PathLike | None = None,
    frame_index: str | os.PathLike | None = None,
    sas_url: str | None = None,
    cache: str | os.PathLike | None = None,
    ra: str = "ra",
    dec: str = "dec",
    id: str | None = None,
    resampler: str = "native",
    fill: str = "zero",
    workers: int | None = None,
    batch_rows: int = 1024,
    resume: bool = True,
    shard: tuple[int, int] | None = None,
    scheduler: str | int | None = None,
    command_line: str | None = None,
    on_partition: Callable[[partitions.Partition, str], None] | None = None,
) -> partitions.Summary:
    """Cut every partition of the catalogue folder `source` (of shard `shard`) whose output
    under `output` is missing or stale; returns the run's summary.

    Under `scheduler` each partition is one Dask task running :func:`cutout` in its worker
    process (workers=1: no process pool inside a Dask worker); without it the partitions run
    one after another, each with `workers` processes."""
    from photoz_tools.errors import PzError
    from photoz_tools.imaging.cutouts import check_choices
    from photoz_tools.paths import require_parent_folder

    check_choices(resampler, fill)
    if frames is not None and not Path(frames).is_dir():
        raise PzError(f"--frames {frames}: no such folder")
    if frame_index is not None and not Path(frame_index).is_file():
        raise PzError(f"--frame-index {frame_index}: no such file")
    out_root = partitions.check_output_folder(source, output, "cutouts")
    require_parent_folder(out_root, "-o")  # the output folder is created, its parent never
    parts = partitions.select_shard(partitions.discover(source), shard)
    key = cutout_key(
        frames=frames,
        frame_index=frame_index,
        sas_url=sas_url,
        ra=ra,
        dec=dec,
        id=id,
        resampler=resampler,
        fill=fill,
    )
    work = CutoutWork(
        frames=str(Path(frames).resolve()) if frames is not None else None,
        frame_index=str(Path(frame_index).resolve()) if frame_index is not None else None,
        sas_url=sas_url,
        cache=str(cache) if cache is not None else None,
        ra=ra,
        dec=dec,
        id=id,
        resampler=resampler,
        fill=fill,
        workers=1 if scheduler is not None else workers,
        batch_rows=batch_rows,
        resume=resume,
        command_line=command_line,
    )
    return partitions.run_on(scheduler, parts, out_root, key, work, on_partition)
