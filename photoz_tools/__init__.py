"""photoz-tools: CNN photometric redshifts and PDFs for SDSS galaxies (Pasquet et al. 2019).

Every command's work is also a plain function, importable from here lazily so that
``import photoz_tools`` stays cheap (no TensorFlow, no GalSim at import time).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> "module:attribute"; resolved on first access (PEP 562)
_LAZY = {
    "score": "photoz_tools.scoring:score",
    "read_table": "photoz_tools.tables:read_table",
    "write_table": "photoz_tools.tables:write_table",
    "open_table": "photoz_tools.tables:open_table",
    "train": "photoz_tools.model.train:train",
    "predict": "photoz_tools.model.predict:predict",
    "query": "photoz_tools.sdss.query:query",
    "query_frames": "photoz_tools.sdss.query:query_frames",
    "cutout": "photoz_tools.imaging.cutouts:cutout",
    "pack": "photoz_tools.dataset:pack",
    "mock": "photoz_tools.mock.survey:mock",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    try:
        target = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'photoz_tools' has no attribute {name!r}") from None
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
