"""Photometric redshifts for a HATS catalogue with LSDB: one ensemble run per HEALPix partition
(photoz_tools.model.predict_frame via map_partitions), written as a new HATS catalogue by LSDB's
own writer. The catalogue needs an ``image`` column (64x64x5 ugriz cutouts, flat or not, as
pz-cutout writes them) and ``ebv``.

    python examples/lsdb_predict.py cutouts_hats/ model/ zphot_hats/
    python examples/lsdb_predict.py cutouts_hats/ model/ zphot_hats/ --no-pdf --workers 4

The bundle is loaded once per process (each Dask worker keeps its own), not once per partition.
Without --workers the partitions run one after the other in this process.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("catalogue", type=Path, help="HATS catalogue (or collection) with image, ebv")
    ap.add_argument("bundle", type=Path, help="model bundle folder (pz-train or pz-import)")
    ap.add_argument("output", type=Path, help="output HATS catalogue folder")
    ap.add_argument("--name", default=None, help="output catalogue name (default: folder name)")
    ap.add_argument("--no-pdf", action="store_true", help="summaries only, no pdf column")
    ap.add_argument("--image-col", default="image")
    ap.add_argument("--ebv-col", default="ebv")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=0, help="local Dask processes (0: none)")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)

    import dask
    import lsdb

    from photoz_tools.model.predict_frame import bundle_bins, frame_meta, predict_frame

    bundle = str(args.bundle.resolve())
    pdf = not args.no_pdf
    cat = lsdb.open_catalog(args.catalogue)
    meta = frame_meta(cat.meta, bundle_bins(bundle).n, image_col=args.image_col, pdf=pdf)
    pred = cat.map_partitions(
        predict_frame,
        bundle,
        image_col=args.image_col,
        ebv_col=args.ebv_col,
        pdf=pdf,
        batch_size=args.batch_size,
        meta=meta,
    )
    name = args.name or args.output.name
    if args.workers:
        from dask.distributed import Client

        with Client(n_workers=args.workers, threads_per_worker=1):
            pred.write_catalog(args.output, catalog_name=name, overwrite=args.overwrite)
    else:
        with dask.config.set(scheduler="synchronous"):
            pred.write_catalog(args.output, catalog_name=name, overwrite=args.overwrite)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
